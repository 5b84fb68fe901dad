"""Accessibility: how far, along the street network, is every origin from the nearest entity?

Typical question: "which buildings are more than ten minutes' walk from a park?", with the
parks coming from :func:`sociogeo.segment` (or from OpenStreetMap) and the origins being
buildings, a hexagon grid or any points or polygons::

    graph = street_network(area, mode="walk")
    result = nearest(buildings(area), parks, graph)
    coverage(result, thresholds=(5, 10))

Definitions (all distances in metres, all times in minutes):

- **Network.** An osmnx-compatible ``networkx.MultiDiGraph`` (``graph["crs"]``, node ``x``/``y``,
  edge ``length`` in metres). Work happens in the local UTM CRS of the graph's nodes; inputs may
  be in any CRS and outputs come back in the origins' (or entities') CRS. ``mode="walk"`` treats
  every street as two-way; ``"bike"`` and ``"drive"`` respect edge direction (one-way streets),
  searching the reversed graph from the entities towards the origins.
- **Entity access nodes.** Each entity's boundary is densified in UTM so that no segment is
  longer than ``boundary_step_m`` (``shapely.segmentize``); every vertex of the densified
  boundary snaps to its nearest network node (vertices farther than ``max_snap_m`` are
  ignored). Nodes lying inside or on an entity polygon are access nodes too (a path through a
  park is in the park). Point entities use the point itself. A node claimed by several
  entities belongs to the one whose boundary is closest to it.
- **Search.** One multi-source Dijkstra from all access nodes at once, carrying the entity each
  node was reached from, gives every node its travel time, network distance and nearest entity.
- **Snapping.** Points snap to the nearest node at street level: nodes whose every edge runs
  through a tunnel (``tunnel`` tag other than ``no``/``building_passage`` on any part of the
  edge, e.g. Helsinki's underground service tunnels and metro corridors) are routed through
  but never snapped to, since a building above them is not reached through them.
- **Origins.** Points, or polygons through their representative point (computed in UTM), snap
  to their nearest node; the snap distance is reported as ``snap_m`` and added to distance and
  time with ``include_snap=True``. An origin inside or on an entity has distance 0. Origins
  farther than ``max_snap_m`` from the network, or whose node cannot reach any entity, get NaN
  (and a warning with their count).
- **Speeds.** walk 4.8 km/h and bike 15 km/h, flat. drive: per edge, the first available of the
  edge's ``speed_kph`` (osmnx ``add_edge_speeds``), its ``maxspeed`` tag (km/h, or ``mph``),
  :data:`HIGHWAY_SPEEDS_KMH` for its ``highway`` type, else 30 km/h. ``speed_kmh=`` sets one
  flat speed for every edge in any mode. For drive the search minimises time, and
  ``distance_m`` is the length of that fastest route. Snap legs use the mode's flat speed
  (drive: ``speed_kmh`` or 30 km/h).
"""

from __future__ import annotations

import heapq
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._optional import require
from .errors import ConfigError, InvalidAreaError, OSMDataError

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
def _area_geometry(area_or_bounds):
    """(shapely geometry, its CRS) of an Area, a (west, south, east, north) bbox in degrees, a
    GeoDataFrame/GeoSeries (any CRS) or a shapely geometry (taken as EPSG:4326)."""
    from shapely.geometry import box
    from shapely.geometry.base import BaseGeometry

    from .area import Area, _check_bbox

    if isinstance(area_or_bounds, Area):
        return area_or_bounds.geometry, "EPSG:4326"
    if hasattr(area_or_bounds, "geometry") and hasattr(area_or_bounds, "to_crs"):
        if area_or_bounds.crs is None:
            raise InvalidAreaError("the GeoDataFrame has no CRS; set one first, e.g. gdf.set_crs('EPSG:4326')")
        if len(area_or_bounds) == 0:
            raise InvalidAreaError("the GeoDataFrame is empty")
        return area_or_bounds.union_all(), area_or_bounds.crs
    if isinstance(area_or_bounds, BaseGeometry):
        if area_or_bounds.is_empty:
            raise InvalidAreaError("the geometry is empty")
        return area_or_bounds, "EPSG:4326"
    return box(*_check_bbox(area_or_bounds)), "EPSG:4326"


def _lonlat_bounds(area_or_bounds) -> tuple[float, float, float, float]:
    import geopandas as gpd

    geometry, crs = _area_geometry(area_or_bounds)
    west, south, east, north = gpd.GeoSeries([geometry], crs=crs).to_crs("EPSG:4326").total_bounds
    return float(west), float(south), float(east), float(north)


