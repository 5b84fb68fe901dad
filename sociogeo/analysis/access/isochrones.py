"""Isochrones: the area reachable from the entities within given travel times."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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

    thresholds = check_thresholds(minutes, "minutes")
    net = prepare(graph, mode, speed_kmh)
    entities, ent_metric, ent_ok = entity_frame(entities, net)
    sources, _ = access_nodes(ent_metric, ent_ok, net, boundary_step_m, max_snap_m)
    times = travel_times(net, sources, cutoff=max(thresholds))

    cells = _cells(net.streets, float(buffer_m))
    # a site's time is the best of the nodes at its position
    site_time = np.full(len(cells.pieces), np.inf)
    np.minimum.at(site_time, cells.inverse, times)
    polygons = [cells.union(site_time <= t) for t in thresholds]
    out = gpd.GeoDataFrame({"minutes": thresholds}, geometry=gpd.GeoSeries(polygons, crs=net.crs))
    out = out.to_crs(entities.crs)
    out.attrs.update({"mode": mode, "speed_kmh": speed_kmh, "metric_crs": net.crs.to_string()})
    return out


@dataclass
class _Cells:
    """The Voronoi cells of a network's distinct node positions, clipped to its extent.

    Cells strictly inside the extent are kept as GEOS made them, so neighbours share their
    edges exactly and form a coverage; only the cells crossing the extent's boundary are
    clipped. Clipping each cell once (not each region) keeps the regions of all thresholds nested.
    """

    inverse: np.ndarray  # node position -> site (distinct position)
    pieces: np.ndarray  # per site, its cell (clipped where it crosses the extent)
    inner: np.ndarray  # per site, whether its cell lies strictly inside the extent

    def union(self, mask: np.ndarray):
        """The union of the cells of the sites in ``mask`` (an empty Polygon when none)."""
        import shapely

        inner, outer = mask & self.inner, mask & ~self.inner
        parts = list(self.pieces[outer])
        if inner.any():
            merged = shapely.coverage_union_all(self.pieces[inner])
            if not shapely.is_valid(merged):
                # pinched where four or more cells meet at one point and only opposite ones are
                # in (sites on an exact lattice): the overlay union splits it into valid parts
                merged = shapely.union_all(self.pieces[inner])
            parts.insert(0, merged)
        if not parts:
            return shapely.Polygon()
        return parts[0] if len(parts) == 1 else shapely.union_all(parts)


def _cells(streets, buffer_m: float) -> _Cells:
    """The cells of a prepared graph for ``buffer_m`` (cached with the graph: the diagram of a city
    takes a second or more, and does not depend on the entities or the times).
    """
    key = ("isochrone cells", buffer_m)
    cached = streets.extras.get(key)
    if cached is not None:
        return cached
    import shapely

    sites, inverse = _unique_rows(streets.xy)
    points = shapely.points(sites)
    extent = shapely.convex_hull(shapely.multipoints(points)).buffer(buffer_m)
    cells = _voronoi_cells(points, extent)
    # the extent is convex: a cell whose bounding box has its four corners strictly inside is inside
    shapely.prepare(extent)
    x0, y0, x1, y1 = shapely.bounds(cells).T
    inner = np.ones(len(cells), dtype=bool)
    for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1)):
        inner &= shapely.contains_xy(extent, x, y)
    pieces = cells.copy()
    pieces[~inner] = shapely.intersection(cells[~inner], extent)
    out = _Cells(inverse, pieces, inner)
    for old in [k for k in streets.extras if isinstance(k, tuple) and k[0] == key[0]]:
        del streets.extras[old]  # one extent at a time: the cells of a city take hundreds of MB
    streets.extras[key] = out
    return out


def _unique_rows(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of an N x 2 array sorted by x then y, and each row's position among them:
    ``np.unique(xy, axis=0, return_inverse=True)``, without its slow sort of rows as opaque bytes.
    """
    if len(xy) == 0:
        return xy.reshape(0, 2), np.zeros(0, dtype=np.intp)
    order = np.lexsort((xy[:, 1], xy[:, 0]))
    ranked = xy[order]
    first = np.ones(len(ranked), dtype=bool)
    first[1:] = (ranked[1:] != ranked[:-1]).any(axis=1)
    inverse = np.empty(len(xy), dtype=np.intp)
    inverse[order] = np.cumsum(first) - 1
    return ranked[first], inverse


def _voronoi_cells(points, extent) -> np.ndarray:
    """The Voronoi cell of each point (same order), covering ``extent``."""
    import shapely

    if len(points) == 1:
        return np.array([extent], dtype=object)
    if shapely.geos_version >= (3, 12, 0) and _has_ordered_voronoi():
        diagram = shapely.voronoi_polygons(shapely.multipoints(points), extend_to=extent, ordered=True)
        return np.asarray(shapely.get_parts(diagram), dtype=object)
    diagram = shapely.voronoi_polygons(shapely.multipoints(points), extend_to=extent)
    cells = np.asarray(shapely.get_parts(diagram), dtype=object)
    # match cells to points by containment rather than trusting the output order
    point_idx, cell_idx = shapely.STRtree(cells).query(points, predicate="intersects")
    out = np.full(len(points), None, dtype=object)
    for p, c in zip(point_idx, cell_idx):
        if out[p] is None or shapely.contains_properly(cells[c], points[p]):
            out[p] = cells[c]
    return out


def _has_ordered_voronoi() -> bool:
    """Whether shapely's ``voronoi_polygons`` takes ``ordered=`` (shapely 2.1)."""
    import inspect

    import shapely

    return "ordered" in inspect.signature(shapely.voronoi_polygons).parameters


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
