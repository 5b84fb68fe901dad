"""A street graph prepared for searching: node positions in metres, where points may snap, and the
edges of a mode as a ``scipy.sparse`` CSR matrix of minutes.

Preparing reads every node and edge of the ``networkx`` graph once (the only per-edge Python work)
and does the rest with numpy. The result is cached per graph object, so :func:`~.nearest`,
:func:`~.isochrones` and :func:`~.entity_nodes` prepare a graph once however often they are
called: the part shared by all modes (nodes, snapping tree, edge lengths) once per graph, and the
minutes of each mode and speed once more. The cache holds the graph only weakly, forgets it when
the graph is garbage-collected, and prepares again when the graph's number of nodes or edges or
its ``crs`` change. Changing edge attributes in place (new lengths or speeds, e.g. osmnx's
``add_edge_speeds`` on a graph that was already searched) is not detected: call
:func:`clear_cache` after doing so.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from ..._optional import require
from ...errors import ConfigError, OSMDataError
from .network import DEFAULT_SPEEDS_KMH, check_mode, edge_speed_kmh, in_tunnel, number


# -- what a prepared graph holds ------------------------------------------------------------------
@dataclass
class Streets:
    """The mode-independent part of a prepared graph."""

    nodes: np.ndarray  # node ids (objects), in graph order
    xy: np.ndarray  # N x 2 node coordinates in ``crs`` (metres)
    crs: Any  # the local UTM CRS
    graph_crs: Any
    snappable: np.ndarray  # positions of the nodes points may snap to (street level)
    tail: np.ndarray  # per graph edge (graph order): position of its first node
    head: np.ndarray  # ... and of its second node
    length: np.ndarray  # ... and its length in metres
    directed: bool
    extras: dict = field(default_factory=dict)  # derived data: k-d tree, STRtree, isochrone cells

    @property
    def kdtree(self):
        """A ``scipy.spatial.cKDTree`` of the snappable nodes (built on first use)."""
        if "kdtree" not in self.extras:
            spatial = require("scipy.spatial", purpose="accessibility analysis")
            self.extras["kdtree"] = spatial.cKDTree(self.xy[self.snappable])
        return self.extras["kdtree"]

    @property
    def tree(self):
        """A shapely ``STRtree`` of the snappable nodes' points (built on first use)."""
        if "tree" not in self.extras:
            import shapely

            self.extras["tree"] = shapely.STRtree(shapely.points(self.xy[self.snappable]))
        return self.extras["tree"]


