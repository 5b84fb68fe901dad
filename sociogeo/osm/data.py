"""OpenStreetMap data for an area: roads, POIs, land use, buildings, water and street networks.

One interface, three sources:

- ``source=None``: the Overpass API through osmnx (needs the network; refused when
  ``sociogeo.options.offline`` is set);
- an OSM XML file (``.osm``, ``.xml``, ``.osm.bz2``, ``.osm.gz``), read by osmnx;
- a PBF extract (``.osm.pbf``, ``.pbf``), read by pyrosm.

A local file is parsed once per process (keyed by path, modification time and size), so
rendering many windows of one area from one extract costs one parse. Every layer comes back as
a GeoDataFrame in EPSG:4326; networks are osmnx-compatible ``networkx.MultiDiGraph`` objects.
Bounds are always ``(west, south, east, north)`` in degrees.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from .._optional import require
from ..errors import OSMDataError
from ..geo.area import _check_bbox
from ..options import options

ATTRIBUTION = "© OpenStreetMap contributors, ODbL"
CRS = "EPSG:4326"

XML_SUFFIXES = (".osm", ".xml", ".osm.bz2", ".osm.gz")
PBF_SUFFIXES = (".osm.pbf", ".pbf")

# Tags that make a named feature a point of interest, in priority order: the first key present
# gives the POI's category. ``None`` accepts every value; a set restricts the values (a
# named tram stop is a POI, a named railway track is not).
POI_TAGS: dict[str, frozenset[str] | None] = {
    "amenity": None,
    "shop": None,
    "tourism": None,
    "leisure": None,
    "office": None,
    "healthcare": None,
    "historic": None,
    "craft": None,
    "railway": frozenset({"station", "halt", "tram_stop"}),
    "public_transport": frozenset({"station"}),
    "aeroway": frozenset({"aerodrome", "terminal"}),
}

# Land-use polygons: every ``landuse`` value, plus the leisure and natural values that cover
# ground the way land use does (a park, a wood), as opposed to objects on it (a bench).
LANDUSE_TAGS: dict[str, frozenset[str] | None] = {
    "landuse": None,
    "leisure": frozenset({
        "park", "garden", "pitch", "playground", "sports_centre", "stadium", "golf_course",
        "nature_reserve", "common", "dog_park", "recreation_ground", "track", "schoolyard",
    }),
    "natural": frozenset({
        "wood", "scrub", "grassland", "heath", "wetland", "beach", "sand", "bare_rock",
        "scree", "shingle", "fell",
    }),
}

WATER_AREA_TAGS: dict[str, frozenset[str] | None] = {
    "natural": frozenset({"water", "bay"}),
    "water": None,
    "waterway": frozenset({"riverbank", "dock", "basin"}),
    "landuse": frozenset({"reservoir", "basin"}),
}
WATER_LINE_TAGS: dict[str, frozenset[str] | None] = {
    "waterway": frozenset({"river", "stream", "canal", "drain", "ditch"}),
}

# highway values that are not drawable roads: planned or removed ways, and areas or objects
# that osmnx and pyrosm return as lines only by accident.
NOT_ROADS = frozenset({
    "proposed", "abandoned", "razed", "disused", "platform", "elevator", "escape",
    "rest_area", "services", "emergency_bay",
})

# Every key load_osm reads, and the extra tags kept as columns because the layers consult them.
_LAYER_KEYS = tuple(sorted(
    {"highway", "building"} | set(POI_TAGS) | set(LANDUSE_TAGS) | set(WATER_AREA_TAGS)
    | set(WATER_LINE_TAGS)
))
_EXTRA_COLUMNS = ["name", "area"]

NETWORK_TYPES = ("walk", "drive", "bike")
# pyrosm's names for osmnx's network types
_PYROSM_NETWORK = {"walk": "walking", "drive": "driving", "bike": "cycling"}

_POLYGONAL = ("Polygon", "MultiPolygon")
_LINEAR = ("LineString", "MultiLineString")

# Files larger than this are still parsed whole (that is what makes many windows cheap), but
# the user is warned that a city-sized extract would use far less memory.
_LARGE_FILE_BYTES = 300 * 2**20


@dataclass(frozen=True, eq=False)
class OSMData:
    """OpenStreetMap layers for one bounding box, each a GeoDataFrame in EPSG:4326.

    - ``roads``: lines clipped to the bounds; columns ``osmid``, ``highway``, ``name``.
    - ``pois``: points of named features (polygon centroids for areas); columns ``osmid``,
      ``element`` (node/way/relation), ``name``, ``key`` (the OSM key, e.g. ``amenity``),
      ``category`` (its value, e.g. ``school``) and ``area_m2`` (approximate ground area in
      square metres of the feature the point stands for; 0 for nodes).
    - ``landuse``: polygons clipped to the bounds; columns ``osmid``, ``key`` (landuse,
      leisure or natural), ``kind`` (the value, e.g. ``park``), ``name``.
    - ``buildings``: polygons clipped to the bounds; columns ``osmid``, ``building``, ``name``.
    - ``water``: polygons and lines (rivers, canals) clipped to the bounds; columns ``osmid``,
      ``kind``, ``name``. The open sea is not included: OSM maps it only as a coastline.
    """

    roads: gpd.GeoDataFrame
    pois: gpd.GeoDataFrame
    landuse: gpd.GeoDataFrame
    buildings: gpd.GeoDataFrame
    water: gpd.GeoDataFrame
    bounds: tuple[float, float, float, float]
    attribution: str = ATTRIBUTION

    def __repr__(self) -> str:
        w, s, e, n = self.bounds
        counts = ", ".join(
            f"{name}={len(getattr(self, name))}"
            for name in ("roads", "pois", "landuse", "buildings", "water")
        )
        return f"OSMData(bounds=({w:.5f}, {s:.5f}, {e:.5f}, {n:.5f}), {counts})"


# -- public API -------------------------------------------------------------------------------
def load_osm(bounds, *, source=None) -> OSMData:
    """Roads, POIs, land use, buildings and water inside ``bounds`` = (west, south, east, north) degrees.

    ``source`` is None (download from Overpass through osmnx) or a path to a local ``.osm``/
    ``.xml`` (osmnx) or ``.osm.pbf``/``.pbf`` (pyrosm) file. Lines and polygons are clipped to
    the bounds; POIs are the named features whose point lies inside them.
    """
    bounds = _check_bbox(bounds)
    if source is None:
        tags = {key: True for key in _LAYER_KEYS}
        features = _overpass(
            lambda ox: ox.features_from_bbox(bounds, tags=tags),
            what="OpenStreetMap features",
            empty_ok=True,
        )
        layers = _prepare_layers(_empty_features() if features is None else _from_osmnx(features))
    else:
        path, kind = check_source(source)
        layers = _cached(path, ("layers",), lambda: _parse_layers(path, kind))
    return _clip_layers(layers, bounds)


def load_features(bounds, tags: dict, *, source=None) -> gpd.GeoDataFrame:
    """Polygons inside or crossing ``bounds`` whose tags match ``tags``, in EPSG:4326.

    ``tags`` is osmnx-style: ``{"amenity": ["school", "university"], "leisure": True,
    "shop": "mall"}`` selects features having any of the listed values (True: any value) for
    any of the keys. Geometries are whole, not clipped. Columns: ``osmid``, ``element``,
    ``name`` and one column per requested key.
    """
    bounds = _check_bbox(bounds)
    tags = _check_tags(tags)
    keys = list(tags)
    if source is None:
        features = _overpass(
            lambda ox: ox.features_from_bbox(bounds, tags=tags),
            what=_tags_text(tags),
            empty_ok=True,
        )
        features = _empty_features() if features is None else _from_osmnx(features)
    else:
        path, kind = check_source(source)
        features = _file_features(path, kind, tuple(sorted(keys)))
    matched = features[_match_tags(features, tags) & features.geom_type.isin(_POLYGONAL).to_numpy()]
    matched = _intersecting(matched, bounds)
    columns = ["osmid", "element", "name", *[k for k in keys if k not in ("osmid", "element", "name")]]
    return _select(matched, columns)


def load_network(bounds, *, network_type: str = "walk", source=None):
    """The street network inside ``bounds`` as an osmnx-compatible ``networkx.MultiDiGraph``.

    ``network_type`` is ``"walk"`` (bidirectional), ``"drive"`` or ``"bike"`` (one-way
    streets respected). The graph's ``crs`` is EPSG:4326, nodes carry ``x``/``y`` (degrees),
    edges carry ``length`` (metres) and ``highway``. Only the largest weakly connected part
    inside the bounds is kept, as osmnx does.
    """
    bounds = _check_bbox(bounds)
    if network_type not in NETWORK_TYPES:
        raise OSMDataError(
            f"unknown network_type {network_type!r}; choose one of {', '.join(map(repr, NETWORK_TYPES))}"
        )
    require("networkx", purpose="street networks")
    if source is None:
        graph = _overpass(
            lambda ox: ox.graph_from_bbox(bounds, network_type=network_type),
            what=f"the {network_type} network",
            empty_ok=False,
        )
        return graph
    path, kind = check_source(source)
    reader = _read_pbf_network if kind == "pbf" else _read_xml_network
    full = _cached(path, ("network", network_type), lambda: reader(path, network_type))
    return _truncate_graph(full, bounds, network_type)


def clear_cache() -> None:
    """Forget every parsed OSM file (they are re-read on next use)."""
    with _CACHE_LOCK:
        _CACHE.clear()


# -- sources ----------------------------------------------------------------------------------
def check_source(source) -> tuple[Path, str]:
    """An OSM file's path and its kind, ``"xml"`` or ``"pbf"``; OSMDataError if unusable."""
    path = Path(source).expanduser()
    name = path.name.lower()
    if name.endswith(PBF_SUFFIXES):
        kind = "pbf"
    elif name.endswith(XML_SUFFIXES):
        kind = "xml"
    else:
        raise OSMDataError(
            f"unsupported OSM file {path.name!r}: supported extensions are "
            f"{', '.join(XML_SUFFIXES)} (OSM XML) and {', '.join(PBF_SUFFIXES)} (PBF)"
        )
    if not path.is_file():
        raise OSMDataError(f"OSM file not found: {path}. Pass the path of an existing .osm or .osm.pbf file.")
    return path, kind


