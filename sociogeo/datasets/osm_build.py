"""Training samples for new cities from OpenStreetMap: :func:`build_dataset` and ``sociogeo build-dataset``.

SocioSeg's labels are AOI polygons rasterised to masks (SocioSeg's layout). This module makes the
same kind of sample for any area OpenStreetMap covers:

1. the OSM polygons whose tags map to a socio-class (:func:`sociogeo.osm.taxonomy.classify_tags`) are
   loaded for the area (:func:`socio_features`) and projected to the imagery grid (EPSG:3857);
2. the satellite image and the map image are fetched on one grid (:func:`sociogeo.imagery.fetch_pair`;
   ``map="osm"`` renders the map locally from the same OSM source) and cut into square chips;
3. every chip yields one sample per query, at three levels: ``class`` ("school": every school
   polygon in the chip), ``function`` ("Educational": every polygon of the function's classes)
   and ``name`` (an OSM ``name``: the polygon(s) carrying exactly that name in the chip);
4. each mask is the union of its target polygons rasterised by pixel centre
   (``rasterio.features.rasterize``, ``all_touched=False``) on the chip's transform;
5. samples are written in SocioSeg's raw layout (``out_dir/<split>/<id>/map.png, sat.png,
   mask.png, question.json``), plus ``samples.csv`` and ``build.json``.

Filters, in the order they apply:

- polygons smaller than ``min_area_m2`` square ground metres are left out of the dataset;
- a chip is skipped when it lies outside the area's polygon or has a nodata pixel (a missing
  or transparent tile in either image);
- inside a chip, a polygon showing fewer than ``min_pixels`` pixels is ignored (a sliver at the
  chip's edge is not something to segment); a query left with no polygon is skipped;
- ``edge_policy``: ``"drop"`` skips a sample when any of its target polygons is cut by the chip
  edge (only whole entities, the cleanest labels); ``"keep"`` keeps such samples, with the
  visible part as the mask; ``"clip"`` keeps a sample only if every target shows at least
  ``min_visible`` of its area inside the chip;
- a sample whose mask covers more than ``max_fraction`` of the chip is skipped (no "everything"
  answers), and so is one whose mask yields no ground-truth box under the training rewards'
  rule (:func:`sociogeo.datasets.truth.gt_boxes`: no contour enclosing more than 10 px).

Splits are assigned per chip, never per sample, so all queries of one chip land in the same
split and no image is shared between train and test. The assignment is a hash of the chip's
position in the global Web-Mercator pixel raster (zoom, column, row) and ``seed``, so a chip
gets the same split in every build that contains it; with few chips the proportions are only
approximately ``split``. Overlapping chips (``overlap > 0``) share pixels and may fall in
different splits: keep ``overlap=0`` for strictly separate splits.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import shutil
import unicodedata
import warnings
from collections import Counter
from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .. import defaults
from ..errors import ConfigError
from ..imagery.chips import chip_windows
from ..imagery.pair import fetch_pair
from ..options import options
from .socioseg import SPLITS

LEVELS = ("class", "function", "name")
EDGE_POLICIES = ("drop", "keep", "clip")
DEFAULT_SPLIT = (0.6, 0.1, 0.3)  # SocioSeg's 6:1:3 (SocioSeg's layout)
DEFAULT_MIN_AREA_M2 = 200.0  # ground square metres: a small building
DEFAULT_MIN_PIXELS = 100  # pixels of a polygon visible in a chip
DEFAULT_MAX_FRACTION = 0.8  # of the chip's pixels
DEFAULT_MIN_VISIBLE = 0.5  # of a polygon's area, for edge_policy="clip"
CSV_COLUMNS = ("id", "split", "level", "query", "n_polygons", "mask_fraction", "socio_class",
               "socio_function", "osm_ids")
OSM_ATTRIBUTION = "© OpenStreetMap contributors, ODbL"

# every reason a chip, polygon or query can be skipped for, as counted in BuildReport.skipped
SKIP_REASONS = (
    "polygon_below_min_area",  # a polygon smaller than min_area_m2 (counted once per build)
    "chip_outside_area",  # the chip does not touch the area's polygon
    "chip_nodata",  # the chip has a pixel without imagery
    "chip_no_polygons",  # no socio polygon reaches the chip
    "query_too_small",  # every target shows fewer than min_pixels pixels
    "query_cut_by_edge",  # edge_policy="drop" and a target is cut by the chip edge
    "query_low_visible_fraction",  # edge_policy="clip" and a target is less than min_visible inside
    "query_mask_too_large",  # the mask covers more than max_fraction of the chip
    "query_no_box",  # the mask has no ground-truth box (sociogeo.datasets.truth.gt_boxes)
)


# -- report ---------------------------------------------------------------------------------------
@dataclass
class BuildReport:
    """What :func:`build_dataset` wrote.

    ``records`` holds one dict per written sample (the rows of ``samples.csv``: id, split, level,
    query, n_polygons, mask_fraction, socio_class, socio_function, osm_ids); ``skipped`` counts
    skipped chips, polygons and queries by reason (see :data:`SKIP_REASONS`); ``message`` says why
    nothing was written when that happens. ``dataset`` is the ``datasets.DatasetDict`` built when
    ``hf=True`` (saved under ``hf_path``).
    """

    out_dir: Path
    records: list[dict] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    n_chips: int = 0
    n_polygons: int = 0
    samples_csv: Path | None = None
    build_json: Path | None = None
    hf_path: Path | None = None
    dataset: Any = None
    truncated: bool = False
    message: str = ""

    @property
    def n_samples(self) -> int:
        """Number of samples written."""
        return len(self.records)

    @property
    def by_split(self) -> dict[str, int]:
        """Samples per split, in train/val/test order."""
        counts = Counter(r["split"] for r in self.records)
        return {s: counts[s] for s in SPLITS if counts[s]}

    @property
    def by_level(self) -> dict[str, int]:
        """Samples per query level, in class/function/name order."""
        counts = Counter(r["level"] for r in self.records)
        return {lvl: counts[lvl] for lvl in LEVELS if counts[lvl]}

    @property
    def by_function(self) -> dict[str, int]:
        """Samples per socio-function (name samples count under their polygons' function)."""
        counts = Counter(r["socio_function"] or "(mixed)" for r in self.records)
        return dict(sorted(counts.items()))

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Samples per split and level: ``{"train": {"class": 12, ...}, ...}``."""
        out: dict[str, dict[str, int]] = {}
        for r in self.records:
            out.setdefault(r["split"], Counter())[r["level"]] += 1
        return {s: dict(out[s]) for s in SPLITS if s in out}

    def to_dataframe(self):
        """The records as a pandas DataFrame (the contents of ``samples.csv``)."""
        import pandas as pd

        return pd.DataFrame(self.records, columns=list(CSV_COLUMNS))

    def to_hf_dataset(self, split: str | None = None):
        """The written samples as a ``datasets.DatasetDict`` of the splits that have samples, or a
        ``datasets.Dataset`` of one ``split``; SocioSeg's columns (id, problem, map_image,
        sat_image, mask_label) plus level, socio_class and socio_function.
        """
        from .._optional import require

        datasets = require("datasets", purpose="building a datasets.Dataset")
        if split is not None:
            return self._hf_split(split)
        return datasets.DatasetDict({s: self._hf_split(s) for s in self.by_split})

    def _hf_split(self, split: str):
        from ..errors import DatasetNotFoundError
        from .socioseg import load_socioseg, to_hf_dataset

        if split not in self.by_split:
            raise DatasetNotFoundError(
                f"this build wrote no {split!r} samples (splits with samples: {list(self.by_split) or 'none'})"
            )
        loaded = load_socioseg(self.out_dir, split)
        by_id = {r["id"]: r for r in self.records}
        ds = to_hf_dataset(loaded)
        ids = ds["id"]
        for column in ("socio_class", "socio_function"):
            ds = ds.add_column(column, [by_id.get(i, {}).get(column) or "" for i in ids])
        return ds

    def summary(self) -> str:
        """A few lines for people: samples per split, level and function, and what was skipped."""
        head = f"{self.n_samples} samples from {self.n_chips} chips and {self.n_polygons} OSM polygons"
        lines = [f"{head} in {self.out_dir}"]
        if self.message:
            lines.append(self.message)
        if self.records:
            lines.append("  per split:    " + _counts_text(self.by_split))
            lines.append("  per level:    " + _counts_text(self.by_level))
            lines.append("  per function: " + _counts_text(self.by_function))
        skipped = {k: v for k, v in self.skipped.items() if v}
        if skipped:
            lines.append("  skipped:      " + _counts_text(skipped))
        if self.truncated:
            lines.append("  stopped at max_samples")
        for label, path in (("samples", self.samples_csv), ("dataset", self.hf_path)):
            if path is not None:
                lines.append(f"  {label}: {path}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _counts_text(counts: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or "none"


# -- OSM polygons -------------------------------------------------------------------------------
def taxonomy_tags() -> dict[str, bool | list[str]]:
    """The osmnx-style tag filter selecting every feature the taxonomy can classify
    (the union of :func:`sociogeo.osm.taxonomy.osm_tags_for` over the 10 socio-functions).
    """
    from ..osm.taxonomy import osm_tags_for, socio_functions

    tags: dict[str, bool | list[str]] = {}
    for function in socio_functions():
        for key, values in osm_tags_for(function).items():
            if values is True or tags.get(key) is True:
                tags[key] = True
            else:
                tags[key] = sorted(set(tags.get(key, [])) | set(values))
    return tags


def socio_features(bounds, *, source=None):
    """OSM polygons inside or crossing ``bounds`` = (west, south, east, north) degrees that map to a
    socio-class, as a GeoDataFrame in EPSG:4326.

    Columns: ``osm_id`` ("way/123"), ``osmid``, ``element``, ``name`` (whitespace-normalised; None
    when absent), ``socio_class``, ``socio_function``, ``area_m2`` (ground square metres) and the
    whole (unclipped, repaired) polygon. ``source`` is as in :func:`sociogeo.osm.load_features`
    (None: Overpass; or a local .osm / .osm.pbf file).
    """
    import geopandas as gpd
    import shapely

    from ..osm.data import load_features
    from ..osm.taxonomy import classify_tags

    raw = load_features(bounds, taxonomy_tags(), source=source)
    classes = [classify_tags(tags) for tags in raw.drop(columns="geometry").to_dict("records")]
    keep = np.array([c is not None for c in classes], dtype=bool)
    raw = raw[keep]
    classes = [c for c in classes if c is not None]
    geoms = np.array([_polygonal(g) for g in raw.geometry.to_numpy()], dtype=object)
    out = gpd.GeoDataFrame(
        {
            "osm_id": [f"{e}/{i}" for e, i in zip(raw["element"], raw["osmid"])],
            "osmid": raw["osmid"].to_numpy(),
            "element": raw["element"].to_numpy(),
            "name": [_clean_name(n) for n in raw["name"]],
            "socio_class": [c for c, _ in classes],
            "socio_function": [f for _, f in classes],
        },
        geometry=gpd.GeoSeries(geoms, crs="EPSG:4326"),
        crs="EPSG:4326",
    )
    out = out[~shapely.is_empty(geoms)].reset_index(drop=True)
    out["area_m2"] = _ground_area_m2(out)
    return out


def _polygonal(geom):
    """A valid (Multi)Polygon from an OSM polygon; an empty polygon if nothing areal is left."""
    import shapely
    from shapely.geometry import MultiPolygon, Polygon

    if geom is None:
        return Polygon()
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if isinstance(geom, (Polygon, MultiPolygon)):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if isinstance(g, (Polygon, MultiPolygon))]
    return shapely.union_all(parts) if parts else Polygon()


def _clean_name(value) -> str | None:
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    return text or None


def _ground_area_m2(gdf) -> np.ndarray:
    """Ground area of each polygon in square metres: Web-Mercator area times the squared scale
    factor cos(latitude) at the polygon (exact enough for polygons a few km across).
    """
    if len(gdf) == 0:
        return np.zeros(0)
    lat = np.radians(gdf.geometry.representative_point().y.to_numpy())
    return gdf.geometry.to_crs("EPSG:3857").area.to_numpy() * np.cos(lat) ** 2


# -- chips and polygons -------------------------------------------------------------------------
class _Target(NamedTuple):
    """One polygon as seen in one chip: its pixels (a window of the chip and a mask over it)."""

    index: int  # row in the features table
    rows: slice
    cols: slice
    mask: np.ndarray  # bool, over chip[rows, cols]
    pixels: int
    cut: bool  # part of the polygon lies outside the chip
    visible: float  # fraction of the polygon's area inside the chip


class _Query(NamedTuple):
    level: str
    text: str
    targets: list  # of _Target
    socio_class: str | None
    socio_function: str | None


def chip_split(grid, ratios=DEFAULT_SPLIT, seed: int = 0) -> str:
    """The split ("train", "val" or "test") of the chip on ``grid`` (a :class:`PixelGrid`).

    A hash of the chip's zoom and global pixel offsets with ``seed``, mapped onto the cumulative
    ``ratios`` (train, val, test): the same chip gets the same split in every build.
    """
    ratios = _check_split(ratios)
    key = f"sociogeo-split/{int(seed)}/{grid.zoom}/{grid.col_off}/{grid.row_off}"
    u = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0**64
    edges = np.cumsum(ratios) / sum(ratios)
    for name, edge in zip(SPLITS, edges):
        if u < edge:
            return name
    return SPLITS[max(i for i, r in enumerate(ratios) if r > 0)]


def _chip_targets(features_3857, tree, chip) -> list[_Target]:
    """Every polygon reaching the chip, rasterised by pixel centre on the chip's transform."""
    import shapely

    box = shapely.box(*chip.grid.bounds)
    out = []
    for index in np.sort(tree.query(box, predicate="intersects")):
        geom = features_3857[index]
        window = _pixel_window(geom, chip.grid)
        if window is None:
            continue
        rows, cols = window
        mask = _rasterize(geom, chip.grid, rows, cols)
        area = geom.area
        inside = shapely.intersection(geom, box).area
        out.append(_Target(
            index=int(index), rows=rows, cols=cols, mask=mask, pixels=int(mask.sum()),
            cut=not shapely.contains(box, geom), visible=float(inside / area) if area > 0 else 0.0,
        ))
    return out