@dataclass
class Network:
    """A graph ready for searching in one mode.

    ``minutes`` is an N x N ``scipy.sparse.csr_array`` in the direction of the search, from the
    entities towards the origins: ``minutes[a, b]`` is the travel time of the street walked from
    node position ``a`` to ``b`` (for one-way streets, the graph edge ``b -> a``), the fastest of
    any parallel edges. ``metres`` holds the length of each stored edge, aligned with
    ``minutes.data``, and ``rows`` its row ``a``.
    """

    streets: Streets
    snap_speed_m_min: float  # metres per minute of the snap legs
    minutes: Any
    metres: np.ndarray
    rows: np.ndarray

    @property
    def nodes(self) -> np.ndarray:
        """Node ids (objects), in graph order."""
        return self.streets.nodes

    @property
    def xy(self) -> np.ndarray:
        """N x 2 node coordinates in :attr:`crs` (metres)."""
        return self.streets.xy

    @property
    def crs(self):
        """The local UTM CRS the network works in."""
        return self.streets.crs

    @property
    def graph_crs(self):
        """The graph's own CRS."""
        return self.streets.graph_crs

    def snap(self, points) -> tuple[np.ndarray, np.ndarray]:
        """Nearest snappable node position and distance (m) of each shapely point (in ``crs``)."""
        import shapely

        points = np.asarray(points, dtype=object)
        pos = np.full(len(points), -1, dtype=np.int64)
        dist = np.full(len(points), np.nan)
        ok = ~(shapely.is_missing(points) | shapely.is_empty(points)) if len(points) else np.zeros(0, bool)
        if not ok.any():
            return pos, dist
        streets = self.streets
        where = np.flatnonzero(ok)
        # a k-d tree finds the nearest node ten times faster than GEOS, with the same distances
        # to the last bit; points with two nodes equally near ask GEOS, which picked them before
        k = min(2, len(streets.snappable))
        d, i = streets.kdtree.query(shapely.get_coordinates(points[ok]), k=k)
        d, i = d.reshape(len(where), k), i.reshape(len(where), k)
        pos[where] = streets.snappable[i[:, 0]]
        dist[where] = d[:, 0]
        tied = where[d[:, -1] == d[:, 0]] if k == 2 else where[:0]
        if len(tied):
            (src, dst), d = streets.tree.query_nearest(points[tied], return_distance=True, all_matches=False)
            pos[tied[src]] = streets.snappable[dst]
            dist[tied[src]] = d
        return pos, dist

    def nodes_in(self, polygons) -> tuple[np.ndarray, np.ndarray]:
        """(polygon index, node position) of the snappable nodes inside or on each polygon."""
        import shapely

        polygons = np.asarray(polygons, dtype=object)
        if len(polygons) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        streets = self.streets
        # candidates: the nodes in the circle around each bounding box; then the exact test
        x0, y0, x1, y1 = shapely.bounds(polygons).T
        centres = np.column_stack([(x0 + x1) / 2, (y0 + y1) / 2])
        radii = np.hypot(x1 - x0, y1 - y0) / 2 * (1 + 1e-9) + 1e-6
        found = streets.kdtree.query_ball_point(centres, radii)
        counts = np.fromiter(map(len, found), dtype=np.int64, count=len(found))
        poly_idx = np.repeat(np.arange(len(polygons)), counts)
        candidates = streets.snappable[np.fromiter(chain.from_iterable(found), dtype=np.int64, count=counts.sum())]
        x, y = streets.xy[candidates].T
        inside = shapely.intersects_xy(polygons[poly_idx], x, y)
        return poly_idx[inside], candidates[inside]


# -- the cache --------------------------------------------------------------------------------------
@dataclass
class _Entry:
    ref: weakref.ref | None
    signature: tuple
    streets: Streets
    # (undirected, speeds) -> Network; kept here, not in Streets, so that nothing refers back to
    # the entry and a dropped graph's arrays are freed at once rather than by the cycle collector
    networks: dict = field(default_factory=dict)


_CACHE: dict[int, _Entry] = {}
_LOCK = threading.RLock()


def clear_cache() -> None:
    """Forget every prepared graph, e.g. after changing edge lengths or speeds of a graph in place."""
    with _LOCK:
        _CACHE.clear()


def _forget(key: int, ref: weakref.ref) -> None:
    with _LOCK:
        entry = _CACHE.get(key)
        if entry is not None and entry.ref is ref:
            del _CACHE[key]


def _signature(graph) -> tuple:
    """What must stay the same for a cached preparation to be reused: node and edge counts, CRS.

    Edges are counted as the adjacency holds them: an undirected edge twice, except a loop.
    """
    if graph.is_multigraph():
        n_edges = sum(len(keys) for _, nbrs in graph.adjacency() for keys in nbrs.values())
    else:
        n_edges = sum(len(nbrs) for _, nbrs in graph.adjacency())
    return graph.number_of_nodes(), n_edges, graph.is_directed(), str(graph.graph.get("crs"))


def prepare(graph, mode: str, speed_kmh) -> Network:
    """Validate ``graph`` and give its search structures for ``mode`` (cached per graph, mode and speed)."""
    nx = require("networkx", purpose="accessibility analysis")
    check_mode(mode, speed_kmh)
    if not isinstance(graph, nx.Graph):
        raise ConfigError(f"graph must be a networkx graph (e.g. from street_network), got {type(graph).__name__}")
    if graph.number_of_nodes() == 0:
        raise OSMDataError("the street network has no nodes; build it for the area with street_network(...)")
    if graph.graph.get("crs") is None:
        raise OSMDataError("the graph has no 'crs' attribute; set graph.graph['crs'] (osmnx graphs have one)")
    entry = _cached_entry(graph)
    # walking ignores one-way streets; drive without a set speed reads each edge's tags; otherwise
    # one flat speed: bike at 20 km/h and drive at 20 km/h are the same network
    speeds = "tags" if mode == "drive" and speed_kmh is None else _flat_speed(mode, speed_kmh)
    key = (mode == "walk" or not entry.streets.directed, speeds)
    with _LOCK:
        net = entry.networks.get(key)
    if net is None:
        net = _network(graph, entry.streets, mode, speed_kmh)
        with _LOCK:
            net = entry.networks.setdefault(key, net)
    return net