def _pad_bounds(bounds, pad_m: float):
    """Bounds grown by ``pad_m`` metres on every side (degrees, clamped to valid values)."""
    west, south, east, north = bounds
    dlat = pad_m / 111_320.0
    dlon = pad_m / (111_320.0 * max(math.cos(math.radians((south + north) / 2)), 0.01))
    return (max(west - dlon, -180.0), max(south - dlat, -85.0), min(east + dlon, 180.0), min(north + dlat, 85.0))


def _check_frame(frame, what: str):
    """A GeoDataFrame with a CRS (a GeoSeries is promoted); typed error otherwise."""
    import geopandas as gpd

    if isinstance(frame, gpd.GeoSeries):
        frame = gpd.GeoDataFrame(geometry=frame)
    if not isinstance(frame, gpd.GeoDataFrame):
        raise ConfigError(f"{what} must be a GeoDataFrame or GeoSeries, got {type(frame).__name__}")
    if frame.crs is None:
        raise ConfigError(f"{what} have no CRS; set one first, e.g. {what}.set_crs('EPSG:4326')")
    return frame


def _check_mode(mode: str, speed_kmh) -> None:
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; choose one of {', '.join(map(repr, MODES))}")
    if speed_kmh is not None and not (isinstance(speed_kmh, (int, float)) and speed_kmh > 0 and math.isfinite(speed_kmh)):
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
    from .osm import load_network

    _check_mode(mode, None)
    bounds = _pad_bounds(_lonlat_bounds(area_or_bounds), float(pad_m))
    return load_network(bounds, network_type=mode, source=source)


def buildings(area_or_bounds, *, source=None):
    """OSM buildings of an area as origins: one row per building.

    ``geometry`` is the footprint's representative point (always inside it) in EPSG:4326;
    ``footprint`` keeps the polygon (a second geometry column, used by :func:`plot_access`).
    Columns: ``osmid``, ``building``, ``name``, ``footprint``, ``geometry``. Buildings whose
    point lies outside the area are left out.
    """
    import geopandas as gpd
    import shapely

    from .osm import load_features

    geometry, crs = _area_geometry(area_or_bounds)
    area = gpd.GeoSeries([geometry], crs=crs).to_crs("EPSG:4326").iloc[0]
    feats = load_features(_lonlat_bounds(area_or_bounds), {"building": True}, source=source)
    feats = feats[feats["building"].astype(str) != "no"]
    metric_crs = feats.estimate_utm_crs() if len(feats) else "EPSG:4326"
    # representative points in metres, so they do not depend on the input's CRS
    points = feats.geometry.to_crs(metric_crs).representative_point().to_crs("EPSG:4326")
    inside = shapely.intersects(area, points.to_numpy())
    out = gpd.GeoDataFrame(
        {
            "osmid": feats["osmid"].to_numpy()[inside],
            "building": feats["building"].to_numpy()[inside],
            "name": feats["name"].to_numpy()[inside],
            "footprint": gpd.GeoSeries(feats.geometry.to_numpy()[inside], crs="EPSG:4326"),
        },
        geometry=gpd.GeoSeries(points.to_numpy()[inside], crs="EPSG:4326"),
        crs="EPSG:4326",
    )
    return out


