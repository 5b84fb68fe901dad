"""From an area and a query to a GeoDataFrame of entities: chips through the reasoner, masks
mosaicked back onto the area's pixel grid (so an entity cut by chip borders becomes one polygon),
then vectorised."""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .chips import DEFAULT_CHIP_SIZE, Window, iter_chips
from .errors import ConfigError
from .progress import progress
from .reasoner import DEFAULT_SAM, DEFAULT_VLM

RESULT_COLUMNS = ["query", "area_m2", "chip_id", "reasoning", "geometry"]


def empty_result(crs="EPSG:4326"):
    """An empty result frame: the same columns and CRS as a non-empty one."""
    from .vectorize import empty_frame

    return empty_frame(crs, columns=RESULT_COLUMNS)


def _as_area_or_pair(obj, zoom, max_area_km2):
    """An ImagePair passes through; anything else becomes an Area."""
    from .area import Area

    if hasattr(obj, "satellite") and hasattr(obj, "grid"):
        return obj
    if isinstance(obj, Area):
        return obj if zoom is None or zoom == obj.zoom else obj.with_zoom(zoom)
    if isinstance(obj, dict) or isinstance(obj, (str, Path)):
        return Area.from_geojson(obj, zoom, max_area_km2=max_area_km2)
    if hasattr(obj, "geometry") and hasattr(obj, "crs") and hasattr(obj, "to_crs"):
        return Area.from_geodataframe(obj, zoom, max_area_km2=max_area_km2)
    if hasattr(obj, "geom_type"):
        return Area.from_geometry(obj, zoom=zoom, max_area_km2=max_area_km2)
    return Area.from_bbox(obj, zoom, max_area_km2=max_area_km2)


@dataclass
class _ChipResult:
    chip_id: str
    window: Window
    mask: np.ndarray  # bool, the chip's in-grid part
    reasoning: str


class _ResumeStore:
    """Per (query, chip) results on disk, so an interrupted run continues where it stopped."""

    def __init__(self, directory, manifest: dict):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "manifest.json"
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except json.JSONDecodeError:
                old = None
            if old is not None and old != manifest:
                diff = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
                raise ConfigError(
                    f"{self.dir} holds results of a different run (differs in: {', '.join(diff)}); "
                    "use another resume_dir or delete it"
                )
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        tmp.replace(path)

    def _path(self, query: str, chip_id: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", query).strip("_")[:40] or "query"
        digest = format(abs(hash_text(query)), "x")[:8]
        return self.dir / f"{slug}-{digest}" / f"{chip_id}.npz"

    def load(self, query: str, chip_id: str):
        path = self._path(query, chip_id)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                shape = tuple(int(v) for v in z["shape"])
                mask = np.unpackbits(z["mask"])[: shape[0] * shape[1]].reshape(shape).astype(bool)
                return mask, str(z["reasoning"])
        except Exception:  # a half-written or corrupt file: recompute that chip
            warnings.warn(f"ignoring unreadable resume file {path}; the chip will be recomputed")
            return None

    def save(self, query: str, chip_id: str, mask: np.ndarray, reasoning: str) -> None:
        path = self._path(query, chip_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, mask=np.packbits(mask.ravel()), shape=np.array(mask.shape), reasoning=np.array(reasoning))
        tmp.replace(path)


def hash_text(text: str) -> int:
    """A hash of ``text`` that is stable across processes (unlike ``hash``)."""
    import zlib

    return zlib.crc32(text.encode("utf-8"))


def segment(
    area_or_pair,
    query: str | Sequence[str],
    *,
    reasoner=None,
    vlm: str = DEFAULT_VLM,
    sam: str = DEFAULT_SAM,
    device=None,
    offline: bool | None = None,
    zoom: int | None = None,
    satellite: str = "Esri.WorldImagery",
    map: str = "OpenStreetMap.Mapnik",
    osm_source=None,
    cache_dir=None,
    chip_size: int = DEFAULT_CHIP_SIZE,
    overlap: int = 0,
    batch_size: int = 4,
    generation=None,
    min_area_m2: float = 10.0,
    simplify_m: float | None = None,
    resume_dir=None,
    max_area_km2: float | None = None,
    callback=None,
):
    """Find ``query`` (e.g. ``"school"``, or a list of queries) in an area; one row per entity.

    ``area_or_pair`` is an :class:`~sociogeo.Area`, a ``(west, south, east, north)`` bbox in
    degrees, GeoJSON, a GeoDataFrame, or an :class:`~sociogeo.imagery.ImagePair` already fetched.
    Imagery comes from ``satellite`` and ``map`` (tile providers, or ``map="osm"`` to render the
    map locally from OpenStreetMap, ``osm_source`` a local file). Models: a ready ``reasoner``, or
    ``vlm``/``sam`` ids or paths loaded with :meth:`SocioReasoner.from_pretrained`.

    Returns a GeoDataFrame in EPSG:4326 with columns ``query``, ``area_m2``, ``chip_id`` (the
    chips the entity was found in, comma-separated), ``reasoning`` (the model's think texts) and
    ``geometry``; ``.attrs`` records the models, zoom, imagery providers and attribution.
    Polygons smaller than ``min_area_m2`` are dropped; ``simplify_m`` simplifies (metres).
    ``resume_dir`` stores per-chip results so a rerun continues where it stopped.
    ``callback(chip, query, prediction)`` is called after each chip is reasoned (e.g. to draw
    stage-1 boxes or show progress; :meth:`sociogeo.chips.Chip.model_to_lonlat` converts the
    prediction's coordinates); chips restored from ``resume_dir`` are not reported.
    """
    import geopandas as gpd
    import pandas as pd

    from .reasoner import SocioReasoner

    queries = [query] if isinstance(query, str) else list(query)
    if not queries or any(not isinstance(q, str) or not q.strip() for q in queries):
        raise ValueError(f"query must be a non-empty string or a list of them, got {query!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")

    target = _as_area_or_pair(area_or_pair, zoom, max_area_km2)
    if reasoner is None:
        reasoner = SocioReasoner.from_pretrained(vlm, sam, device=device, offline=offline)
    if hasattr(target, "satellite"):
        pair = target
    else:
        from .imagery import fetch_pair

        pair = fetch_pair(target, satellite=satellite, map=map, cache_dir=cache_dir, offline=offline, osm_source=osm_source)
    grid = pair.grid

    store = None
    if resume_dir is not None:
        store = _ResumeStore(resume_dir, {
            "grid": [grid.zoom, grid.col_off, grid.row_off, grid.width, grid.height],
            "chip_size": chip_size, "overlap": overlap,
            "vlm": reasoner.vlm_name, "sam": reasoner.sam_name,
        })

    results: dict[str, list[_ChipResult]] = {q: [] for q in queries}
    chips = [c for c in iter_chips(pair, size=chip_size, overlap=overlap) if c.valid.any()]
    pending = []  # (chip, query) still to run

    def flush(batch):
        preds = reasoner.predict_batch(
            [c.map for c, _ in batch], [c.satellite for c, _ in batch], [q for _, q in batch], generation=generation
        )
        for (chip, q), pred in zip(batch, preds):
            mask = pred.mask & chip.valid
            if store is not None:
                store.save(q, chip.chip_id, mask, pred.reasoning)
            _record(results[q], chip, mask, pred.reasoning, grid.shape)
            if callback is not None:
                callback(chip, q, pred)

    bar = progress(total=len(chips) * len(queries), desc="segmenting", unit="chip")
    try:
        for chip in chips:
            for q in queries:
                cached = store.load(q, chip.chip_id) if store is not None else None
                if cached is not None:
                    _record(results[q], chip, cached[0], cached[1], grid.shape)
                    bar.update(1)
                    continue
                pending.append((chip, q))
                if len(pending) >= batch_size:
                    flush(pending)
                    bar.update(len(pending))
                    pending = []
        if pending:
            flush(pending)
            bar.update(len(pending))
    finally:
        bar.close()

    frames = []
    for q in queries:
        frame = _polygons(results[q], grid, min_area_m2=min_area_m2, simplify_m=simplify_m)
        if len(frame):
            frame.insert(0, "query", q)
            frames.append(frame[RESULT_COLUMNS])
    out = (
        gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs="EPSG:4326")
        if frames else empty_result()
    )
    pair_attrs = dict(getattr(pair, "attrs", {}) or {})
    credits = [pair_attrs.get("satellite_attribution"), pair_attrs.get("map_attribution")]
    attribution = "; ".join(dict.fromkeys(c for c in credits if c)) or pair_attrs.get("attribution", "")
    out.attrs.update({
        "vlm": reasoner.vlm_name,
        "sam": reasoner.sam_name,
        "trained": bool(reasoner.trained),
        "zoom": grid.zoom,
        "chip_size": chip_size,
        "overlap": overlap,
        "queries": queries,
        "satellite": pair_attrs.get("satellite_provider") or pair_attrs.get("satellite", satellite),
        "map": pair_attrs.get("map_provider") or pair_attrs.get("map", map),
        "attribution": attribution,
        "bounds": list(grid.lonlat_bounds),
    })
    if not reasoner.trained:
        out.attrs["warning"] = "UNTRAINED models: these polygons are not meaningful"
    return out


