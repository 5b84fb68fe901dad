"""From an area and a query to a GeoDataFrame of entities.

:func:`segment` runs in four named steps: :func:`prepare` (the area or pair, the imagery, the
models), :func:`run_chips` (every chip and query through the reasoner, restoring finished ones
from a resume folder), :func:`merge.polygons` (chip masks back on the area's grid, entities
across chip borders united, vectorised) and :func:`result_attrs` (what the run used).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .. import defaults
from .._progress import progress
from ..errors import ConfigError
from ..geo.area import Area
from ..imagery.chips import iter_chips
from ..imagery.pair import fetch_pair
from ..imagery.source import FIELDS as IMAGERY_FIELDS
from ..imagery.source import ImagerySource
from .merge import RESULT_COLUMNS, ChipResult, empty_result, polygons, record
from .store import ResumeStore

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
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


def segment(  # noqa: PLR0913 (public API: the keyword forms users already write)
    area_or_pair,
    query: str | Sequence[str],
    *,
    reasoner=None,
    imagery: ImagerySource | None = None,
    zoom: int | None = None,
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
        ``offline`` override it.
    zoom : int, optional
        Imagery zoom level (default the area's, 17 for a bbox).
    chip_size, overlap, batch_size
        Chip side and overlap in pixels; chips (times queries) per model call.
    generation : GenerationConfig, optional
        Decoding settings (default: the reasoner's, greedy).
    min_area_m2, simplify_m
        Drop polygons under this many square metres; simplify with this tolerance in metres.
    resume_dir : path, optional
        Keep per-chip results here so a rerun continues where it stopped.
    max_area_km2 : float, optional
        Accept areas up to this size (default ``sociogeo.options.max_area_km2``).
    callback : callable, optional
        ``callback(chip, query, prediction)`` after each chip is reasoned (chips restored from
        ``resume_dir`` are not reported); :meth:`~sociogeo.imagery.chips.Chip.model_to_lonlat`
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
        attribution. No entity gives an empty
        frame with the same columns and CRS.
    """
    queries = check_queries(query)
    run = ChipRun(chip_size, overlap, batch_size, generation)
    pair, reasoner = prepare(area_or_pair, reasoner=reasoner, imagery=imagery, zoom=zoom,
                             max_area_km2=max_area_km2, **settings)
    results = run_chips(pair, queries, reasoner, run, resume_dir=resume_dir, callback=callback)
    out = result_frame(results, queries, pair.grid, min_area_m2=min_area_m2, simplify_m=simplify_m)
    out.attrs.update(result_attrs(pair, reasoner, run, queries))
    return out


def check_queries(query) -> list[str]:
    """``query`` as a non-empty list of non-empty strings."""
    queries = [query] if isinstance(query, str) else list(query)
    if not queries or any(not isinstance(q, str) or not q.strip() for q in queries):
        raise ValueError(f"query must be a non-empty string or a list of them, got {query!r}")
    return queries


def prepare(area_or_pair, *, reasoner=None, imagery=None, zoom=None, max_area_km2=None, **settings):
    """The image pair and the reasoner of a run (imagery fetched, models loaded as needed)."""
    unknown = set(settings) - set(IMAGERY_FIELDS) - set(MODEL_FIELDS)
    if unknown:
        raise TypeError(f"segment() got unexpected keyword arguments {sorted(unknown)}")
    source = ImagerySource.coerce(imagery, **{k: v for k, v in settings.items() if k in IMAGERY_FIELDS})
    target = area_or_pair if _is_pair(area_or_pair) else Area.coerce(area_or_pair, zoom, max_area_km2=max_area_km2)
    if not _is_pair(target):
        source.check(target.zoom)  # a typo in a provider fails before the models load
    if reasoner is None:
        from ..reasoner.model import SocioReasoner

        reasoner = SocioReasoner.from_pretrained(
            settings.get("vlm") or defaults.VLM, settings.get("sam") or defaults.SAM,
            device=settings.get("device"), offline=source.offline, parse=settings.get("parse") or "strict",
        )
    elif settings.get("parse") not in (None, getattr(reasoner, "parse", "strict")):
        raise ConfigError(
            f"parse={settings['parse']!r} differs from the given reasoner's parse={reasoner.parse!r}; "
            "build the reasoner with SocioReasoner(..., parse=...) instead"
        )
    pair = target if _is_pair(target) else fetch_pair(target, imagery=source)
    return pair, reasoner


