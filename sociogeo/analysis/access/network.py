"""Street networks for accessibility: loading one for an area, input checks, and reading the
edge tags that set speeds and mark tunnels. :mod:`.prepared` turns a graph into search arrays.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ...errors import ConfigError, InvalidAreaError

MODES = ("walk", "bike", "drive")
DEFAULT_SPEEDS_KMH = {"walk": 4.8, "bike": 15.0, "drive": 30.0}
# Typical urban free-flow speeds for drive edges without a usable maxspeed tag.
HIGHWAY_SPEEDS_KMH = {
    "motorway": 100.0, "motorway_link": 60.0, "trunk": 80.0, "trunk_link": 50.0,
    "primary": 60.0, "primary_link": 40.0, "secondary": 50.0, "secondary_link": 40.0,
    "tertiary": 40.0, "tertiary_link": 30.0, "unclassified": 40.0, "residential": 30.0,
    "living_street": 10.0, "service": 20.0, "road": 30.0,
}
DEFAULT_PAD_M = 300.0
DEFAULT_MAX_SNAP_M = 500.0
RESULT_COLUMNS = ["node", "snap_m", "distance_m", "time_min", "entity"]

_MPH_KMH = 1.609344


# -- inputs -----------------------------------------------------------------------------------
def area_geometry(area_or_bounds):
    """(shapely geometry, its CRS) of anything :meth:`sociogeo.Area.coerce` accepts; a
    GeoDataFrame/GeoSeries keeps its own CRS. No size limit: street networks span cities.
    """
    from ...geo.area import Area

    if hasattr(area_or_bounds, "geometry") and hasattr(area_or_bounds, "to_crs"):
        if area_or_bounds.crs is None:
            raise InvalidAreaError("the GeoDataFrame has no CRS; set one first, e.g. gdf.set_crs('EPSG:4326')")
        if len(area_or_bounds) == 0:
            raise InvalidAreaError("the GeoDataFrame is empty")
        return area_or_bounds.union_all(), area_or_bounds.crs
    return Area.coerce(area_or_bounds, max_area_km2=math.inf).geometry, "EPSG:4326"


def lonlat_bounds(area_or_bounds) -> tuple[float, float, float, float]:
    """The ``(west, south, east, north)`` bounds of an area, bbox or GeoDataFrame, in degrees (EPSG:4326)."""
    import geopandas as gpd

    geometry, crs = area_geometry(area_or_bounds)
    west, south, east, north = gpd.GeoSeries([geometry], crs=crs).to_crs("EPSG:4326").total_bounds
    return float(west), float(south), float(east), float(north)


def pad_bounds(bounds, pad_m: float):
    """Bounds grown by ``pad_m`` metres on every side (degrees, clamped to valid values)."""
    west, south, east, north = bounds
    dlat = pad_m / 111_320.0
    dlon = pad_m / (111_320.0 * max(math.cos(math.radians((south + north) / 2)), 0.01))
    return (max(west - dlon, -180.0), max(south - dlat, -85.0), min(east + dlon, 180.0), min(north + dlat, 85.0))


def check_frame(frame, what: str):
    """A GeoDataFrame with a CRS (a GeoSeries is promoted); typed error otherwise."""
    import geopandas as gpd

    if isinstance(frame, gpd.GeoSeries):
        frame = gpd.GeoDataFrame(geometry=frame)
    if not isinstance(frame, gpd.GeoDataFrame):
        raise ConfigError(f"{what} must be a GeoDataFrame or GeoSeries, got {type(frame).__name__}")
    if frame.crs is None:
        raise ConfigError(f"{what} have no CRS; set one first, e.g. {what}.set_crs('EPSG:4326')")
    return frame


def check_mode(mode: str, speed_kmh) -> None:
    """Raise :class:`ConfigError` unless ``mode`` is in ``MODES`` and ``speed_kmh`` is None or positive finite km/h."""
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; choose one of {', '.join(map(repr, MODES))}")
    if speed_kmh is not None and not (
        isinstance(speed_kmh, (int, float)) and speed_kmh > 0 and math.isfinite(speed_kmh)
    ):
        raise ConfigError(f"speed_kmh must be a positive number of km/h, got {speed_kmh!r}")


# -- network, origins -------------------------------------------------------------------------
def street_network(area_or_bounds, *, mode: str = "walk", source=None, pad_m: float = DEFAULT_PAD_M):
    """The street network around an area, as an osmnx-compatible ``networkx.MultiDiGraph``.

    ``area_or_bounds`` is an :class:`~sociogeo.Area`, a ``(west, south, east, north)`` bbox in
    degrees or a GeoDataFrame (any CRS). The bounds are padded by ``pad_m`` metres so that
    entities and origins near the edge still reach each other through streets just outside.
    ``source``: None (Overpass) or a local ``.osm``/``.osm.pbf`` file; see
    :func:`sociogeo.osm.load_network`.
    """
    from ...osm.data import load_network

    check_mode(mode, None)
    bounds = pad_bounds(lonlat_bounds(area_or_bounds), float(pad_m))
    return load_network(bounds, network_type=mode, source=source)


# -- edge tags: speeds and tunnels -------------------------------------------------------------
def edge_speed_kmh(data: dict, mode: str, speed_kmh) -> float:
    """The speed of one edge in km/h (see the module docstring for the order of sources)."""
    if speed_kmh is not None:
        return float(speed_kmh)
    if mode != "drive":
        return DEFAULT_SPEEDS_KMH[mode]
    kph = number(data.get("speed_kph"))
    if kph is not None:
        return kph
    tagged = _maxspeed_kmh(data.get("maxspeed"))
    if tagged is not None:
        return tagged
    highway = data.get("highway")
    kinds = highway if isinstance(highway, (list, tuple)) else [highway]
    known = [HIGHWAY_SPEEDS_KMH[k] for k in kinds if k in HIGHWAY_SPEEDS_KMH]
    return max(known) if known else DEFAULT_SPEEDS_KMH["drive"]


def number(value) -> float | None:
    """``float(value)`` when that is a finite positive number, else None."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _maxspeed_kmh(value) -> float | None:
    """A maxspeed tag in km/h: ``"50"``, ``"30 mph"``, or a list of them (simplified edges: the
    mean). Zone codes like ``"FI:urban"`` give None.
    """
    if isinstance(value, (list, tuple)):
        speeds = [s for s in (_maxspeed_kmh(v) for v in value) if s is not None]
        return float(np.mean(speeds)) if speeds else None
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(mph|km/h|kmh|kph)?\s*", str(value))
    if not match:
        return None
    speed = float(match.group(1))
    if speed <= 0:
        return None
    return speed * _MPH_KMH if match.group(2) == "mph" else speed


_NOT_TUNNEL = frozenset({"no", "building_passage", "false", "0"})


def in_tunnel(value) -> bool:
    """Whether an edge's ``tunnel`` tag marks any part of it as underground (simplified edges
    carry a list, with NaN for the parts without the tag).
    """
    if isinstance(value, (list, tuple)):
        return any(in_tunnel(v) for v in value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return str(value).strip().lower() not in _NOT_TUNNEL