def _flat_speed(mode: str, speed_kmh) -> float:
    return float(speed_kmh) if speed_kmh is not None else DEFAULT_SPEEDS_KMH[mode]


def _cached_entry(graph) -> _Entry:
    key = id(graph)
    with _LOCK:
        entry = _CACHE.get(key)
    if entry is not None and entry.ref() is graph and entry.signature == _signature(graph):
        return entry
    streets = _streets(graph)
    # the signature of what was just read, without counting the edges again
    loops = int((streets.tail == streets.head).sum())
    n_adjacent = len(streets.tail) if streets.directed else 2 * len(streets.tail) - loops
    signature = (len(streets.nodes), n_adjacent, streets.directed, str(graph.graph.get("crs")))
    try:
        ref = weakref.ref(graph, lambda r, k=key: _forget(k, r))
    except TypeError:  # a graph class without weak references: prepared anew on every call
        return _Entry(None, signature, streets)
    entry = _Entry(ref, signature, streets)
    with _LOCK:
        _CACHE[key] = entry
    return entry


# -- reading the graph ------------------------------------------------------------------------------
def _edges(graph) -> tuple[list, list, list]:
    """Every edge's first node, second node and data dict, in ``graph.edges`` order."""
    tails, heads, data = [], [], []
    if not graph.is_directed():  # edges() gives each undirected edge once
        for u, v, d in graph.edges(data=True):
            tails.append(u)
            heads.append(v)
            data.append(d)
        return tails, heads, data
    multi = graph.is_multigraph()
    for u, nbrs in graph.adjacency():  # the order graph.edges() walks, without its tuples
        for v, keys in nbrs.items():
            if multi:
                for d in keys.values():
                    tails.append(u)
                    heads.append(v)
                    data.append(d)
            else:
                tails.append(u)
                heads.append(v)
                data.append(keys)
    return tails, heads, data


def _node_index(node_ids: list):
    """A pandas Index of the node ids (int64 when they all are), for vectorised lookups."""
    import pandas as pd

    try:
        ints = np.array(node_ids)
    except (ValueError, TypeError):
        ints = None
    if ints is not None and ints.ndim == 1 and ints.dtype.kind in "iu":
        return pd.Index(ints)
    return pd.Index(np.fromiter(node_ids, dtype=object, count=len(node_ids)), dtype=object, tupleize_cols=False)


def _positions(index, ids: list) -> np.ndarray:
    """Positions in ``index`` of node ids (all present)."""
    dtype = object if index.dtype == object else index.dtype
    return index.get_indexer(np.fromiter(ids, dtype=dtype, count=len(ids)))


def _coordinates(graph) -> np.ndarray:
    """N x 2 node ``x``, ``y`` as floats; :class:`OSMDataError` when any is missing or not a number."""
    bad = OSMDataError("every graph node needs numeric 'x' and 'y' coordinates (osmnx graphs have them)")
    data = list(map(itemgetter(1), graph.nodes(data=True)))
    try:
        x = np.fromiter(map(itemgetter("x"), data), dtype=float, count=len(data))
        y = np.fromiter(map(itemgetter("y"), data), dtype=float, count=len(data))
        strict = np.isnan(x).any() or np.isnan(y).any()  # numpy reads None as NaN, float() refuses it
    except KeyError:
        raise bad from None
    except (TypeError, ValueError):  # e.g. numbers as text, which float() reads
        strict = True
    if strict:
        try:
            x = np.array([float(d["x"]) for d in data])
            y = np.array([float(d["y"]) for d in data])
        except (TypeError, ValueError):
            raise bad from None
    return np.column_stack([x, y])


