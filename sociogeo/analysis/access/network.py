"""Street networks for accessibility: loading one for an area, input checks, and preparing a
graph for searching (node positions in metres, travel times per edge for a mode).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._optional import require
from ...errors import ConfigError, InvalidAreaError, OSMDataError

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


# -- the network, prepared for searching -------------------------------------------------------
@dataclass
class Network:
    """A graph ready for searching: node positions in metres and a (reversed) adjacency list."""

    nodes: np.ndarray  # node ids, in order
    xy: np.ndarray  # N x 2 node coordinates in ``crs`` (metres)
    crs: Any  # the local UTM CRS
    graph_crs: Any
    adjacency: list  # adjacency[i] = [(j, minutes, metres), ...] edges walked *towards* i's entities
    snap_speed_m_min: float
    snappable: np.ndarray  # positions of the nodes points may snap to (street level)
    tree: Any = None  # STRtree of the snappable nodes' points

    def snap(self, points) -> tuple[np.ndarray, np.ndarray]:
        """Nearest snappable node position and distance (m) of each shapely point (in ``crs``)."""
        import shapely

        points = np.asarray(points, dtype=object)
        pos = np.full(len(points), -1, dtype=np.int64)
        dist = np.full(len(points), np.nan)
        ok = ~(shapely.is_missing(points) | shapely.is_empty(points)) if len(points) else np.zeros(0, bool)
        if ok.any():
            (src, dst), d = self.tree.query_nearest(points[ok], return_distance=True, all_matches=False)
            where = np.flatnonzero(ok)[src]
            pos[where] = self.snappable[dst]
            dist[where] = d
        return pos, dist

    def nodes_in(self, polygons) -> tuple[np.ndarray, np.ndarray]:
        """(polygon index, node position) of the snappable nodes inside or on each polygon."""
        poly_idx, tree_idx = self.tree.query(polygons, predicate="intersects")
        return poly_idx, self.snappable[tree_idx]


def _edge_speed_kmh(data: dict, mode: str, speed_kmh) -> float:
    """The speed of one edge in km/h (see the module docstring for the order of sources)."""
    if speed_kmh is not None:
        return float(speed_kmh)
    if mode != "drive":
        return DEFAULT_SPEEDS_KMH[mode]
    kph = _number(data.get("speed_kph"))
    if kph is not None:
        return kph
    tagged = _maxspeed_kmh(data.get("maxspeed"))
    if tagged is not None:
        return tagged
    highway = data.get("highway")
    kinds = highway if isinstance(highway, (list, tuple)) else [highway]
    known = [HIGHWAY_SPEEDS_KMH[k] for k in kinds if k in HIGHWAY_SPEEDS_KMH]
    return max(known) if known else DEFAULT_SPEEDS_KMH["drive"]


def _number(value) -> float | None:
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


def _in_tunnel(value) -> bool:
    """Whether an edge's ``tunnel`` tag marks any part of it as underground (simplified edges
    carry a list, with NaN for the parts without the tag).
    """
    if isinstance(value, (list, tuple)):
        return any(_in_tunnel(v) for v in value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return str(value).strip().lower() not in _NOT_TUNNEL


def prepare(graph, mode: str, speed_kmh) -> Network:
    """Validate ``graph`` and build the search structures for ``mode``."""
    import geopandas as gpd
    import shapely

    nx = require("networkx", purpose="accessibility analysis")
    check_mode(mode, speed_kmh)
    if not isinstance(graph, nx.Graph):
        raise ConfigError(f"graph must be a networkx graph (e.g. from street_network), got {type(graph).__name__}")
    if graph.number_of_nodes() == 0:
        raise OSMDataError("the street network has no nodes; build it for the area with street_network(...)")
    graph_crs = graph.graph.get("crs")
    if graph_crs is None:
        raise OSMDataError("the graph has no 'crs' attribute; set graph.graph['crs'] (osmnx graphs have one)")
    nodes = list(graph.nodes)
    try:
        xy = np.array([(float(graph.nodes[n]["x"]), float(graph.nodes[n]["y"])) for n in nodes])
    except (KeyError, TypeError, ValueError):
        raise OSMDataError("every graph node needs numeric 'x' and 'y' coordinates (osmnx graphs have them)") from None
    lonlat = gpd.GeoSeries(shapely.points(xy), crs=graph_crs)
    metric_crs = lonlat.to_crs("EPSG:4326").estimate_utm_crs()
    metric = lonlat.to_crs(metric_crs)
    index = {n: i for i, n in enumerate(nodes)}

    undirected = mode == "walk" or not graph.is_directed()
    best: dict[tuple[int, int], tuple[float, float]] = {}
    missing = 0
    surface = np.zeros(len(nodes), dtype=bool)  # nodes with an edge at street level
    for u, v, data in graph.edges(data=True):
        if not _in_tunnel(data.get("tunnel")):
            surface[index[u]] = surface[index[v]] = True
        length = _number(data.get("length"))
        if length is None:
            if data.get("length") in (0, 0.0):
                length = 0.0
            else:
                missing += 1
                continue
        minutes = length / (_edge_speed_kmh(data, mode, speed_kmh) * 1000.0 / 60.0)
        # the search runs from entities backwards, so edge u -> v is followed from v to u
        pairs = ((v, u), (u, v)) if undirected else ((v, u),)
        for a, b in pairs:
            key = (index[a], index[b])
            if key not in best or minutes < best[key][0]:
                best[key] = (minutes, length)
    if missing:
        raise OSMDataError(
            f"{missing} edges of the graph have no numeric 'length' (metres); add lengths, e.g. "
            "osmnx.distance.add_edge_lengths(graph), or build the graph with street_network(...)"
        )
    adjacency: list[list] = [[] for _ in nodes]
    for (a, b), (minutes, length) in best.items():
        adjacency[a].append((b, minutes, length))
    snap_kmh = float(speed_kmh) if speed_kmh is not None else DEFAULT_SPEEDS_KMH[mode]
    # isolated nodes have no edges at all; they stay snappable like street-level ones
    isolated = np.array([graph.degree(n) == 0 for n in nodes], dtype=bool)
    snappable = np.flatnonzero(surface | isolated)
    if len(snappable) == 0:  # a network made only of tunnels: snap to what there is
        snappable = np.arange(len(nodes))
    points = metric.to_numpy()
    net = Network(np.array(nodes, dtype=object), shapely.get_coordinates(points), metric_crs,
                   graph_crs, adjacency, snap_kmh * 1000.0 / 60.0, snappable)
    net.tree = shapely.STRtree(points[snappable])
    return net