def _pixel_window(geom, grid) -> tuple[slice, slice] | None:
    """The chip's rows and columns that the polygon's bounds reach, or None."""
    minx, miny, maxx, maxy = geom.bounds
    (c0, c1), (r0, r1) = grid.rowcol([minx, maxx], [maxy, miny])
    c0, r0 = max(0, math.floor(c0)), max(0, math.floor(r0))
    c1, r1 = min(grid.width, math.ceil(c1)), min(grid.height, math.ceil(r1))
    if c1 <= c0 or r1 <= r0:
        return None
    return slice(r0, r1), slice(c0, c1)


def _rasterize(geom, grid, rows: slice, cols: slice) -> np.ndarray:
    """Bool mask of the pixels in ``grid[rows, cols]`` whose centre the polygon (EPSG:3857) contains."""
    from affine import Affine
    from rasterio.features import rasterize

    transform = grid.transform @ Affine.translation(cols.start, rows.start)
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    burned = rasterize([(geom, 1)], out_shape=shape, transform=transform, fill=0, dtype="uint8",
                       all_touched=False)
    return burned.astype(bool)


def _queries(targets: list[_Target], features, levels: Sequence[str]) -> list[_Query]:
    """The chip's queries in ``levels`` order, each level's queries sorted by text."""
    classes = features["socio_class"].to_numpy()
    functions = features["socio_function"].to_numpy()
    names = features["name"].to_numpy()
    out = []
    for level in levels:
        groups: dict[str, list[_Target]] = {}
        for t in targets:
            key = {"class": classes, "function": functions, "name": names}[level][t.index]
            if isinstance(key, str) and key:  # missing names are None or NaN
                groups.setdefault(key, []).append(t)
        for text in sorted(groups):
            members = groups[text]
            cls = {classes[t.index] for t in members}
            fns = {functions[t.index] for t in members}
            out.append(_Query(
                level=level, text=text, targets=members,
                socio_class=cls.pop() if level != "function" and len(cls) == 1 else None,
                socio_function=fns.pop() if len(fns) == 1 else None,
            ))
    return out