def _lengths(data: list) -> np.ndarray:
    """Edge lengths in metres; NaN where an edge has no usable length (0 is a length)."""
    try:
        raw = list(map(itemgetter("length"), data))
    except KeyError:
        raw = [d.get("length") for d in data]
    try:
        values = np.array(raw)
    except (ValueError, TypeError):
        values = None
    if values is not None and values.ndim == 1 and values.dtype.kind in "fiub":
        values = values.astype(float)
        ok = (np.isfinite(values) & (values > 0)) | (values == 0)
        return np.where(ok, np.abs(values), np.nan)  # abs: -0.0 is a zero length
    out = np.full(len(raw), np.nan)
    for i, value in enumerate(raw):  # tags of any type: the scalar rules, one by one
        length = number(value)
        out[i] = 0.0 if length is None and value in (0, 0.0) else (np.nan if length is None else length)
    return out


def _tunnels(data: list) -> np.ndarray:
    """Whether each edge runs (partly) through a tunnel; most edges have no tag at all."""
    tagged = [i for i, d in enumerate(data) if "tunnel" in d]
    out = np.zeros(len(data), dtype=bool)
    out[tagged] = [in_tunnel(data[i]["tunnel"]) for i in tagged]
    return out


def _to_crs(x, y, source, target):
    """Coordinates transformed as geopandas' ``to_crs`` does (no-op between identical CRSs)."""
    from pyproj import CRS, Transformer

    source, target = CRS.from_user_input(source), CRS.from_user_input(target)
    if source.is_exact_same(target):
        return np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    x, y = Transformer.from_crs(source, target, always_xy=True).transform(x, y)
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


def _metric_crs(x, y, graph_crs):
    """The local UTM CRS of the nodes, as geopandas' ``estimate_utm_crs`` picks it."""
    lon, lat = _to_crs(x, y, graph_crs, "EPSG:4326")
    return utm_crs(float(np.nanmin(lon)), float(np.nanmin(lat)), float(np.nanmax(lon)), float(np.nanmax(lat)))