_CACHE: OrderedDict[tuple, Any] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_ENTRIES = 16


def _cached(path: Path, what: tuple, build: Callable[[], Any]):
    """``build()``'s result for this version of ``path`` (resolved path, mtime, size) and ``what``."""
    stat = path.stat()
    file_key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    key = (*file_key, what)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    if stat.st_size > _LARGE_FILE_BYTES:
        warnings.warn(
            f"{path.name} is {stat.st_size / 2**20:.0f} MiB and is parsed whole into memory; "
            "an extract clipped to your city (osmium extract, or a smaller download) is much lighter",
            stacklevel=3,
        )
    value = build()
    with _CACHE_LOCK:
        # an edited file makes its older parses useless
        for stale in [k for k in _CACHE if k[0] == file_key[0] and k[1:3] != file_key[1:3]]:
            del _CACHE[stale]
        _CACHE[key] = value
        while len(_CACHE) > _CACHE_ENTRIES:
            _CACHE.popitem(last=False)
    return value


def _parse_layers(path: Path, kind: str) -> dict:
    if kind == "pbf":
        # read straight into layers: only the layers are cached, not the raw features too
        return _prepare_layers(_read_pbf_features(path, _LAYER_KEYS))
    return _prepare_layers(_file_features(path, kind, ()))