def _union_mask(targets: list[_Target], shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for t in targets:
        mask[t.rows, t.cols] |= t.mask
    return mask


def _has_box(mask: np.ndarray) -> bool:
    """Whether :func:`sociogeo.datasets.truth.gt_boxes` finds a box in the mask.

    A component holding a filled 5 x 5 block has an external contour enclosing at least the
    4 x 4 square of the block's pixel centres (area 16 > 10), so that cheap test settles most
    masks without tracing contours.
    """
    from scipy import ndimage

    if ndimage.binary_erosion(mask, structure=np.ones((5, 5), dtype=bool)).any():
        return True
    from .truth import gt_boxes

    return bool(gt_boxes(mask))


# -- ids ------------------------------------------------------------------------------------------
def _slug(text: str, limit: int = 32) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:limit].strip("-")


def _area_tag(area) -> str:
    if area.name and _slug(area.name):
        return _slug(area.name, 24)
    west, south, east, north = area.bounds
    lon, lat = (west + east) / 2, (south + north) / 2
    return f"{abs(lon):.4f}{'E' if lon >= 0 else 'W'}{abs(lat):.4f}{'N' if lat >= 0 else 'S'}".replace(".", "p")


def sample_id(area_tag: str, grid, level: str, query: str) -> str:
    """``<area>_z<zoom>_x<col>_y<row>_<level>_<query slug>-<hash>``: the chip's global pixel
    offsets identify the chip, the query hash keeps non-Latin names apart.
    """
    digest = hashlib.sha1(query.encode("utf-8")).hexdigest()[:8]
    slug = _slug(query)
    tail = f"{slug}-{digest}" if slug else digest
    return f"{area_tag}_z{grid.zoom}_x{grid.col_off}_y{grid.row_off}_{level}_{tail}"