def _record(bucket: list, chip, mask: np.ndarray, reasoning: str, grid_shape) -> None:
    """Keep the part of a chip's mask that lies inside the area's grid."""
    w = chip.window
    h = min(w.height, grid_shape[0] - w.row_off)
    wd = min(w.width, grid_shape[1] - w.col_off)
    inner = mask[:h, :wd]
    if inner.any():
        bucket.append(_ChipResult(chip.chip_id, Window(w.col_off, w.row_off, wd, h), inner, reasoning))


def _polygons(chip_results: Iterable[_ChipResult], grid, *, min_area_m2, simplify_m):
    """Mosaic chip masks on the grid, label connected entities, vectorise, attach chip ids and reasoning."""
    from scipy import ndimage

    from .vectorize import vectorize

    chip_results = list(chip_results)
    mosaic = np.zeros(grid.shape, dtype=bool)
    for r in chip_results:
        w = r.window
        mosaic[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width] |= r.mask
    if not mosaic.any():
        return empty_result()
    labels, _ = ndimage.label(mosaic, structure=np.ones((3, 3), bool))
    frame = vectorize(labels, grid.transform, grid.crs, min_area_m2=min_area_m2, simplify_m=simplify_m)
    if len(frame) == 0:
        return empty_result()
    contributors: dict[int, list[_ChipResult]] = {}
    for r in chip_results:
        w = r.window
        for lab in np.unique(labels[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width][r.mask]):
            if lab:
                contributors.setdefault(int(lab), []).append(r)
    chip_ids, reasoning = [], []
    for lab in frame["label"]:
        rs = contributors.get(int(lab), [])
        chip_ids.append(",".join(r.chip_id for r in rs))
        if len(rs) == 1:
            reasoning.append(rs[0].reasoning)
        else:
            reasoning.append("\n\n".join(f"[{r.chip_id}] {r.reasoning}" for r in rs))
    frame["chip_id"] = chip_ids
    frame["reasoning"] = reasoning
    return frame.drop(columns="label")
