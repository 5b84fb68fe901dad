"""From an area and a query to a GeoDataFrame of entities, for areas of any size.

:func:`segment` runs in named steps: :func:`prepare` (the area or pair, the imagery source, the
models), :func:`open_store` (the run's result folder, which is also how it resumes), an engine
(:mod:`.engine`: chips streamed through the reasoner, each batch stored at once), then
:func:`collect` (chip polygons merged into entities across chip borders) and
:func:`result_attrs` (what the run used). Nothing area-sized is ever held in memory: imagery is
read per chip window, chip masks become polygons at once and go to disk.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from .. import defaults
from ..errors import ConfigError
from ..geo.area import Area
from ..imagery.source import FIELDS as IMAGERY_FIELDS
from ..imagery.source import ImagerySource
from .merge import RESULT_COLUMNS, empty_result, merge_entities
from .plan import plan_chips
from .store import ChipStore

MODEL_FIELDS = ("vlm", "sam", "device", "parse")


@dataclass
class ChipRun:
    """How chips are cut and run: ``chip_size`` and ``overlap`` in pixels, ``batch_size`` chips
    (times queries) per model call, ``generation`` the decoding settings (None: the reasoner's).
    """

    chip_size: int = defaults.CHIP_SIZE
    overlap: int = 0
    batch_size: int = defaults.BATCH_SIZE
    generation: object = None

    def __post_init__(self):
        for name in ("chip_size", "overlap", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be a whole number of {'chips' if name == 'batch_size' else 'pixels'}, "
                                  f"got {value!r}")
        if self.chip_size < 28:
            raise ConfigError(f"chip_size must be at least 28 pixels, got {self.chip_size}")
        if not 0 <= self.overlap < self.chip_size:
            raise ConfigError(f"overlap must be in [0, chip_size), got {self.overlap} with chip_size={self.chip_size}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")


def segment(  # noqa: PLR0913 (public API: the keyword forms users already write)
    area_or_pair,
    query: str | Sequence[str],
    *,
    reasoner=None,
    imagery: ImagerySource | None = None,
    zoom: int | None = None,
    out=None,
    mask_out=None,
    engine=None,
    chip_size: int = defaults.CHIP_SIZE,
    overlap: int = 0,
    batch_size: int = defaults.BATCH_SIZE,
    generation=None,
    min_area_m2: float = defaults.MIN_AREA_M2,
    simplify_m: float | None = None,
    resume_dir=None,
    max_area_km2: float | None = None,
    callback=None,
    **settings,
):
    """Find ``query`` (e.g. ``"school"``, or a list of queries) in an area; one row per entity.

    Parameters
    ----------
    area_or_pair
        Anything :meth:`sociogeo.Area.coerce` accepts (an Area, a ``(west, south, east, north)``
        bbox in degrees, GeoJSON, a GeoDataFrame, a shapely polygon) or an
        :class:`~sociogeo.imagery.ImagePair` already fetched.
    query : str or list of str
        What to find.
    reasoner : SocioReasoner, optional
        The models; None loads ``vlm`` and ``sam`` (keyword settings below, default the released
        ones) with :meth:`SocioReasoner.from_pretrained`.
    imagery : ImagerySource, optional
        Where the satellite and map images come from (default Esri imagery and OpenStreetMap
        tiles). The keyword settings ``satellite``, ``map``, ``osm_source``, ``cache_dir`` and
        ``offline`` override it; ``satellite`` may be your own imagery (a GeoTIFF/COG path or
        URL, a list of them, a STAC item, a DataArray or a
        :class:`~sociogeo.imagery.raster.RasterSource`), warped onto each chip window.
    zoom : int, optional
        Imagery zoom level (default the area's: 17 for a bbox, or with a raster satellite layer
        the zoom nearest the raster's resolution; see :meth:`ImagerySource.choose_zoom`).
    out : path, optional
        Write the result there (``.gpkg``, ``.geojson``, ``.parquet``) with a metadata sidecar.
        Every finished chip is kept next to it in ``<out>.parts/`` as it arrives (GeoParquet), so
        a killed run keeps what was done and running again with the same ``out`` continues.
    mask_out : path, optional
        Also write the entity mask as a cloud-optimised GeoTIFF there (``.tif``): one uint8 band
        per query, 1 where the model found it, on the run's EPSG:3857 grid; written window by
        window from the stored chip masks (:mod:`sociogeo.pipeline.mask_raster`).
    engine : {"local", "ray"} or an engine object, optional
        ``"local"`` (default): this process, streaming. ``"ray"`` or a
        :class:`~sociogeo.pipeline.ray_engine.RayEngine`: Ray Data across GPUs and machines.
    chip_size, overlap, batch_size
        Chip side and overlap in pixels; chips (times queries) per model call.
    generation : GenerationConfig, optional
        Decoding settings (default: the reasoner's, greedy).
    min_area_m2, simplify_m
        Drop polygons under this many square metres; simplify with this tolerance in metres.
    resume_dir : path, optional
        Where to keep the finished chips when there is no ``out`` (same mechanism); without
        either, they go to a temporary folder removed at the end.
    max_area_km2 : float, optional
        Accept areas up to this size (default ``sociogeo.options.max_area_km2``).
    callback : callable, optional
        ``callback(chip, query, prediction)`` after each chip is reasoned (local engine; chips
        restored from an earlier run are not reported); :meth:`~sociogeo.imagery.chips.Chip.model_to_lonlat`
        converts the prediction's coordinates.
    **settings
        Keyword forms of the imagery (``satellite``, ``map``, ``osm_source``, ``cache_dir``,
        ``offline``) and of the models (``vlm``, ``sam``, ``device``, and ``parse``: ``"strict"``,
        the default, reads answers as the release does; ``"repair"`` with the tolerant parser).

    Returns
    -------
    GeoDataFrame
        EPSG:4326, columns ``query``, ``area_m2``, ``chip_id`` (the chips the entity was found in,
        comma-separated), ``reasoning`` (the model's think texts) and ``geometry``; ``.attrs``
        records the models, how answers were read (``parse``), zoom, imagery providers and
        attribution, missing tiles and chips that failed (and ``mask`` the path of ``mask_out``).
        No entity gives an empty frame with the same columns and CRS.
    """
    from .engine import Job, warn_failed, warn_missing_tiles
    from .mask_raster import check_mask_path, write_entity_mask
    from .results import check_result_path, write_result

    queries = check_queries(query)
    run = ChipRun(chip_size, overlap, batch_size, generation)
    check_polygon_options(min_area_m2, simplify_m)
    out = None if out is None else check_result_path(out)  # before any work
    mask_out = None if mask_out is None else check_mask_path(mask_out)
    engine = resolve_engine(engine)
    target, source = prepare(area_or_pair, imagery=imagery, zoom=zoom, max_area_km2=max_area_km2, **settings)
    if reasoner is None:
        reasoner = load_reasoner(settings, source, engine)
    elif settings.get("parse") not in (None, getattr(reasoner, "parse", "strict")):
        raise ConfigError(
            f"parse={settings['parse']!r} differs from the given reasoner's parse={reasoner.parse!r}; "
            "build the reasoner with SocioReasoner(..., parse=...) instead"
        )
    grid = target.grid
    with ExitStack() as stack:
        store = open_store(stack, out, resume_dir, manifest(grid, run, reasoner, target, source))
        plan = plan_chips(grid, run.chip_size, run.overlap)
        finished = store.finished()
        pending = [(task, [q for q in queries if (q, task.chip_id) not in finished]) for task in plan]
        job = Job(grid, [(t, qs) for t, qs in pending if qs], target if _is_pair(target) else source, reasoner,
                  store, run.batch_size, run.generation, callback)
        outcome = engine.run(job)
        outcome.raise_if_nothing_worked()
        result = collect(store, queries, grid, min_area_m2=min_area_m2, simplify_m=simplify_m)
        if mask_out is not None:
            write_entity_mask(store, grid, queries, mask_out)
    result.attrs.update(result_attrs(target, source, reasoner, run, queries, outcome, engine))
    if mask_out is not None:
        result.attrs["mask"] = str(mask_out)
    warn_failed(outcome)
    if not _is_pair(target):  # a pair's gaps were announced when it was fetched
        warn_missing_tiles(result.attrs["missing_tiles"])
    if out is not None:
        write_result(result, out)
    return result


def check_polygon_options(min_area_m2, simplify_m) -> None:
    """ConfigError for a minimum area or tolerance that is not a usable number of metres."""
    import math

    for name, value, allow_none in (("min_area_m2", min_area_m2, False), ("simplify_m", simplify_m, True)):
        if value is None and allow_none:
            continue
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
        if not ok:
            raise ConfigError(f"{name} must be a finite number of {'m²' if name == 'min_area_m2' else 'metres'} "
                              f">= 0, got {value!r}")


def check_queries(query) -> list[str]:
    """``query`` as a non-empty list of distinct non-empty strings."""
    queries = [query] if isinstance(query, str) else list(query)
    if not queries or any(not isinstance(q, str) or not q.strip() for q in queries):
        raise ConfigError(f"query must be a non-empty string or a list of them, got {query!r}")
    return list(dict.fromkeys(q.strip() for q in queries))


def resolve_engine(engine):
    """An engine object from ``None``/``"local"``/``"ray"`` or an engine passed in."""
    from .engine import LocalEngine

    if engine is None or engine == "local":
        return LocalEngine()
    if engine == "ray":
        from .ray_engine import RayEngine

        return RayEngine()
    if hasattr(engine, "run"):
        return engine
    raise ConfigError(f"engine must be 'local', 'ray' or an engine object (e.g. RayEngine(...)), got {engine!r}")


def prepare(area_or_pair, *, imagery=None, zoom=None, max_area_km2=None, **settings):
    """``(target, source)``: the ImagePair as given, or the Area with its checked ImagerySource."""
    unknown = set(settings) - set(IMAGERY_FIELDS) - set(MODEL_FIELDS)
    if unknown:
        raise TypeError(f"segment() got unexpected keyword arguments {sorted(unknown)}")
    source = ImagerySource.coerce(imagery, **{k: v for k, v in settings.items() if k in IMAGERY_FIELDS})
    if _is_pair(area_or_pair):
        return area_or_pair, source
    area = source.choose_zoom(Area.coerce(area_or_pair, zoom, max_area_km2=max_area_km2))
    source.check(area.zoom)  # a typo in a provider fails before the models load
    return area, source


def load_reasoner(settings: dict, source: ImagerySource, engine):
    """The models named by the keyword settings (default the released ones)."""
    from ..reasoner.model import ReasonerSpec

    vlm = settings.get("vlm") or defaults.VLM
    spec = ReasonerSpec(list(vlm) if isinstance(vlm, (list, tuple)) else str(vlm),
                        str(settings.get("sam") or defaults.SAM), device=settings.get("device"), offline=source.offline,
                        parse=settings.get("parse") or "strict")
    # an engine that loads the models in its own workers gets the spec; otherwise load them here
    return spec if getattr(engine, "loads_models_itself", False) else spec.load()


def manifest(grid, run: ChipRun, reasoner, target, source) -> dict:
    """What stored chips depend on: a rerun must match it to reuse them."""
    imagery = dict(getattr(target, "attrs", {}) or {}) if _is_pair(target) else source.describe()
    keys = ("satellite", "map", "osm_source", "satellite_provider", "map_provider")
    return {
        "grid": [grid.zoom, grid.col_off, grid.row_off, grid.width, grid.height],
        "chip_size": run.chip_size,
        "overlap": run.overlap,
        "vlm": reasoner.vlm_name,
        "sam": reasoner.sam_name,
        "parse": getattr(reasoner, "parse", "strict"),
        "imagery": {k: imagery.get(k) for k in keys if imagery.get(k) is not None},
    }


def open_store(stack: ExitStack, out, resume_dir, manifest_: dict) -> ChipStore:
    """The run's chip store: ``<out>.parts/``, else ``resume_dir``, else a temporary folder."""
    if out is not None:
        if resume_dir is not None:
            raise ConfigError("give either out= (the result file; chips are kept beside it) or resume_dir=, not both")
        folder = Path(out).with_name(Path(out).name + ".parts")
    elif resume_dir is not None:
        folder = Path(resume_dir)
    else:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sociogeo-chips-")))
    return ChipStore(folder, manifest_)


def collect(store: ChipStore, queries: list[str], grid, *, min_area_m2: float, simplify_m):
    """Every query's entities from the stored chips, one GeoDataFrame (EPSG:4326, :data:`RESULT_COLUMNS`)."""
    import geopandas as gpd
    import pandas as pd

    chips = store.read(columns=["row", "col", "reasoning"])
    frames = []
    for q in queries:
        frame = merge_entities(chips[chips["query"] == q], grid, min_area_m2=min_area_m2, simplify_m=simplify_m)
        if len(frame):
            frame.insert(0, "query", q)
            frames.append(frame[RESULT_COLUMNS])
    if not frames:
        return empty_result()
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs="EPSG:4326")


def result_attrs(target, source, reasoner, run: ChipRun, queries: list[str], outcome, engine) -> dict:
    """What a result was made with: models, zoom, chips, imagery, attribution, gaps and failures."""
    grid = target.grid
    if _is_pair(target):
        imagery = dict(getattr(target, "attrs", {}) or {})
    else:
        imagery = _source_attrs(source)
    credits = [imagery.get("satellite_attribution"), imagery.get("map_attribution")]
    attribution = "; ".join(dict.fromkeys(c for c in credits if c)) or imagery.get("attribution", "")
    missing = outcome.missing_tiles if not _is_pair(target) else imagery.get("missing_tiles", {})
    attrs = {
        "vlm": reasoner.vlm_name,
        "sam": reasoner.sam_name,
        "trained": bool(reasoner.trained),
        "model_kind": getattr(reasoner, "model_kind", "custom" if reasoner.trained else "untrained"),
        "parse": getattr(reasoner, "parse", "strict"),
        "zoom": grid.zoom,
        "chip_size": run.chip_size,
        "overlap": run.overlap,
        "queries": queries,
        "satellite": imagery.get("satellite_provider") or imagery.get("satellite", ""),
        "map": imagery.get("map_provider") or imagery.get("map", ""),
        "attribution": attribution,
        "synthetic_satellite": bool(imagery.get("satellite_synthetic", False)),
        "bounds": list(grid.lonlat_bounds),
        "engine": getattr(engine, "name", type(engine).__name__),
        "missing_tiles": missing,
        "failed_chips": [{"query": q, "chip_id": c, "error": e} for (q, c), e in outcome.failed.items()],
    }
    if not reasoner.trained:
        attrs["warning"] = "UNTRAINED models: these polygons are not meaningful"
    notice = getattr(reasoner, "model_notice", None)
    if notice:
        attrs["model_notice"] = notice
    return attrs


def _source_attrs(source: ImagerySource) -> dict:
    from ..osm.data import ATTRIBUTION

    sat, mp = source.providers()
    return {
        "satellite_provider": sat.name,
        "satellite_attribution": sat.attribution,
        "satellite_synthetic": bool(getattr(sat, "synthetic", False)),
        "map_provider": "osm" if mp is None else mp.name,
        "map_attribution": ATTRIBUTION if mp is None else mp.attribution,
    }


def _is_pair(obj) -> bool:
    return hasattr(obj, "satellite") and hasattr(obj, "grid") and hasattr(obj, "map")


__all__ = ["RESULT_COLUMNS", "ChipRun", "empty_result", "segment"]
