"""Isochrones: the area reachable from the entities within given travel times."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ...errors import ConfigError
from .network import DEFAULT_MAX_SNAP_M
from .prepared import prepare
from .search import access_nodes, entity_frame, travel_times


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

    thresholds = check_thresholds(minutes, "minutes")
    net = prepare(graph, mode, speed_kmh)
    entities, ent_metric, ent_ok = entity_frame(entities, net)
    sources, _ = access_nodes(ent_metric, ent_ok, net, boundary_step_m, max_snap_m)
    times = travel_times(net, sources, cutoff=max(thresholds))

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


def check_thresholds(values, what: str) -> list[float]:
    """Sorted, de-duplicated thresholds in minutes from one number or an iterable; :class:`ConfigError` if invalid."""
    if isinstance(values, (int, float)):
        values = [values]
    try:
        out = sorted({float(v) for v in values})
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be numbers of minutes, got {values!r}") from None
    if not out or any(not math.isfinite(v) or v < 0 for v in out):
        raise ConfigError(f"{what} must be non-negative numbers of minutes, got {values!r}")
    return out