def _file_features(path: Path, kind: str, keys: tuple) -> gpd.GeoDataFrame:
    """The file's features having one of ``keys`` (XML: every tagged feature), parsed once."""
    if kind == "pbf":
        # pyrosm filters while it reads, so each key set is its own (cached) read
        return _cached(path, ("features", tuple(keys)), lambda: _read_pbf_features(path, keys))
    return _cached(path, ("features",), lambda: _read_xml_features(path))


def _read_pbf_features(path: Path, keys) -> gpd.GeoDataFrame:
    """Every node, way and relation of a PBF file that has one of ``keys``."""
    pyrosm = require("pyrosm", purpose="reading .osm.pbf files")
    columns = sorted(set(keys) | set(_EXTRA_COLUMNS))
    try:
        with warnings.catch_warnings():
            # pyrosm warns on empty results; an empty layer is a normal outcome here
            warnings.simplefilter("ignore", UserWarning)
            osm = pyrosm.OSM(str(path), progress=False)
            # Two reads: when relations are kept, pyrosm drops every way that is a member of a
            # kept relation, even a tagged street that merely belongs to some site relation.
            parts = [
                osm.get_data_by_custom_criteria(
                    custom_filter=None, osm_keys_to_keep=list(keys), tags_as_columns=columns,
                    keep_nodes=nodes_and_ways, keep_ways=nodes_and_ways, keep_relations=not nodes_and_ways,
                )
                for nodes_and_ways in (True, False)
            ]
    except Exception as exc:  # any parser failure means the file is unusable
        raise OSMDataError(f"cannot read the PBF file {path}: {exc}") from exc
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        return _empty_features(columns)
    gdf = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry", crs=parts[0].crs)
    gdf = gdf.rename(columns={"id": "osmid", "osm_type": "element"})
    keep = ["element", "osmid", *[c for c in columns if c in gdf.columns], "geometry"]
    gdf = gdf[keep].copy()
    for column in columns:
        if column not in gdf.columns:
            gdf[column] = None
    return _tidy(gdf)