def utm_crs(west: float, south: float, east: float, north: float):
    """The WGS 84 UTM zone geopandas' ``estimate_utm_crs`` picks for these bounds (degrees).

    The zone of the bounds' centre, computed; only where the centre lies on a zone's edge, at the
    equator or beyond UTM's latitudes does it ask pyproj's database as geopandas does (slow).
    """
    from pyproj import CRS

    lon, lat = np.mean([west, east]), np.mean([south, north])
    if -180.0 < lon < 180.0 and (lon + 180.0) % 6.0 != 0.0 and (-80.0 < lat < 0.0 or 0.0 < lat < 84.0):
        return CRS.from_epsg((32600 if lat > 0 else 32700) + int((lon + 180.0) // 6.0) + 1)
    import geopandas as gpd
    import shapely

    corners = shapely.points([(west, south), (east, north)])
    return gpd.GeoSeries(corners, crs="EPSG:4326").estimate_utm_crs()


def _streets(graph) -> Streets:
    graph_crs = graph.graph["crs"]
    node_ids = list(graph.nodes)
    xy = _coordinates(graph)
    metric_crs = _metric_crs(xy[:, 0], xy[:, 1], graph_crs)
    mx, my = _to_crs(xy[:, 0], xy[:, 1], graph_crs, metric_crs)
    metric = np.column_stack([mx, my])

    tails, heads, data = _edges(graph)
    index = _node_index(node_ids)
    tail, head = _positions(index, tails), _positions(index, heads)
    length = _lengths(data)
    missing = int(np.isnan(length).sum())
    if missing:
        raise OSMDataError(
            f"{missing} edges of the graph have no numeric 'length' (metres); add lengths, e.g. "
            "osmnx.distance.add_edge_lengths(graph), or build the graph with street_network(...)"
        )
    n = len(node_ids)
    tunnel = _tunnels(data)
    surface = np.zeros(n, dtype=bool)  # nodes with an edge at street level
    surface[tail[~tunnel]] = True
    surface[head[~tunnel]] = True
    # isolated nodes have no edges at all; they stay snappable like street-level ones
    isolated = np.bincount(np.concatenate([tail, head]), minlength=n) == 0
    snappable = np.flatnonzero(surface | isolated)
    if len(snappable) == 0:  # a network made only of tunnels: snap to what there is
        snappable = np.arange(n)
    nodes = np.fromiter(node_ids, dtype=object, count=n)
    return Streets(nodes, metric, metric_crs, graph_crs, snappable, tail, head, length, graph.is_directed())


def _edge_speeds(graph, mode: str, speed_kmh) -> np.ndarray | float:
    """km/h per edge (graph order) for drive without a set speed; one number otherwise."""
    if speed_kmh is not None or mode != "drive":
        return _flat_speed(mode, speed_kmh)
    _, _, data = _edges(graph)
    speeds = np.empty(len(data))
    memo: dict = {}
    for i, d in enumerate(data):  # few distinct tag combinations: each is parsed once
        kph, maxspeed, highway = d.get("speed_kph"), d.get("maxspeed"), d.get("highway")
        # types too: True == 1, yet "True" and "1" are different maxspeed tags
        key = (type(kph), kph, type(maxspeed), maxspeed, type(highway), highway)
        try:
            speeds[i] = memo[key]
        except KeyError:
            speeds[i] = memo[key] = edge_speed_kmh(d, mode, None)
        except TypeError:  # list-valued tags are not hashable
            speeds[i] = edge_speed_kmh(d, mode, None)
    return speeds


def _network(graph, streets: Streets, mode: str, speed_kmh) -> Network:
    """The CSR matrix of minutes for ``mode``: for each ordered node pair, the fastest edge."""
    sparse = require("scipy.sparse", purpose="accessibility analysis")
    n = len(streets.nodes)
    speeds = _edge_speeds(graph, mode, speed_kmh)
    minutes = streets.length / (speeds * 1000.0 / 60.0)
    tail, head, metres = streets.tail.astype(np.int64), streets.head.astype(np.int64), streets.length
    if mode == "walk" or not streets.directed:
        # every edge is walked both ways. Of the edges joining two nodes (either way round), the
        # fastest and then the first read serves both directions: what a dict filled edge by
        # edge, with the way back after the way there, keeps (see tests/analysis/_legacy_access.py)
        low, high = np.minimum(tail, head), np.maximum(tail, head)
        keep = _fastest(low * n + high, minutes)
        low, high, minutes, metres = low[keep], high[keep], minutes[keep], metres[keep]
        twice = low != high  # a loop is one entry
        rows, cols = np.r_[low, high[twice]], np.r_[high, low[twice]]
        minutes, metres = np.r_[minutes, minutes[twice]], np.r_[metres, metres[twice]]
        by_row = np.argsort(rows)
        rows, cols, minutes, metres = rows[by_row], cols[by_row], minutes[by_row], metres[by_row]
    else:
        # the search runs from entities backwards, so edge u -> v is followed from v to u
        keep = _fastest(head * n + tail, minutes)
        rows, cols, minutes, metres = head[keep], tail[keep], minutes[keep], metres[keep]
    index_type = np.int32 if max(n, len(rows)) < 2**31 - 1 else np.int64
    indptr = np.zeros(n + 1, dtype=index_type)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    matrix = sparse.csr_array((minutes, cols.astype(index_type), indptr), shape=(n, n))
    snap = _flat_speed(mode, speed_kmh) * 1000.0 / 60.0
    return Network(streets, snap, matrix, metres, rows.astype(index_type))


def _fastest(keys: np.ndarray, minutes: np.ndarray) -> np.ndarray:
    """Indices of one entry per key, sorted by key: the fastest, and of equally fast ones the
    first (as a dict updated with ``<`` keeps the first).
    """
    order = np.arange(len(keys))
    by_key = np.argsort(keys)
    keys = keys[by_key]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    if len(starts) >= len(keys):  # no two entries share a key (or there are none)
        return by_key
    sizes = np.diff(np.r_[starts, len(keys)])
    times = minutes[by_key]
    fastest = times == np.repeat(np.minimum.reduceat(times, starts), sizes)
    first = np.where(fastest, order[by_key], np.iinfo(np.int64).max)
    chosen = first == np.repeat(np.minimum.reduceat(first, starts), sizes)
    return by_key[chosen]