def run_chips(pair, queries: list[str], reasoner, run: ChipRun, *, resume_dir=None, callback=None) -> dict:
    """Every (chip, query) through the reasoner in batches; ``{query: [ChipResult, ...]}``."""
    grid = pair.grid
    store = None
    if resume_dir is not None:
        store = ResumeStore(resume_dir, {
            "grid": [grid.zoom, grid.col_off, grid.row_off, grid.width, grid.height],
            "chip_size": run.chip_size, "overlap": run.overlap,
            "vlm": reasoner.vlm_name, "sam": reasoner.sam_name, "parse": getattr(reasoner, "parse", "strict"),
        })
    results: dict[str, list[ChipResult]] = {q: [] for q in queries}
    chips = [c for c in iter_chips(pair, size=run.chip_size, overlap=run.overlap) if c.valid.any()]

    def flush(batch):
        preds = reasoner.predict_batch([c.map for c, _ in batch], [c.satellite for c, _ in batch],
                                       [q for _, q in batch], generation=run.generation)
        for (chip, q), pred in zip(batch, preds):
            mask = pred.mask & chip.valid
            if store is not None:
                store.save(q, chip.chip_id, mask, pred.reasoning)
            record(results[q], chip, mask, pred.reasoning, grid.shape)
            if callback is not None:
                callback(chip, q, pred)

    pending: list = []
    with progress(total=len(chips) * len(queries), desc="segmenting", unit="chip") as bar:
        for chip in chips:
            for q in queries:
                cached = store.load(q, chip.chip_id) if store is not None else None
                if cached is not None:
                    record(results[q], chip, cached[0], cached[1], grid.shape)
                    bar.update(1)
                    continue
                pending.append((chip, q))
                if len(pending) >= run.batch_size:
                    flush(pending)
                    bar.update(len(pending))
                    pending = []
        if pending:
            flush(pending)
            bar.update(len(pending))
    return results


def result_frame(results: dict, queries: list[str], grid, *, min_area_m2: float, simplify_m):
    """One GeoDataFrame of every query's entities (EPSG:4326, :data:`RESULT_COLUMNS`)."""
    import geopandas as gpd
    import pandas as pd

    frames = []
    for q in queries:
        frame = polygons(results[q], grid, min_area_m2=min_area_m2, simplify_m=simplify_m)
        if len(frame):
            frame.insert(0, "query", q)
            frames.append(frame[RESULT_COLUMNS])
    if not frames:
        return empty_result()
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs="EPSG:4326")


def result_attrs(pair, reasoner, run: ChipRun, queries: list[str]) -> dict:
    """What a result was made with: models, zoom, chips, imagery and its attribution."""
    pair_attrs = dict(getattr(pair, "attrs", {}) or {})
    credits = [pair_attrs.get("satellite_attribution"), pair_attrs.get("map_attribution")]
    attribution = "; ".join(dict.fromkeys(c for c in credits if c)) or pair_attrs.get("attribution", "")
    attrs = {
        "vlm": reasoner.vlm_name,
        "sam": reasoner.sam_name,
        "trained": bool(reasoner.trained),
        "parse": getattr(reasoner, "parse", "strict"),
        "zoom": pair.grid.zoom,
        "chip_size": run.chip_size,
        "overlap": run.overlap,
        "queries": queries,
        "satellite": pair_attrs.get("satellite_provider") or pair_attrs.get("satellite", ""),
        "map": pair_attrs.get("map_provider") or pair_attrs.get("map", ""),
        "attribution": attribution,
        "bounds": list(pair.grid.lonlat_bounds),
    }
    if not reasoner.trained:
        attrs["warning"] = "UNTRAINED models: these polygons are not meaningful"
    return attrs


def _is_pair(obj) -> bool:
    return hasattr(obj, "satellite") and hasattr(obj, "grid") and hasattr(obj, "map")


__all__ = ["RESULT_COLUMNS", "ChipRun", "empty_result", "segment"]