def hex_grid(area_or_bounds, size_m: float = 250.0, *, clip: bool = False):
    """Flat-topped hexagons covering an area, built in its local UTM CRS.

    ``size_m`` is the hexagon's side length in metres (equal to its centre-to-corner radius;
    flat side to flat side is ``sqrt(3) * size_m``, each cell is ``2.598 * size_m**2`` m²).
    Cells touching the area are kept whole (``clip=False``) or cut to it (``clip=True``); they
    tile the plane without gaps or overlaps. Returns a GeoDataFrame with ``hex_id`` (0..n-1,
    row by row from the south-west) and ``geometry``, in the input's CRS (EPSG:4326 for an Area
    or a bbox).
    """
    import geopandas as gpd
    import shapely

    if not (isinstance(size_m, (int, float)) and size_m > 0 and math.isfinite(size_m)):
        raise ConfigError(f"size_m must be a positive number of metres, got {size_m!r}")
    geometry, crs = _area_geometry(area_or_bounds)
    series = gpd.GeoSeries([geometry], crs=crs)
    metric_crs = series.to_crs("EPSG:4326").estimate_utm_crs()
    area = series.to_crs(metric_crs).iloc[0]
    xmin, ymin, xmax, ymax = area.bounds
    r = float(size_m)
    dx, dy = 1.5 * r, math.sqrt(3.0) * r  # column spacing, row spacing
    n_cols = math.ceil((xmax - xmin) / dx) + 3
    n_rows = math.ceil((ymax - ymin) / dy) + 3
    if n_cols * n_rows > 2_000_000:
        raise ConfigError(f"{n_cols * n_rows} hexagons of {size_m} m is too many; choose a larger size_m")
    col, row = np.meshgrid(np.arange(n_cols), np.arange(n_rows))
    cx = xmin - dx + col * dx
    cy = ymin - dy + row * dy + np.where(col % 2 == 1, dy / 2.0, 0.0)  # odd columns sit half a row up
    angles = np.radians(np.arange(0, 360, 60))
    ring_x = cx.ravel()[:, None] + r * np.cos(angles)[None, :]
    ring_y = cy.ravel()[:, None] + r * np.sin(angles)[None, :]
    cells = shapely.polygons(np.stack([ring_x, ring_y], axis=-1))
    # snapping to a millimetre grid makes the corners neighbours share bit-identical
    cells = shapely.set_precision(cells, 1e-3)
    cells = cells[shapely.intersects(cells, area) & ~shapely.touches(cells, area)]
    if clip:
        cells = shapely.intersection(cells, area)
        cells = cells[~shapely.is_empty(cells) & (shapely.area(cells) > 0)]
    out = gpd.GeoDataFrame({"hex_id": np.arange(len(cells))}, geometry=gpd.GeoSeries(cells, crs=metric_crs))
    return out.to_crs(crs)


