"""The pure-Python accessibility search that sociogeo used before it moved to scipy, kept here only
as an independent reference: graph preparation into a dict-of-lists adjacency, a heapq multi-source
Dijkstra with (time, distance, label) tie-breaking, and isochrone polygons from clipped Voronoi
cells merged with ``union_all``. The package's own results must equal these exactly.
"""

from __future__ import annotations

import heapq
import math
import re

import geopandas as gpd
import numpy as np
import shapely

from sociogeo.analysis.access.network import DEFAULT_SPEEDS_KMH, HIGHWAY_SPEEDS_KMH

_MPH_KMH = 1.609344
_NOT_TUNNEL = frozenset({"no", "building_passage", "false", "0"})


def _number(value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _maxspeed_kmh(value):
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


def _edge_speed_kmh(data, mode, speed_kmh):
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


def _in_tunnel(value):
    if isinstance(value, (list, tuple)):
        return any(_in_tunnel(v) for v in value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return str(value).strip().lower() not in _NOT_TUNNEL


def prepare(graph, mode, speed_kmh):
    """``(node ids, metric xy, metric CRS, adjacency, snappable positions)``, as sociogeo built them."""
    nodes = list(graph.nodes)
    xy = np.array([(float(graph.nodes[n]["x"]), float(graph.nodes[n]["y"])) for n in nodes])
    lonlat = gpd.GeoSeries(shapely.points(xy), crs=graph.graph["crs"])
    metric_crs = lonlat.to_crs("EPSG:4326").estimate_utm_crs()
    metric = shapely.get_coordinates(lonlat.to_crs(metric_crs).to_numpy())
    index = {n: i for i, n in enumerate(nodes)}
    undirected = mode == "walk" or not graph.is_directed()
    best = {}
    surface = np.zeros(len(nodes), dtype=bool)
    for u, v, data in graph.edges(data=True):
        if not _in_tunnel(data.get("tunnel")):
            surface[index[u]] = surface[index[v]] = True
        length = _number(data.get("length"))
        if length is None:
            length = 0.0  # the package raises for missing lengths; the reference sees only valid graphs
        minutes = length / (_edge_speed_kmh(data, mode, speed_kmh) * 1000.0 / 60.0)
        pairs = ((v, u), (u, v)) if undirected else ((v, u),)
        for a, b in pairs:
            key = (index[a], index[b])
            if key not in best or minutes < best[key][0]:
                best[key] = (minutes, length)
    adjacency = [[] for _ in nodes]
    for (a, b), (minutes, length) in best.items():
        adjacency[a].append((b, minutes, length))
    isolated = np.array([graph.degree(n) == 0 for n in nodes], dtype=bool)
    snappable = np.flatnonzero(surface | isolated)
    if len(snappable) == 0:
        snappable = np.arange(len(nodes))
    return np.array(nodes, dtype=object), metric, metric_crs, adjacency, snappable


def dijkstra(adjacency, sources, cutoff=math.inf):
    """Multi-source Dijkstra carrying labels; ties in time broken by distance, then the lower label."""
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


def voronoi_cells(points, extent):
    """The Voronoi cell of each point (same order), covering ``extent``."""
    if len(points) == 1:
        return np.array([extent], dtype=object)
    diagram = shapely.voronoi_polygons(shapely.multipoints(points), extend_to=extent)
    cells = np.asarray(shapely.get_parts(diagram), dtype=object)
    point_idx, cell_idx = shapely.STRtree(cells).query(points, predicate="intersects")
    out = np.full(len(points), None, dtype=object)
    for p, c in zip(point_idx, cell_idx):
        if out[p] is None or shapely.contains_properly(cells[c], points[p]):
            out[p] = cells[c]
    return out


def isochrone_polygons(xy, times, thresholds, buffer_m=100.0):
    """Per threshold, the union of the clipped Voronoi cells of the nodes reached in time (metric CRS)."""
    sites, inverse = np.unique(xy, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    site_time = np.full(len(sites), np.inf)
    np.minimum.at(site_time, inverse, times)
    points = shapely.points(sites)
    extent = shapely.convex_hull(shapely.multipoints(points)).buffer(float(buffer_m))
    cells = shapely.intersection(voronoi_cells(points, extent), extent)
    polygons = []
    for t in thresholds:
        inside = site_time <= t
        polygons.append(shapely.union_all(cells[inside]) if inside.any() else shapely.Polygon())
    return polygons