def _read_xml_features(path: Path) -> gpd.GeoDataFrame:
    """Every tagged node, way and relation of an OSM XML file."""
    ox = require("osmnx", purpose="reading OSM XML files")
    try:
        gdf = ox.features_from_xml(path)
    except ox._errors.InsufficientResponseError:
        return _empty_features()
    except Exception as exc:  # malformed XML and the like
        raise OSMDataError(f"cannot read the OSM XML file {path}: {exc}") from exc
    return _from_osmnx(gdf)


def _from_osmnx(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Osmnx's (element, id)-indexed features as a flat table with ``element`` and ``osmid``."""
    gdf = gdf.reset_index().rename(columns={"id": "osmid", "element_type": "element"})
    drop = [c for c in ("nodes", "ways") if c in gdf.columns]
    return _tidy(gdf.drop(columns=drop))


def _empty_features(columns=()) -> gpd.GeoDataFrame:
    data = {"element": pd.Series(dtype=object), "osmid": pd.Series(dtype="int64")}
    for column in ["name", *columns]:
        data[column] = pd.Series(dtype=object)
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs=CRS), crs=CRS)


def _tidy(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """A deterministic row order, EPSG:4326, no empty geometries, a ``name`` column."""
    if gdf.crs is None:
        gdf = gdf.set_crs(CRS)
    elif not gdf.crs.equals(CRS):
        gdf = gdf.to_crs(CRS)
    if "name" not in gdf.columns:
        gdf["name"] = None
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    invalid = ~gdf.geometry.is_valid.to_numpy()
    if invalid.any():
        import shapely

        # self-touching rings are common in OSM and would break clipping; "structure" keeps
        # polygons polygonal instead of returning collections with stray lines
        gdf = gdf.copy()
        fixed = shapely.make_valid(gdf.geometry.to_numpy()[invalid], method="structure", keep_collapsed=False)
        gdf.loc[invalid, "geometry"] = fixed
        gdf = gdf[~gdf.geometry.is_empty]
    gdf = gdf.sort_values(["element", "osmid"], kind="stable").reset_index(drop=True)
    return gdf


# -- Overpass ---------------------------------------------------------------------------------
def _overpass(call, *, what: str, empty_ok: bool):
    """Run ``call(osmnx)`` against Overpass with sociogeo's settings; typed errors on failure.

    Returns None when Overpass answered but had nothing (only if ``empty_ok``).
    """
    hint = (
        "Pass source= a local OpenStreetMap file instead (.osm or .osm.pbf, e.g. a city "
        "extract from Geofabrik or BBBike)."
    )
    if options.offline:
        raise OSMDataError(
            f"sociogeo.options.offline is set, so {what} cannot be downloaded from Overpass. {hint}"
        )
    ox = require("osmnx", purpose="downloading OpenStreetMap data from Overpass")
    import requests

    _check_resolvable(ox.settings.overpass_url, what, hint)
    with _osmnx_settings(ox):
        try:
            return call(ox)
        except ox._errors.InsufficientResponseError as exc:
            # osmnx raises this both for "nothing here" and for an unparseable answer; only the
            # latter carries the decoding error as its cause
            if exc.__cause__ is None and empty_ok:
                return None
            if exc.__cause__ is None:
                raise OSMDataError(f"OpenStreetMap has no {what} inside these bounds ({exc})") from exc
            raise OSMDataError(f"Overpass sent an unusable answer for {what}: {exc}. {hint}") from exc
        except (requests.RequestException, ox._errors.ResponseStatusCodeError, OSError) as exc:
            raise OSMDataError(f"the Overpass request for {what} failed: {exc}. {hint}") from exc
        except ValueError as exc:  # osmnx's other refusals, e.g. no graph nodes inside the bounds
            raise OSMDataError(f"osmnx could not build {what} from Overpass data: {exc}") from exc


def _tags_text(tags: dict) -> str:
    """``features tagged {...}`` for messages, the keys only when the filter is long."""
    text = f"features tagged {tags}"
    if len(text) <= 120:
        return text
    keys = list(tags)
    return f"features with {len(keys)} tag keys ({', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''})"


def _check_resolvable(url: str, what: str, hint: str) -> None:
    """OSMDataError at once when the Overpass host's name does not resolve: osmnx would otherwise
    wait out a 60-second rate-limit pause before its request fails.
    """
    import socket
    from urllib.parse import urlparse

    host = urlparse(url).hostname
    if not host:
        return
    try:
        socket.getaddrinfo(host, None)
    except OSError as exc:
        raise OSMDataError(
            f"cannot download {what}: the Overpass host {host} does not resolve ({exc}); the machine seems "
            f"to be offline. {hint}"
        ) from exc


@contextmanager
def _osmnx_settings(ox):
    """Point osmnx at sociogeo's cache folder, timeout and User-Agent for one call."""
    changes = {
        "cache_folder": str(Path(options.cache_dir) / "overpass"),
        "requests_timeout": options.timeout_s,
        "http_user_agent": options.user_agent,
        "log_console": False,
    }
    old = {k: getattr(ox.settings, k) for k in changes}
    for k, v in changes.items():
        setattr(ox.settings, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(ox.settings, k, v)


# -- layers -----------------------------------------------------------------------------------
_LAYER_NAMES = ("roads", "pois", "landuse", "buildings", "water")


def _prepare_layers(features: gpd.GeoDataFrame) -> dict[str, gpd.GeoDataFrame]:
    """The whole, unclipped layers of a feature table (what the parsed-file cache keeps)."""
    return {
        "roads": _roads(features),
        "pois": _pois(features),
        "landuse": _landuse(features),
        "buildings": _buildings(features),
        "water": _water(features),
    }


def _clip_layers(layers: dict, bounds) -> OSMData:
    west, south, east, north = bounds
    pois = layers["pois"]
    inside = pois.geometry.x.between(west, east) & pois.geometry.y.between(south, north)
    return OSMData(
        roads=_clip(layers["roads"], bounds, _LINEAR),
        pois=pois[inside.to_numpy()].reset_index(drop=True),
        landuse=_clip(layers["landuse"], bounds, _POLYGONAL),
        buildings=_clip(layers["buildings"], bounds, _POLYGONAL),
        water=_clip(layers["water"], bounds, _POLYGONAL + _LINEAR),
        bounds=bounds,
    )


def _roads(features) -> gpd.GeoDataFrame:
    highway = _column(features, "highway")
    is_road = highway.notna().to_numpy() & ~highway.isin(NOT_ROADS).to_numpy()
    kinds = features.geom_type.to_numpy()
    lines = features[is_road & np.isin(kinds, _LINEAR)]
    # a closed way without area=yes is a loop of road (a roundabout, a square's ring); a
    # multipolygon relation is an area (a pedestrian square), not a road
    area = _column(features, "area")
    ring = np.isin(kinds, _POLYGONAL) & (area != "yes").to_numpy() & (features["element"] == "way").to_numpy()
    rings = features[is_road & ring].copy()
    rings["geometry"] = rings.geometry.boundary
    roads = pd.concat([lines, rings]) if len(rings) else lines
    return _select(roads, ["osmid", "highway", "name"])


def _pois(features) -> gpd.GeoDataFrame:
    names = _column(features, "name")
    named = features[names.notna().to_numpy() & (names.astype(str).str.strip() != "").to_numpy()]
    key = pd.Series(None, index=named.index, dtype=object)
    for candidate, values in POI_TAGS.items():  # first matching key wins
        hit = key.isna() & _matches(_column(named, candidate), values)
        key[hit] = candidate
    pois = named[key.notna()].copy()
    pois["key"] = key[key.notna()]
    pois["category"] = [pois.at[i, k] for i, k in zip(pois.index, pois["key"])]
    # centroids of whole (unclipped) features, so a POI sits at the same place in every window
    metric = pois.geometry.to_crs("EPSG:3857")
    lat = np.radians(pois.geometry.representative_point().y.to_numpy()) if len(pois) else np.zeros(0)
    pois["area_m2"] = metric.area.to_numpy() * np.cos(lat) ** 2  # Mercator area -> ground
    pois["geometry"] = metric.centroid.to_crs(CRS)
    return _select(pois, ["osmid", "element", "name", "key", "category", "area_m2"])


def _landuse(features) -> gpd.GeoDataFrame:
    polygons = features[features.geom_type.isin(_POLYGONAL).to_numpy()]
    key = pd.Series(None, index=polygons.index, dtype=object)
    for candidate, values in LANDUSE_TAGS.items():
        hit = key.isna() & _matches(_column(polygons, candidate), values)
        key[hit] = candidate
    landuse = polygons[key.notna()].copy()
    landuse["key"] = key[key.notna()]
    landuse["kind"] = [landuse.at[i, k] for i, k in zip(landuse.index, landuse["key"])]
    return _select(landuse, ["osmid", "key", "kind", "name"])


def _buildings(features) -> gpd.GeoDataFrame:
    building = _column(features, "building")
    mask = building.notna().to_numpy() & (building != "no").to_numpy()
    buildings = features[mask & features.geom_type.isin(_POLYGONAL).to_numpy()]
    return _select(buildings, ["osmid", "building", "name"])


def _water(features) -> gpd.GeoDataFrame:
    parts = []
    for tags, kinds in ((WATER_AREA_TAGS, _POLYGONAL), (WATER_LINE_TAGS, _LINEAR)):
        subset = features[features.geom_type.isin(kinds).to_numpy()]
        kind = pd.Series(None, index=subset.index, dtype=object)
        for key, values in tags.items():
            column = _column(subset, key)
            hit = kind.isna() & _matches(column, values)
            kind[hit] = column[hit]
        subset = subset[kind.notna()].copy()
        subset["kind"] = kind[kind.notna()]
        parts.append(_select(subset, ["osmid", "kind", "name"]))
    return _select(pd.concat(parts, ignore_index=True), ["osmid", "kind", "name"])


# -- table helpers ----------------------------------------------------------------------------
def _column(gdf, key: str) -> pd.Series:
    """A tag column as strings (NaN where absent), also when no feature has the tag."""
    if key in gdf.columns:
        return gdf[key].where(gdf[key].notna(), None).astype(object)
    return pd.Series(None, index=gdf.index, dtype=object)


def _matches(column: pd.Series, values) -> pd.Series:
    """Whether each value is present (``values`` None) or one of ``values``."""
    if values is None:
        return column.notna()
    return column.isin(values)


def _check_tags(tags) -> dict:
    if not isinstance(tags, dict) or not tags:
        raise OSMDataError(
            f"tags must be a non-empty dict like {{'amenity': ['school'], 'leisure': True}}, got {tags!r}"
        )
    checked = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not key:
            raise OSMDataError(f"tag keys must be non-empty strings, got {key!r}")
        if value is True or isinstance(value, str):
            checked[key] = value
        elif isinstance(value, (list, tuple, set, frozenset)) and value and all(isinstance(v, str) for v in value):
            checked[key] = sorted(value)
        else:
            raise OSMDataError(
                f"the value for tag {key!r} must be True, a string or a list of strings, got {value!r}"
            )
    return checked


def _match_tags(features, tags: dict) -> np.ndarray:
    """Osmnx semantics: a feature matches when any key matches (True = any value)."""
    hit = np.zeros(len(features), dtype=bool)
    for key, value in tags.items():
        column = _column(features, key)
        if value is True:
            hit |= column.notna().to_numpy()
        else:
            hit |= column.isin([value] if isinstance(value, str) else value).to_numpy()
    return hit


def _intersecting(gdf, bounds) -> gpd.GeoDataFrame:
    from shapely import box

    if len(gdf) == 0:
        return gdf
    rows = gdf.sindex.query(box(*bounds), predicate="intersects")
    return gdf.iloc[np.sort(rows)]


def _clip(gdf, bounds, kinds) -> gpd.GeoDataFrame:
    """Features cut to the bounds, keeping only parts of the wanted geometry types."""
    from shapely import box

    gdf = _intersecting(gdf, bounds)
    parts = []
    # clipping one geometry family at a time lets geopandas drop the slivers of other types
    for family in (_POLYGONAL, _LINEAR):
        subset = gdf[gdf.geom_type.isin(family).to_numpy()] if set(family) & set(kinds) else gdf.iloc[:0]
        if len(subset):
            clipped = gpd.clip(subset, box(*bounds), keep_geom_type=True)
            parts.append(clipped[clipped.geom_type.isin(family).to_numpy() & ~clipped.geometry.is_empty.to_numpy()])
    if not parts:
        return gdf.iloc[:0].reset_index(drop=True)
    return pd.concat(parts).reset_index(drop=True)


def _select(gdf, columns) -> gpd.GeoDataFrame:
    data = {c: (gdf[c].to_numpy() if c in gdf.columns else [None] * len(gdf)) for c in columns}
    out = gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(gdf.geometry.to_numpy(), crs=CRS), crs=CRS)
    if "osmid" in out.columns:
        out["osmid"] = out["osmid"].astype("int64")
    return out


# -- street networks --------------------------------------------------------------------------
def _read_pbf_network(path: Path, network_type: str):
    pyrosm = require("pyrosm", purpose="street networks from .osm.pbf files")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            osm = pyrosm.OSM(str(path), progress=False)
            graph = osm.get_graph(
                network_type=_PYROSM_NETWORK[network_type], graph_type="networkx", retain_all=True
            )
    except Exception as exc:  # any parser failure means the file is unusable
        raise OSMDataError(f"cannot read the street network from {path}: {exc}") from exc
    if graph is None:
        raise OSMDataError(f"{path.name} holds no {network_type} network")
    return graph


def _read_xml_network(path: Path, network_type: str):
    """Osmnx's XML reader on a copy of the file that holds only this network's ways.

    osmnx's ``graph_from_xml`` turns every way of the file into edges (buildings included), so
    the ways are filtered first with :func:`_routable`.
    """
    import tempfile

    ox = require("osmnx", purpose="street networks from OSM XML files")
    with tempfile.TemporaryDirectory(prefix="sociogeo-osm-") as tmp:
        filtered = Path(tmp) / "network.osm"
        kept = _filter_xml_ways(path, filtered, network_type)
        if kept == 0:
            raise OSMDataError(f"{path.name} holds no {network_type} network")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return ox.graph_from_xml(
                    filtered, bidirectional=network_type == "walk", simplify=True, retain_all=True
                )
        except Exception as exc:  # malformed XML and the like
            raise OSMDataError(f"cannot read the street network from {path}: {exc}") from exc


def _filter_xml_ways(source: Path, target: Path, network_type: str) -> int:
    """Copy ``source`` to ``target`` with only its nodes and routable ways; the number of ways kept."""
    import bz2
    import gzip
    import xml.etree.ElementTree as ET

    opener = {".bz2": bz2.open, ".gz": gzip.open}.get(source.suffix.lower(), open)
    try:
        with opener(source, "rb") as handle:
            tree = ET.parse(handle)
    except (ET.ParseError, OSError, EOFError) as exc:
        raise OSMDataError(f"cannot read the OSM XML file {source}: {exc}") from exc
    root = tree.getroot()
    kept = 0
    for element in list(root):
        if element.tag == "relation":
            root.remove(element)
        elif element.tag == "way":
            tags = {t.get("k"): t.get("v") for t in element.iter("tag")}
            if _routable(tags, network_type):
                kept += 1
            else:
                root.remove(element)
    tree.write(target, encoding="utf-8", xml_declaration=True)
    return kept


_DRIVE = frozenset({
    "motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link", "secondary",
    "secondary_link", "tertiary", "tertiary_link", "unclassified", "residential",
    "living_street", "road", "service",
})
_NO_WALK = frozenset({"motorway", "motorway_link", "bus_guideway", "busway", "raceway", "cycleway"})
_NO_BIKE = frozenset({
    "motorway", "motorway_link", "bus_guideway", "busway", "raceway", "footway", "steps",
    "corridor", "pedestrian",
})
_PRIVATE_SERVICE = frozenset({"parking_aisle", "driveway", "private", "emergency_access", "parking", "drive-through"})
_YES = frozenset({"yes", "designated", "permissive"})


def _routable(tags: dict, network_type: str) -> bool:
    """Whether a way with ``tags`` belongs to the walk/drive/bike network (OSM access rules)."""
    highway = tags.get("highway")
    if highway is None or highway in NOT_ROADS or highway == "construction" or tags.get("area") == "yes":
        return False
    mode = {"walk": "foot", "drive": "motor_vehicle", "bike": "bicycle"}[network_type]
    allowed = tags.get(mode) in _YES or (network_type == "drive" and tags.get("motorcar") in _YES)
    if tags.get(mode) == "no":
        return False
    if tags.get("access") in ("private", "no") and not allowed:
        return False
    if network_type == "walk":
        return highway not in _NO_WALK or allowed
    if network_type == "bike":
        return highway not in _NO_BIKE or allowed
    if highway == "service" and tags.get("service") in _PRIVATE_SERVICE:
        return False
    return highway in _DRIVE


def _truncate_graph(full, bounds, network_type: str):
    """The largest weakly connected part of ``full`` with its nodes inside ``bounds`` (a copy)."""
    ox = require("osmnx", purpose="street networks")
    west, south, east, north = bounds
    try:
        graph = ox.truncate.truncate_graph_bbox(full, (west, south, east, north))
    except ValueError:  # osmnx: "Found no graph nodes within the requested polygon"
        graph = None
    if graph is None or graph.number_of_nodes() == 0:
        raise OSMDataError(
            f"the {network_type} network has no nodes inside bounds {bounds}; "
            "check the bounds order (west, south, east, north) and that the file covers them"
        )
    graph = ox.truncate.largest_component(graph, strongly=False)  # truncation already copied
    graph.graph["crs"] = CRS
    return graph