# -- the network, prepared for searching -------------------------------------------------------
@dataclass
class _Network:
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
    mean). Zone codes like ``"FI:urban"`` give None."""
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
    carry a list, with NaN for the parts without the tag)."""
    if isinstance(value, (list, tuple)):
        return any(_in_tunnel(v) for v in value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return str(value).strip().lower() not in _NOT_TUNNEL


def _prepare(graph, mode: str, speed_kmh) -> _Network:
    """Validate ``graph`` and build the search structures for ``mode``."""
    import geopandas as gpd
    import shapely

    nx = require("networkx", purpose="accessibility analysis")
    _check_mode(mode, speed_kmh)
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
    net = _Network(np.array(nodes, dtype=object), shapely.get_coordinates(points), metric_crs,
                   graph_crs, adjacency, snap_kmh * 1000.0 / 60.0, snappable)
    net.tree = shapely.STRtree(points[snappable])
    return net


def _dijkstra(adjacency, sources: dict[int, int], cutoff: float = math.inf):
    """Multi-source Dijkstra carrying labels.

    ``sources`` maps node position -> label. Returns per node (minutes, metres, label); nodes
    not reached (or beyond ``cutoff`` minutes) have inf, NaN, -1. Ties in time are broken by
    the shorter distance, then the lower label, so results do not depend on dict order.
    """
    n = len(adjacency)
    best = [math.inf] * n
    done = [False] * n
    minutes = np.full(n, np.inf)
    metres = np.full(n, np.nan)
    labels = np.full(n, -1, dtype=np.int64)
    heap = [(0.0, 0.0, label, node) for node, label in sources.items()]
    heapq.heapify(heap)
    while heap:
        t, d, label, u = heapq.heappop(heap)
        if done[u]:
            continue
        if t > cutoff:
            break
        done[u] = True
        minutes[u], metres[u], labels[u] = t, d, label
        for v, w, length in adjacency[u]:
            if not done[v]:
                nt = t + w
                if nt <= best[v]:
                    best[v] = nt
                    heapq.heappush(heap, (nt, d + length, label, v))
    return minutes, metres, labels


# -- entities ---------------------------------------------------------------------------------
def _entity_frame(entities, net: _Network):
    """Entities checked and projected to the network's metric CRS."""
    import shapely

    entities = _check_frame(entities, "entities")
    if len(entities) == 0:
        raise ConfigError("entities is empty: there is nothing to measure access to")
    geoms = entities.geometry.to_numpy()
    bad = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    if bad.all():
        raise ConfigError("every entity geometry is missing or empty")
    if bad.any():
        warnings.warn(f"{int(bad.sum())} entities with missing or empty geometry are ignored", stacklevel=3)
    return entities, entities.geometry.to_crs(net.crs).to_numpy(), ~bad


def entity_nodes(entities, graph, *, mode: str = "walk", boundary_step_m: float = 25.0,
                 max_snap_m: float = DEFAULT_MAX_SNAP_M):
    """The network nodes at which each entity is reached (see the module docstring).

    Returns a pandas DataFrame with one row per access node: ``node`` (graph node id),
    ``entity`` (the entities' index label) and ``snap_m`` (metres from the entity's boundary to
    the node; 0 for nodes inside the entity).
    """
    import pandas as pd

    net = _prepare(graph, mode, None)
    entities, metric, ok = _entity_frame(entities, net)
    sources, snap = _access_nodes(metric, ok, net, boundary_step_m, max_snap_m)
    order = sorted(sources)
    return pd.DataFrame({
        "node": [net.nodes[i] for i in order],
        "entity": entities.index.take([sources[i] for i in order]),
        "snap_m": [snap[i] for i in order],
    })


def _access_nodes(metric_geoms, ok, net: _Network, step_m: float, max_snap_m: float):
    """node position -> entity position, and node position -> snap distance (m)."""
    import shapely

    if not (isinstance(step_m, (int, float)) and step_m > 0):
        raise ConfigError(f"boundary_step_m must be a positive number of metres, got {step_m!r}")
    if not (isinstance(max_snap_m, (int, float)) and max_snap_m > 0):
        raise ConfigError(f"max_snap_m must be a positive number of metres, got {max_snap_m!r}")
    positions = np.flatnonzero(ok)
    geoms = metric_geoms[positions]
    polygonal = np.isin(shapely.get_type_id(geoms), (3, 6))  # Polygon, MultiPolygon
    outlines = np.where(polygonal, shapely.boundary(geoms), geoms)
    coords, which = shapely.get_coordinates(shapely.segmentize(outlines, float(step_m)), return_index=True)
    node, dist = net.snap(shapely.points(coords))
    near = dist <= max_snap_m
    cand_entity = [positions[which[near]]]
    cand_node = [node[near]]
    cand_dist = [dist[near]]
    # nodes inside (or on) an entity polygon reach it at no cost
    poly_idx, node_idx = net.nodes_in(geoms[polygonal])
    if len(poly_idx):
        cand_entity.append(positions[np.flatnonzero(polygonal)[poly_idx]])
        cand_node.append(node_idx)
        cand_dist.append(np.zeros(len(node_idx)))
    ents = np.concatenate(cand_entity).astype(np.int64)
    nodes = np.concatenate(cand_node).astype(np.int64)
    dists = np.concatenate(cand_dist)
    # per node, the entity whose boundary is closest to it (then the lowest position)
    order = np.lexsort((ents, dists, nodes))
    first = np.ones(len(order), dtype=bool)
    first[1:] = nodes[order][1:] != nodes[order][:-1]
    keep = order[first]
    sources = dict(zip(nodes[keep].tolist(), ents[keep].tolist()))
    snaps = dict(zip(nodes[keep].tolist(), dists[keep].tolist()))
    # an entity may win no node (a neighbour's boundary is closer to all of them) and still
    # be near the network; only entities with no candidate at all are out of reach
    near_network = set(ents.tolist())
    lost = [p for p in positions if p not in near_network]
    if len(lost) == len(positions):
        raise ConfigError(
            f"no entity lies within max_snap_m={max_snap_m} m of the street network; check that the "
            "graph covers the entities' area (street_network(area)) and that their CRS is right"
        )
    if lost:
        warnings.warn(
            f"{len(lost)} of {len(positions)} entities are farther than {max_snap_m} m from the street "
            "network and are ignored", stacklevel=3,
        )
    return sources, snaps


# -- nearest ----------------------------------------------------------------------------------
def nearest(
    origins,
    entities,
    graph,
    *,
    mode: str = "walk",
    speed_kmh: float | None = None,
    boundary_step_m: float = 25.0,
    max_snap_m: float = DEFAULT_MAX_SNAP_M,
    include_snap: bool = False,
):
    """Network distance and travel time from every origin to its nearest entity.

    ``origins``: points or polygons (buildings, :func:`hex_grid` cells), any CRS. ``entities``:
    polygons (e.g. a :func:`sociogeo.segment` result) or points, any CRS. ``graph``: the street
    network (:func:`street_network`) for ``mode`` (walk, bike or drive). See the module
    docstring for how entities are reached, speeds and snapping.

    Returns the origins (same index, CRS, columns) plus: ``node`` (the origin's network node),
    ``snap_m`` (metres from the origin's point to that node), ``distance_m`` (network metres),
    ``time_min`` (minutes), ``entity`` (the nearest entity's index label) and, when the entities
    have them, ``entity_name`` and ``entity_query``. Unreachable origins get NaN and a warning.
    """
    import shapely

    origins = _check_frame(origins, "origins")
    net = _prepare(graph, mode, speed_kmh)
    entities, ent_metric, ent_ok = _entity_frame(entities, net)
    sources, _ = _access_nodes(ent_metric, ent_ok, net, boundary_step_m, max_snap_m)
    minutes, metres, labels = _dijkstra(net.adjacency, sources)

    n = len(origins)
    geoms = origins.geometry.to_crs(net.crs).to_numpy() if n else np.array([], dtype=object)
    valid = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms)) if n else np.zeros(0, bool)
    points = np.full(n, None, dtype=object)
    points[valid] = shapely.point_on_surface(geoms[valid])  # a point, also for polygons
    node, snap = net.snap(points)
    snapped = valid & (snap <= max_snap_m)

    time = np.full(n, np.nan)
    dist = np.full(n, np.nan)
    label = np.full(n, -1, dtype=np.int64)
    hit = snapped & np.isfinite(minutes[np.where(snapped, node, 0)])
    time[hit] = minutes[node[hit]]
    dist[hit] = metres[node[hit]]
    label[hit] = labels[node[hit]]
    if include_snap:
        dist[hit] += snap[hit]
        time[hit] += snap[hit] / net.snap_speed_m_min

    # origins inside (or on) an entity are there already
    if valid.any():
        ent_positions = np.flatnonzero(ent_ok)
        pt_idx, ent_idx = shapely.STRtree(ent_metric[ent_positions]).query(points[valid], predicate="intersects")
        if len(pt_idx):
            origin_pos = np.flatnonzero(valid)[pt_idx]
            first = np.unique(origin_pos, return_index=True)[1]  # one entity per origin
            origin_pos, ent_pos = origin_pos[first], ent_positions[ent_idx[first]]
            time[origin_pos] = 0.0
            dist[origin_pos] = 0.0
            label[origin_pos] = ent_pos

    unreachable = int(np.isnan(time).sum())
    if unreachable:
        far = int((valid & ~snapped & np.isnan(time)).sum())
        missing = int((~valid).sum())
        detail = []
        if far:
            detail.append(f"{far} farther than max_snap_m={max_snap_m} m from the network")
        if missing:
            detail.append(f"{missing} without geometry")
        extra = f" ({'; '.join(detail)})" if detail else ""
        warnings.warn(
            f"{unreachable} of {n} origins cannot reach any entity over the {mode} network{extra}; "
            "their distance_m and time_min are NaN", stacklevel=2,
        )

    out = origins.copy()
    out["node"] = _maybe_int([net.nodes[i] if s else None for i, s in zip(node, snapped)])
    out["snap_m"] = np.where(valid, snap, np.nan)
    out["distance_m"] = dist
    out["time_min"] = time
    reached = label >= 0
    entity_index = entities.index
    out["entity"] = _maybe_int([entity_index[p] if r else None for p, r in zip(label, reached)])
    for column in ("name", "query"):
        if column in entities.columns:
            src = entities[column].to_numpy()
            out[f"entity_{column}"] = [src[p] if r else None for p, r in zip(label, reached)]
    out.attrs.update({
        "mode": mode,
        "speed_kmh": speed_kmh,
        "metric_crs": net.crs.to_string(),
        "include_snap": include_snap,
        "boundary_step_m": boundary_step_m,
    })
    return out


