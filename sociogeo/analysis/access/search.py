"""Network distance and travel time from every origin to its nearest entity."""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..._optional import require
from ...errors import ConfigError
from .network import DEFAULT_MAX_SNAP_M, check_frame
from .prepared import Network, prepare


def travel_times(net: Network, sources: dict[int, int], cutoff: float = math.inf) -> np.ndarray:
    """Minutes from the nearest source to every node (inf when unreached or beyond ``cutoff``).

    ``sources`` maps node position -> label (only the positions matter here).
    """
    csgraph = require("scipy.sparse.csgraph", purpose="accessibility analysis")
    starts = np.fromiter(sources, dtype=np.int64, count=len(sources))
    return csgraph.dijkstra(net.minutes, indices=starts, min_only=True, limit=cutoff)


def search(net: Network, sources: dict[int, int]):
    """Multi-source search carrying labels: per node (minutes, metres, label) of its nearest source.

    ``sources`` maps node position -> label. Nodes not reached have inf, NaN, -1. Ties in time
    are broken by the shorter distance, then the lower label, so results do not depend on the
    order of ``sources``: as a Dijkstra on (minutes, metres, label) triples would give them.

    Three passes: scipy's Dijkstra gives the minutes; a second Dijkstra on the edges that lie
    on fastest routes (``minutes[u] + edge == minutes[v]``, exactly as the search adds them)
    gives the metres of the shortest of the fastest routes; the label of the source it starts
    from is then lowered to the lowest label that reaches the node over edges on such routes.
    """
    csgraph = require("scipy.sparse.csgraph", purpose="accessibility analysis")
    sparse = require("scipy.sparse", purpose="accessibility analysis")
    n = len(net.nodes)
    starts = np.fromiter(sources, dtype=np.int64, count=len(sources))
    own = np.full(n, -1, dtype=np.int64)
    own[starts] = np.fromiter(sources.values(), dtype=np.int64, count=len(sources))
    minutes = csgraph.dijkstra(net.minutes, indices=starts, min_only=True)

    rows, cols, weights = net.rows, net.minutes.indices, net.minutes.data
    reached = np.isfinite(minutes)
    tight = reached[rows] & (minutes[rows] + weights == minutes[cols])
    rows, cols, lengths = rows[tight], cols[tight], net.metres[tight]
    fastest = sparse.csr_array((lengths, cols, _indptr(rows, n)), shape=(n, n))
    metres, _, origin = csgraph.dijkstra(fastest, indices=starts, min_only=True, return_predecessors=True)

    labels = np.where(origin >= 0, own[np.maximum(origin, 0)], -1)
    shortest = metres[rows] + lengths == metres[cols]
    labels = _lowest_labels(labels, rows[shortest], cols[shortest], n)
    metres[~reached] = np.nan
    return minutes, metres, labels


def _indptr(rows: np.ndarray, n: int) -> np.ndarray:
    """CSR row pointers of entries sorted by row."""
    indptr = np.zeros(n + 1, dtype=rows.dtype)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return indptr


def _lowest_labels(labels: np.ndarray, rows: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
    """Labels lowered along the edges ``rows -> cols`` until no edge lowers one any more.

    Every starting label is one that reaches its node; the fixed point is then, per node, the
    lowest label of any node from which it can be reached over these edges. Usually few labels
    change: ties are rare on real streets, and each round only looks at the nodes just lowered.
    """
    indptr = _indptr(rows, n)
    frontier = np.unique(rows)
    while len(frontier):
        first, count = indptr[frontier], indptr[frontier + 1] - indptr[frontier]
        edges = np.repeat(first - np.cumsum(count) + count, count) + np.arange(int(count.sum()))
        offered, target = labels[rows[edges]], cols[edges]
        lower = offered < labels[target]
        if not lower.any():
            break
        np.minimum.at(labels, target[lower], offered[lower])
        frontier = np.unique(target[lower])
    return labels


# -- entities ---------------------------------------------------------------------------------
def entity_frame(entities, net: Network):
    """Entities checked and projected to the network's metric CRS."""
    import shapely

    entities = check_frame(entities, "entities")
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

    net = prepare(graph, mode, None)
    entities, metric, ok = entity_frame(entities, net)
    sources, snap = access_nodes(metric, ok, net, boundary_step_m, max_snap_m)
    order = sorted(sources)
    return pd.DataFrame({
        "node": [net.nodes[i] for i in order],
        "entity": entities.index.take([sources[i] for i in order]),
        "snap_m": [snap[i] for i in order],
    })


def access_nodes(metric_geoms, ok, net: Network, step_m: float, max_snap_m: float):
    """Node position -> entity position, and node position -> snap distance (m)."""
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

    origins = check_frame(origins, "origins")
    net = prepare(graph, mode, speed_kmh)
    entities, ent_metric, ent_ok = entity_frame(entities, net)
    sources, _ = access_nodes(ent_metric, ent_ok, net, boundary_step_m, max_snap_m)
    minutes, metres, labels = search(net, sources)

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
    out["node"] = maybe_int(pick(net.nodes, node, snapped))
    out["snap_m"] = np.where(valid, snap, np.nan)
    out["distance_m"] = dist
    out["time_min"] = time
    reached = label >= 0
    out["entity"] = maybe_int(pick(entities.index.to_numpy(), label, reached))
    for column in ("name", "query"):
        if column in entities.columns:
            out[f"entity_{column}"] = list(pick(entities[column].to_numpy(), label, reached))
    out.attrs.update({
        "mode": mode,
        "speed_kmh": speed_kmh,
        "metric_crs": net.crs.to_string(),
        "include_snap": include_snap,
        "boundary_step_m": boundary_step_m,
    })
    return out


def pick(values: np.ndarray, positions: np.ndarray, present: np.ndarray) -> np.ndarray:
    """``values[positions]`` where ``present``, None elsewhere, as an object array."""
    out = np.full(len(positions), None, dtype=object)
    out[present] = values[positions[present]]
    return out


def maybe_int(values: np.ndarray):
    """A nullable integer array when every present value is an integer (not a bool), else objects."""
    import pandas as pd

    present = np.not_equal(values, None)
    if present.any() and pd.api.types.infer_dtype(values[present], skipna=False) == "integer":
        try:
            numbers = np.zeros(len(values), dtype=np.int64)
            numbers[present] = values[present].astype(np.int64)
            return pd.arrays.IntegerArray(numbers, ~present)
        except OverflowError:  # beyond int64: as pandas itself would refuse them
            pass
    return pd.array(list(values), dtype=object)


# -- isochrones -------------------------------------------------------------------------------