# -- argument checks --------------------------------------------------------------------------------
def _check_levels(levels) -> tuple[str, ...]:
    if isinstance(levels, str):
        levels = (levels,)
    levels = tuple(dict.fromkeys(levels or ()))
    bad = [lvl for lvl in levels if lvl not in LEVELS]
    if not levels or bad:
        raise ConfigError(f"levels must be a non-empty selection of {LEVELS}, got {levels!r}")
    return levels


def _check_split(split) -> tuple[float, float, float]:
    if isinstance(split, dict):
        unknown = set(split) - set(SPLITS)
        if unknown:
            raise ConfigError(f"split keys must be among {SPLITS}, got {sorted(unknown)}")
        split = [split.get(s, 0.0) for s in SPLITS]
    try:
        ratios = tuple(float(r) for r in split)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"split must be three ratios (train, val, test), e.g. {DEFAULT_SPLIT}; got {split!r}"
        ) from exc
    if len(ratios) != 3 or any(not math.isfinite(r) or r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ConfigError(
            f"split must be three non-negative ratios (train, val, test) with a positive sum, "
            f"e.g. {DEFAULT_SPLIT}; got {split!r}"
        )
    return ratios


def _check_number(name: str, value, *, low: float, high: float = math.inf, low_open: bool = False,
                  integer: bool = False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok:
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        kind = "an integer" if integer else "a number"
        bounds = [f"> {low:g}" if low_open else f">= {low:g}"] if math.isfinite(low) else []
        bounds += [f"<= {high:g}"] if math.isfinite(high) else []
        raise ConfigError(f"{name} must be {' '.join([kind, ' and '.join(bounds)]).strip()}, got {value!r}")
    return int(value) if integer else float(value)


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse to mix two builds in one folder; with ``overwrite`` remove what an earlier build wrote."""
    managed = [out_dir / s for s in SPLITS] + [out_dir / "samples.csv", out_dir / "build.json", out_dir / "hf"]
    present = [p for p in managed if p.exists()]
    if present and not overwrite:
        raise ConfigError(
            f"{out_dir} already holds a dataset ({', '.join(p.name for p in present)}); pass overwrite=True "
            "(--overwrite) to replace it, or choose another output folder"
        )
    for path in present:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


# -- the builder ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SampleFilters:
    """Which polygons and samples a build keeps (see the module docstring for the order).

    ``min_area_m2``: smallest polygon in ground square metres; ``min_pixels``: smallest visible
    part of a polygon in a chip; ``edge_policy``: ``"drop"``, ``"keep"`` or ``"clip"`` (with
    ``min_visible``, the smallest visible fraction of each target); ``max_fraction``: largest
    mask, as a fraction of the chip.
    """

    min_area_m2: float = DEFAULT_MIN_AREA_M2
    min_pixels: int = DEFAULT_MIN_PIXELS
    edge_policy: str = "drop"
    min_visible: float = DEFAULT_MIN_VISIBLE
    max_fraction: float = DEFAULT_MAX_FRACTION

    def checked(self) -> SampleFilters:
        """A validated copy (ConfigError naming the bad field)."""
        if self.edge_policy not in EDGE_POLICIES:
            raise ConfigError(f"edge_policy must be one of {EDGE_POLICIES}, got {self.edge_policy!r}")
        return SampleFilters(
            min_area_m2=_check_number("min_area_m2", self.min_area_m2, low=0),
            min_pixels=_check_number("min_pixels", self.min_pixels, low=0, integer=True),
            edge_policy=self.edge_policy,
            min_visible=_check_number("min_visible", self.min_visible, low=0, high=1),
            max_fraction=_check_number("max_fraction", self.max_fraction, low=0, high=1, low_open=True),
        )


FILTER_FIELDS = tuple(f.name for f in fields(SampleFilters))


def build_dataset(  # noqa: PLR0913 (public API: the keyword forms users already write)
    area,
    out_dir,
    *,
    imagery=None,
    levels: Sequence[str] = LEVELS,
    chip_size: int = defaults.CHIP_SIZE,
    overlap: int = 0,
    filters: SampleFilters | None = None,
    split=DEFAULT_SPLIT,
    seed: int = 0,
    max_samples: int | None = None,
    hf: bool = False,
    overwrite: bool = False,
    **settings,
) -> BuildReport:
    """Build SocioSeg-style training samples for ``area`` from OpenStreetMap polygons, written
    under ``out_dir`` in SocioSeg's raw layout.

    Parameters
    ----------
    area
        Anything :meth:`sociogeo.Area.coerce` accepts; its zoom is the imagery's (with a raster
        satellite layer and no zoom given, the zoom nearest the raster's resolution).
    out_dir : path
        Output folder (refused if it already holds a build, unless ``overwrite``).
    imagery : ImagerySource, optional
        The satellite and map layers (default Esri imagery and the map rendered from OSM data,
        ``map="osm"``). The keyword settings ``satellite``, ``map``, ``osm_source``, ``cache_dir``
        and ``offline`` override it; ``offline=True`` also keeps OSM loading off the network.
    levels : sequence of str
        Query levels: ``"class"``, ``"function"``, ``"name"``.
    chip_size, overlap : int
        Chip side and overlap in pixels; the area's grid is enlarged to whole chips, so no chip
        is padded.
    filters : SampleFilters, optional
        Which polygons and samples to keep; its fields (``min_area_m2``, ``min_pixels``,
        ``edge_policy``, ``min_visible``, ``max_fraction``) may also be given as keywords.
    split, seed
        (train, val, test) ratios, assigned per chip with ``seed``.
    max_samples : int, optional
        Stop after that many samples.
    hf : bool
        Also build a ``datasets.DatasetDict`` (``report.dataset``) and save it under ``out_dir/hf``.
    overwrite : bool
        Replace a dataset already in ``out_dir``.

    Returns
    -------
    BuildReport
        What was written and what was skipped, by reason. An area without any matching polygon
        gives an empty report and a warning, before any imagery is fetched. Each
        ``question.json`` holds ``problem``, ``level``, ``socio_class``, ``socio_function``,
        ``osm_ids``, ``targets`` (per polygon: OSM id, name, class, function, visible fraction,
        cut by the edge), ``chip`` (zoom, global pixel offsets, size, EPSG:3857 transform),
        ``bounds_lonlat`` (west, south, east, north), ``split`` and ``attribution``.
    """
    from ..geo.area import Area
    from ..imagery.source import FIELDS as IMAGERY_FIELDS
    from ..imagery.source import ImagerySource

    unknown = set(settings) - set(IMAGERY_FIELDS) - set(FILTER_FIELDS)
    if unknown:
        raise TypeError(f"build_dataset() got unexpected keyword arguments {sorted(unknown)}")
    source = ImagerySource.coerce(imagery or ImagerySource(map=defaults.OSM_MAP),
                                  **{k: v for k, v in settings.items() if k in IMAGERY_FIELDS})
    area = source.choose_zoom(Area.coerce(area))  # a raster's own resolution when no zoom was given
    filters = replace(filters or SampleFilters(), **{k: v for k, v in settings.items() if k in FILTER_FIELDS}).checked()
    levels = _check_levels(levels)
    ratios = _check_split(split)
    chip_size = _check_number("chip_size", chip_size, low=0, low_open=True, integer=True)
    overlap = _check_number("overlap", overlap, low=0, high=chip_size - 1, integer=True)
    seed = _check_number("seed", seed, low=-math.inf, integer=True)
    if max_samples is not None:
        max_samples = _check_number("max_samples", max_samples, low=1, integer=True)
    source.check(area.zoom)  # a provider typo fails before anything is loaded
    out_dir = Path(out_dir).expanduser()
    _prepare_out_dir(out_dir, overwrite)

    grid = _chip_aligned_grid(area.grid, chip_size, overlap)
    report = BuildReport(out_dir=out_dir, skipped=Counter({reason: 0 for reason in SKIP_REASONS}))
    features = _polygons(grid, source, filters, report)
    if len(features) == 0:
        report.message = (
            f"no OpenStreetMap polygon of at least {filters.min_area_m2:g} m² in {area} maps to a socio-class, "
            "so there is nothing to label; choose an area with schools, parks, offices... "
            "(see sociogeo.osm.taxonomy.load_taxonomy()) or lower min_area_m2"
        )
        warnings.warn(report.message, stacklevel=2)
        report.skipped = dict(report.skipped)
        return report

    with _network_guard(source):
        pair = fetch_pair(grid, imagery=source)
    report.n_chips = len(chip_windows(grid.width, grid.height, chip_size, overlap))
    writer = _SampleWriter(out_dir, area, pair, chip_size=chip_size, overlap=overlap, levels=levels,
                           filters=filters, ratios=ratios, seed=seed, skipped=report.skipped)
    writer.run(features, max_samples=max_samples)
    _finish_report(report, writer, area, pair, source, parameters={
        "levels": list(levels), "chip_size": chip_size, "overlap": overlap, **asdict(filters),
        "split": list(ratios), "seed": seed, "max_samples": max_samples,
    })
    if hf and report.records:
        report.dataset = report.to_hf_dataset()
        report.hf_path = out_dir / "hf"
        with _datasets_progress(options.progress):
            report.dataset.save_to_disk(str(report.hf_path))
    return report


def _network_guard(source):
    """With an offline source, OSM loading (Overpass) stays off the network too, not only tiles."""
    return options.context(offline=True) if source.offline else nullcontext()


def _polygons(grid, source, filters: SampleFilters, report: BuildReport):
    """The socio polygons reaching ``grid``, those below ``min_area_m2`` counted and dropped."""
    with _network_guard(source):
        features = socio_features(_clamped_bounds(grid), source=source.osm_source)
    small = features["area_m2"].to_numpy() < filters.min_area_m2
    report.skipped["polygon_below_min_area"] = int(small.sum())
    features = features[~small].reset_index(drop=True)
    report.n_polygons = len(features)
    return features


def _finish_report(report: BuildReport, writer, area, pair, source, *, parameters: dict) -> None:
    """Records, counts, samples.csv and build.json; a warning when nothing passed the filters."""
    report.records = writer.records
    report.truncated = writer.truncated
    report.skipped = dict(report.skipped)
    report.samples_csv = _write_csv(report.out_dir / "samples.csv", report.records)
    if not report.records:
        counts = {k: v for k, v in report.skipped.items() if v}
        worst = max(counts, key=counts.get) if counts else None
        report.message = f"no sample passed the filters ({_counts_text(counts)}); {_HINTS.get(worst, _HINTS[None])}"
        warnings.warn(report.message, stacklevel=3)
    imagery = {k: v for k, v in source.describe().items() if k in ("satellite", "map", "osm_source")}
    report.build_json = _write_build_json(report.out_dir / "build.json", report, area, pair,
                                          parameters={**imagery, **parameters})


# what to change when one reason skipped most of the candidates
_HINTS = {
    "chip_nodata": "the imagery has gaps there: check the satellite provider's coverage at this zoom",
    "chip_outside_area": "the area's polygon touches few chips: use a larger area",
    "query_cut_by_edge": "try edge_policy='clip' or 'keep', or a larger chip_size",
    "query_low_visible_fraction": "try a smaller min_visible, edge_policy='keep' or a larger chip_size",
    "query_too_small": "try a smaller min_pixels or a higher zoom",
    "query_mask_too_large": "try a larger max_fraction or a higher zoom",
    None: "loosen the filters (edge_policy, min_pixels, min_area_m2, max_fraction)",
}


@contextmanager
def _datasets_progress(enabled: bool):
    """Make ``datasets``' own progress bars follow ``sociogeo.options.progress`` for a while."""
    import datasets

    silence = datasets.is_progress_bar_enabled() and not enabled
    if silence:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if silence:
            datasets.enable_progress_bars()


def _chip_aligned_grid(grid, chip_size: int, overlap: int):
    """``grid`` enlarged right and down to a whole number of chips."""
    step = chip_size - overlap

    def extent(n: int) -> int:
        count = 1 if n <= chip_size else math.ceil((n - chip_size) / step) + 1
        return (count - 1) * step + chip_size

    return grid.window(0, 0, extent(grid.width), extent(grid.height))


def _clamped_bounds(grid) -> tuple[float, float, float, float]:
    from ..geo.grid import MAX_LATITUDE

    west, south, east, north = grid.lonlat_bounds
    return (max(west, -180.0), max(south, -MAX_LATITUDE), min(east, 180.0), min(north, MAX_LATITUDE))


class _SampleWriter:
    """Turns chips into samples and writes them; counts what it skips."""

    def __init__(self, out_dir: Path, area, pair, *, chip_size, overlap, levels, filters: SampleFilters,
                 ratios, seed, skipped: Counter):
        self.out_dir = out_dir
        self.chip_size = chip_size
        self.overlap = overlap
        self.area = area
        self.pair = pair
        self.levels = levels
        self.filters = filters
        self.ratios = ratios
        self.seed = seed
        self.skipped = skipped
        self.records: list[dict] = []
        self.truncated = False
        self.area_tag = _area_tag(area)
        self.attribution = {
            "satellite": pair.attrs.get("satellite_attribution", ""),
            "map": pair.attrs.get("map_attribution", ""),
            "labels": OSM_ATTRIBUTION,
        }

    def run(self, features, *, max_samples: int | None) -> None:
        import shapely

        from .._progress import progress
        from ..geo.grid import lonlat_to_mercator
        from ..imagery.chips import chip_windows, iter_chips

        geoms = features.geometry.to_crs("EPSG:3857").to_numpy()
        tree = shapely.STRtree(geoms)
        area_3857 = shapely.transform(
            self.area.geometry, lambda xy: np.column_stack(lonlat_to_mercator(xy[:, 0], xy[:, 1]))
        )
        size, overlap = self.chip_size, self.overlap
        total = len(chip_windows(self.pair.grid.width, self.pair.grid.height, size, overlap))
        for chip in progress(iter_chips(self.pair, size=size, overlap=overlap), total=total, desc="dataset chips",
                             unit="chip"):
            if not shapely.intersects(area_3857, shapely.box(*chip.grid.bounds)):
                self.skipped["chip_outside_area"] += 1
                continue
            if not chip.valid.all():
                self.skipped["chip_nodata"] += 1
                continue
            targets = _chip_targets(geoms, tree, chip)
            if not targets:
                self.skipped["chip_no_polygons"] += 1
                continue
            samples, meta = self._chip_samples(chip, targets, features)
            if max_samples is not None and len(self.records) + len(samples) >= max_samples:
                keep = max_samples - len(self.records)
                samples, self.truncated = samples[:keep], True
            self._write(samples, meta)
            if self.truncated:
                break

    def _chip_samples(self, chip, targets, features):
        from .socioseg import Sample

        split = chip_split(chip.grid, self.ratios, self.seed)
        samples, meta = [], {}
        for query in _queries(targets, features, self.levels):
            mask, reason = self._mask_for(query, chip)
            if mask is None:
                self.skipped[reason] += 1
                continue
            sid = sample_id(self.area_tag, chip.grid, query.level, query.text)
            kept = [t for t in query.targets if t.pixels >= self.filters.min_pixels]
            samples.append(Sample(sid, query.text, chip.map, chip.satellite, mask, query.level))
            meta[sid] = self._question(chip, query, kept, features, split, mask)
        return samples, meta

    def _mask_for(self, query: _Query, chip) -> tuple[np.ndarray | None, str | None]:
        """``(mask, None)`` for the query in the chip, or ``(None, reason)`` when a filter rejects it."""
        kept = [t for t in query.targets if t.pixels >= self.filters.min_pixels]
        if not kept:
            return None, "query_too_small"
        policy = self.filters.edge_policy
        if policy == "drop" and any(t.cut for t in kept):
            return None, "query_cut_by_edge"
        if policy == "clip" and any(t.visible < self.filters.min_visible for t in kept):
            return None, "query_low_visible_fraction"
        mask = _union_mask(kept, chip.valid.shape)
        if mask.mean() > self.filters.max_fraction:
            return None, "query_mask_too_large"
        if not _has_box(mask):
            return None, "query_no_box"
        return mask, None

    def _question(self, chip, query: _Query, kept: list[_Target], features, split: str, mask) -> dict:
        """question.json's fields beyond ``problem`` and ``level``."""
        grid = chip.grid
        rows = features.iloc[[t.index for t in kept]]
        targets = [
            {
                "osm_id": osm_id, "name": _text_or_none(name), "socio_class": _text_or_none(cls),
                "socio_function": _text_or_none(fn),
                "visible_fraction": round(t.visible, 4), "cut_by_edge": t.cut, "pixels": t.pixels,
            }
            for t, osm_id, name, cls, fn in zip(kept, rows["osm_id"], rows["name"], rows["socio_class"],
                                                 rows["socio_function"])
        ]
        return {
            "socio_class": query.socio_class,
            "socio_function": query.socio_function,
            "osm_ids": [t["osm_id"] for t in targets],
            "targets": targets,
            "mask_fraction": round(float(mask.mean()), 6),
            "split": split,
            "chip": {
                "zoom": grid.zoom, "col_off": grid.col_off, "row_off": grid.row_off,
                "width": grid.width, "height": grid.height, "crs": grid.crs,
                "transform": list(grid.transform)[:6], "row": chip.row, "col": chip.col,
            },
            "bounds_lonlat": list(grid.lonlat_bounds),
            "attribution": self.attribution,
            "source": "sociogeo build-dataset (OpenStreetMap polygons)",
        }

    def _write(self, samples, meta: dict) -> None:
        from .socioseg import write_raw

        if not samples:
            return
        split = meta[samples[0].id]["split"]
        write_raw(samples, self.out_dir, split, extra=lambda s: meta[s.id])
        for s in samples:
            m = meta[s.id]
            self.records.append({
                "id": s.id, "split": split, "level": s.level, "query": s.query, "n_polygons": len(m["osm_ids"]),
                "mask_fraction": m["mask_fraction"], "socio_class": m["socio_class"] or "",
                "socio_function": m["socio_function"] or "", "osm_ids": " ".join(m["osm_ids"]),
            })


def _text_or_none(value) -> str | None:
    """An OSM tag value for JSON: a missing one (None, or pandas' NaN for an untagged polygon) is None."""
    return value if isinstance(value, str) and value else None


def _write_csv(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CSV_COLUMNS))
        writer.writeheader()
        writer.writerows(records)
    return path


def _write_build_json(path: Path, report: BuildReport, area, pair, *, parameters: dict) -> Path:
    """The build's parameters and counts, so a dataset folder says how it was made."""
    from .._version import __version__

    info = {
        "sociogeo_version": __version__,
        "area": {"name": area.name, "bounds_lonlat": list(area.bounds), "zoom": area.zoom,
                 "wkt": area.geometry.wkt},
        "grid": {"zoom": pair.grid.zoom, "col_off": pair.grid.col_off, "row_off": pair.grid.row_off,
                 "width": pair.grid.width, "height": pair.grid.height, "crs": pair.grid.crs},
        "parameters": parameters,
        "attribution": {
            "satellite": pair.attrs.get("satellite_attribution", ""),
            "map": pair.attrs.get("map_attribution", ""),
            "labels": OSM_ATTRIBUTION,
        },
        "n_chips": report.n_chips,
        "n_polygons": report.n_polygons,
        "n_samples": report.n_samples,
        "counts": report.counts,
        "by_function": report.by_function,
        "skipped": report.skipped,
        "truncated": report.truncated,
    }
    # allow_nan=False: NaN is not JSON (JSON.parse and strict parsers refuse it), so a NaN fails here
    path.write_text(json.dumps(info, ensure_ascii=False, indent=1, allow_nan=False), encoding="utf-8")
    return path


__all__ = [
    "EDGE_POLICIES",
    "LEVELS",
    "SKIP_REASONS",
    "BuildReport",
    "SampleFilters",
    "build_dataset",
    "chip_split",
    "sample_id",
    "socio_features",
    "taxonomy_tags",
]