def _maybe_int(values: list):
    """A nullable integer array when every present value is an integer, else objects."""
    import pandas as pd

    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in present):
        return pd.array(values, dtype="Int64")
    return pd.array(values, dtype=object)


# -- isochrones -------------------------------------------------------------------------------
def isochrones(
    entities,
    graph,
    minutes: Sequence[float] = (5, 10, 15),
    *,
    mode: str = "walk",
    speed_kmh: float | None = None,
    boundary_step_m: float = 25.0,
    max_snap_m: float = DEFAULT_MAX_SNAP_M,
    buffer_m: float = 100.0,
):
    """Regions within ``minutes`` of the nearest entity, one polygon per threshold.

    A network node is reachable within ``t`` minutes when its travel time to the nearest entity
    (as in :func:`nearest`) is at most ``t``. The region is the union of the Voronoi cells of
    the reachable nodes, clipped to the network's extent (the convex hull of its nodes grown by
    ``buffer_m`` metres): it contains every reachable node and no unreachable one, and every
    place in it is closer to a reachable node than to any unreachable one. (Nodes that share
    one position count as reachable when any of them is.)

    Returns a GeoDataFrame with columns ``minutes`` and ``geometry`` (Polygon or MultiPolygon,
    empty when nothing is reachable), ascending, in the entities' CRS.
    """
    import geopandas as gpd
    import shapely

    thresholds = _check_thresholds(minutes, "minutes")
    net = _prepare(graph, mode, speed_kmh)
    entities, ent_metric, ent_ok = _entity_frame(entities, net)
    sources, _ = _access_nodes(ent_metric, ent_ok, net, boundary_step_m, max_snap_m)
    times, _, _ = _dijkstra(net.adjacency, sources, cutoff=max(thresholds))

    # one site per distinct position; its time is the best of the nodes there
    sites, inverse = np.unique(net.xy, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    site_time = np.full(len(sites), np.inf)
    np.minimum.at(site_time, inverse, times)
    points = shapely.points(sites)
    extent = shapely.convex_hull(shapely.multipoints(points)).buffer(float(buffer_m))
    # clipping each cell once (not each region) keeps the regions of all thresholds nested
    cells = shapely.intersection(_voronoi_cells(points, extent), extent)

    polygons = []
    for t in thresholds:
        inside = site_time <= t
        polygons.append(shapely.union_all(cells[inside]) if inside.any() else shapely.Polygon())
    out = gpd.GeoDataFrame({"minutes": thresholds}, geometry=gpd.GeoSeries(polygons, crs=net.crs))
    out = out.to_crs(entities.crs)
    out.attrs.update({"mode": mode, "speed_kmh": speed_kmh, "metric_crs": net.crs.to_string()})
    return out


def _voronoi_cells(points, extent) -> np.ndarray:
    """The Voronoi cell of each point (same order), covering ``extent``."""
    import shapely

    if len(points) == 1:
        return np.array([extent], dtype=object)
    diagram = shapely.voronoi_polygons(shapely.multipoints(points), extend_to=extent)
    cells = np.asarray(shapely.get_parts(diagram), dtype=object)
    # match cells to points by containment rather than trusting the output order
    point_idx, cell_idx = shapely.STRtree(cells).query(points, predicate="intersects")
    out = np.full(len(points), None, dtype=object)
    for p, c in zip(point_idx, cell_idx):
        if out[p] is None or shapely.contains_properly(cells[c], points[p]):
            out[p] = cells[c]
    return out


def _check_thresholds(values, what: str) -> list[float]:
    if isinstance(values, (int, float)):
        values = [values]
    try:
        out = sorted({float(v) for v in values})
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be numbers of minutes, got {values!r}") from None
    if not out or any(not math.isfinite(v) or v < 0 for v in out):
        raise ConfigError(f"{what} must be non-negative numbers of minutes, got {values!r}")
    return out


# -- coverage ---------------------------------------------------------------------------------
def _label(t: float, unit: str = "min") -> str:
    return f"within_{t:g}_{unit}"


def coverage(result, thresholds: Sequence[float] = (5, 10, 15), *, by: str | None = None, zones=None,
             column: str = "time_min"):
    """Share of origins within each threshold (minutes), overall or per group, as a table.

    ``result`` is a :func:`nearest` result. Without ``by`` or ``zones``: one row ``"all"``.
    ``by``: a column of ``result`` to group by. ``zones``: polygons (any CRS); each origin
    belongs to the first zone containing its point (polygon origins: their representative
    point), and ``by`` then names a column of ``zones`` used as the row label (default: the
    zones' index). Zones without origins appear with 0 origins and NaN shares.

    Columns: ``origins`` (count), ``unreachable`` (count of NaN ``column``),
    ``median_min`` (median over reachable origins), and per threshold ``t``:
    ``within_t_min`` (share of all origins in the row, 0..1; unreachable origins count as not
    within) and ``n_within_t_min`` (count). With ``column="distance_m"`` the thresholds are
    metres and the names end in ``_m`` instead (``within_400_m``, ``median_m``).
    """
    import pandas as pd

    thresholds = _check_thresholds(thresholds, "thresholds")
    result = _check_frame(result, "result")
    if column not in result.columns:
        raise ConfigError(f"result has no column {column!r}; pass the output of nearest() or set column=")
    values = pd.to_numeric(result[column], errors="coerce").to_numpy(dtype=float)

    if zones is not None:
        groups, labels, name = _zone_groups(result, zones, by)
    elif by is not None:
        if by not in result.columns:
            raise ConfigError(f"result has no column {by!r} to group by; available: {', '.join(map(str, result.columns))}")
        groups, labels, name = result[by].to_numpy(), pd.unique(result[by].dropna()), by
    else:
        groups, labels, name = np.full(len(result), "all", dtype=object), ["all"], None

    unit = {"time_min": "min", "distance_m": "m"}.get(column, column)
    labels = [lab for lab in labels if not pd.isna(lab)]
    codes = pd.Categorical(groups, categories=labels).codes  # -1: in no group
    k = len(labels)
    member = codes >= 0
    missing = np.isnan(values)
    reached = member & ~missing
    origins = np.bincount(codes[member], minlength=k)
    table = pd.DataFrame(
        {
            "origins": origins,
            "unreachable": np.bincount(codes[member & missing], minlength=k),
            f"median_{unit}": pd.Series(values[reached]).groupby(codes[reached]).median().reindex(range(k)).to_numpy(),
        },
        index=pd.Index(labels, name=name),
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        for t in thresholds:
            count = np.bincount(codes[reached & (values <= t)], minlength=k)
            table[_label(t, unit)] = np.where(origins > 0, count / np.maximum(origins, 1), np.nan)
            table[f"n_{_label(t, unit)}"] = count
    shares = [_label(t, unit) for t in thresholds]
    counts = [f"n_{_label(t, unit)}" for t in thresholds]
    return table[["origins", "unreachable", f"median_{unit}", *shares, *counts]]


def _zone_groups(result, zones, by):
    """Per origin, the label of the zone holding it (None outside every zone)."""
    import shapely

    zones = _check_frame(zones, "zones")
    if by is not None and by not in zones.columns:
        raise ConfigError(f"zones has no column {by!r}; available: {', '.join(map(str, zones.columns))}")
    labels = list(zones[by]) if by is not None else list(zones.index)
    metric_crs = result.to_crs("EPSG:4326").estimate_utm_crs() if len(result) else zones.estimate_utm_crs()
    geoms = result.geometry.to_crs(metric_crs).to_numpy()
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    points = np.full(len(geoms), None, dtype=object)
    points[ok] = shapely.point_on_surface(geoms[ok])
    zone_geoms = zones.geometry.to_crs(metric_crs).to_numpy()
    groups = np.full(len(geoms), None, dtype=object)
    if ok.any():
        pt_idx, zone_idx = shapely.STRtree(zone_geoms).query(points[ok], predicate="intersects")
        order = np.lexsort((zone_idx, pt_idx))  # first zone (lowest position) per origin
        pt_idx, zone_idx = pt_idx[order], zone_idx[order]
        first = np.unique(pt_idx, return_index=True)[1]
        where = np.flatnonzero(ok)[pt_idx[first]]
        groups[where] = [labels[z] for z in zone_idx[first]]
    unique_labels = list(dict.fromkeys(labels))
    return groups, unique_labels, by if by is not None else (zones.index.name or "zone")


# -- plots ------------------------------------------------------------------------------------
_UNITS = {"time_min": "travel time to nearest entity (min)", "distance_m": "network distance to nearest entity (m)",
          "snap_m": "distance to the network (m)"}


def plot_access(result, column: str = "time_min", ax=None, entities=None, *, cmap: str = "viridis_r",
                vmax: float | None = None, figsize=None, title: str | None = None):
    """A choropleth of ``column`` (default travel time) with a colour bar in its units.

    Origins are drawn by their ``footprint`` when they have one (:func:`buildings`), else by
    their geometry; unreachable origins are grey. ``entities`` (any CRS) are outlined in red.
    Draws on ``ax`` when given, else on a new :class:`matplotlib.figure.Figure` (no pyplot
    state). Returns the Figure.
    """
    import geopandas as gpd
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    result = _check_frame(result, "result")
    if column not in result.columns:
        raise ConfigError(f"result has no column {column!r}; pass the output of nearest() or set column=")
    if ax is None:
        fig = Figure(figsize=figsize or (8, 7))
        ax = fig.add_subplot()
    fig = ax.figure
    frame = result
    if "footprint" in result.columns and isinstance(result["footprint"], gpd.GeoSeries):
        frame = result.set_geometry("footprint")
    values = frame[column].astype(float)
    reachable = frame[values.notna().to_numpy()]
    unreachable = frame[values.isna().to_numpy()]
    label = _UNITS.get(column, column)
    handles = []
    if len(unreachable):
        unreachable.plot(ax=ax, color="lightgrey", edgecolor="grey", linewidth=0.3, markersize=8)
        handles.append(Patch(facecolor="lightgrey", edgecolor="grey", label=f"unreachable ({len(unreachable)})"))
    if len(reachable):
        reachable.plot(ax=ax, column=column, cmap=cmap, vmin=0, vmax=vmax, legend=True, markersize=8,
                       linewidth=0.2, legend_kwds={"label": label, "shrink": 0.7})
    if entities is not None:
        entities = _check_frame(entities, "entities").to_crs(frame.crs)
        entities.plot(ax=ax, facecolor="none", edgecolor="red", linewidth=1.2)
        handles.append(Line2D([], [], color="red", linewidth=1.2, label="entities"))
    if handles:
        ax.legend(handles=handles, loc="lower left", fontsize="small")
    ax.set_title(title or label)
    ax.set_aspect("equal" if not frame.crs.is_geographic else 1 / math.cos(math.radians(_mid_lat(frame))))
    ax.set_axis_off()
    return fig


def _mid_lat(frame) -> float:
    b = frame.total_bounds
    return float((b[1] + b[3]) / 2) if np.all(np.isfinite(b)) else 0.0


def access_layer(result, column: str = "time_min", *, cmap: str = "viridis_r", vmax: float | None = None,
                 name: str | None = None, opacity: float = 0.7):
    """An ``ipyleaflet.GeoJSON`` layer colouring origins by ``column`` (for a leafmap Map).

    Colours follow ``cmap`` from 0 to ``vmax`` (default: the largest value); unreachable
    origins are grey. Buildings are drawn by their ``footprint``. Each feature's properties hold
    ``column``, ``entity`` and its name/query when present (shown by leafmap's popups).
    """
    import geopandas as gpd
    import matplotlib
    from matplotlib.colors import Normalize, to_hex

    ipyleaflet = require("ipyleaflet", purpose="interactive accessibility maps")
    result = _check_frame(result, "result")
    if column not in result.columns:
        raise ConfigError(f"result has no column {column!r}; pass the output of nearest() or set column=")
    frame = result
    if "footprint" in result.columns and isinstance(result["footprint"], gpd.GeoSeries):
        frame = result.set_geometry("footprint")
    frame = frame.to_crs("EPSG:4326")
    values = frame[column].astype(float).to_numpy()
    top = vmax if vmax is not None else (float(np.nanmax(values)) if np.isfinite(values).any() else 1.0)
    norm = Normalize(vmin=0.0, vmax=top if top > 0 else 1.0)
    colormap = matplotlib.colormaps[cmap]
    keep = [c for c in (column, "entity", "entity_name", "entity_query", "name") if c in frame.columns]
    features = []
    for geom, value, props in zip(frame.geometry, values, frame[keep].itertuples(index=False)):
        if geom is None or geom.is_empty:
            continue
        colour = to_hex(colormap(norm(value))) if np.isfinite(value) else "#bbbbbb"
        properties = {k: _jsonable(v) for k, v in zip(keep, props)}
        properties["colour"] = colour
        features.append({"type": "Feature", "geometry": geom.__geo_interface__, "properties": properties})
    data = {"type": "FeatureCollection", "features": features}

    def style(feature):
        c = feature["properties"]["colour"]
        return {"color": c, "fillColor": c, "fillOpacity": opacity, "weight": 1}

    return ipyleaflet.GeoJSON(
        data=data, style_callback=style, point_style={"radius": 4}, hover_style={"weight": 3},
        name=name or _UNITS.get(column, column),
    )


def _jsonable(value):
    """A value GeoJSON can carry: NaN/NA become None, numpy scalars plain Python."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, (str, int, float, bool)) else str(value)


__all__ = [
    "DEFAULT_SPEEDS_KMH",
    "HIGHWAY_SPEEDS_KMH",
    "access_layer",
    "buildings",
    "coverage",
    "entity_nodes",
    "hex_grid",
    "isochrones",
    "nearest",
    "plot_access",
    "street_network",
]
