"""Chip results back into entities, without an area-sized array.

Each chip's mask becomes polygons at once (:func:`chip_polygons`), in the area's pixel
coordinates, where pixel edges are whole numbers: polygons of neighbouring chips then meet
exactly. :func:`merge_entities` unites polygons that touch or overlap (pixels that are 8-connected
across a chip border belong to one entity, as in the mosaic of all chips), gives every entity the
chips it was found in and their reasoning, and measures it in metres. Memory grows with the
number of polygons, never with the area's pixels.
"""

from __future__ import annotations

import numpy as np

from ..geo.grid import PixelGrid

RESULT_COLUMNS = ["query", "area_m2", "chip_id", "reasoning", "geometry"]


def empty_result(crs="EPSG:4326"):
    """An empty result frame: the same columns and CRS as a non-empty one."""
    from .vectorize import empty_frame

    return empty_frame(crs, columns=RESULT_COLUMNS)


def chip_polygons(mask: np.ndarray, col_off: int, row_off: int):
    """The 8-connected components of ``mask`` (H x W bool, the part of a chip inside the area, its
    top-left pixel at ``(col_off, row_off)`` of the area's grid) as a MultiPolygon in the area's
    pixel coordinates (x = column, y = row), or None when the mask is empty.
    """
    import shapely
    from affine import Affine
    from rasterio import features
    from shapely.geometry import shape

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return None
    parts = []
    shapes = features.shapes(mask.astype(np.uint8), mask=mask, connectivity=8,
                             transform=Affine.translation(col_off, row_off))
    for geom, _ in shapes:
        poly = shape(geom)
        if not poly.is_valid:  # components that touch themselves at a corner
            poly = shapely.make_valid(poly)
        parts.extend(shapely.get_parts(poly))
    polygons = [p for p in parts if p.geom_type == "Polygon" and not p.is_empty]
    return shapely.MultiPolygon(polygons) if polygons else None


def pixels_to_crs(geometries, grid: PixelGrid):
    """Geometries in the area's pixel coordinates to EPSG:3857 metres (``grid.transform``)."""
    import shapely

    t = grid.transform
    return shapely.transform(geometries, lambda xy: np.column_stack([t.a * xy[:, 0] + t.b * xy[:, 1] + t.c,
                                                                     t.d * xy[:, 0] + t.e * xy[:, 1] + t.f]))


def crs_to_pixels(geometries, grid: PixelGrid):
    """EPSG:3857 geometries made by :func:`pixels_to_crs` back to exact pixel coordinates."""
    import shapely

    inv = ~grid.transform
    return shapely.transform(geometries, lambda xy: np.round(
        np.column_stack([inv.a * xy[:, 0] + inv.b * xy[:, 1] + inv.c, inv.d * xy[:, 0] + inv.e * xy[:, 1] + inv.f])))


def merge_entities(chips, grid: PixelGrid, *, min_area_m2: float = 0.0, simplify_m: float | None = None):
    """One query's entities from its stored chips.

    ``chips`` is a (Geo)DataFrame with ``chip_id``, ``row``, ``col``, ``reasoning`` and
    ``geometry`` (the chips' polygons in EPSG:3857 as :func:`chip_polygons` then
    :func:`pixels_to_crs` made them; None for empty chips). Returns a GeoDataFrame in EPSG:4326
    with ``area_m2``, ``chip_id`` (the chips the entity was found in, comma-separated, in chip
    order), ``reasoning`` and ``geometry``, entities in raster order of their first pixel (as
    connected-component labelling numbers them); entities under ``min_area_m2`` square metres
    are dropped, ``simplify_m`` simplifies in metres.
    """
    import geopandas as gpd
    import shapely

    from .vectorize import measure

    chips = chips[chips.geometry.notna() & ~chips.geometry.is_empty] if len(chips) else chips
    if len(chips) == 0:
        return _empty_entities()
    chips = chips.sort_values(["row", "col"], kind="stable").reset_index(drop=True)
    parts, owner = shapely.get_parts(crs_to_pixels(chips.geometry.to_numpy(), grid), return_index=True)
    groups = _touching_groups(parts)
    rows = []
    for members in groups:
        chip_rows = sorted(set(owner[members]))
        # the seams between chips leave vertices in the middle of straight edges: drop them (exactly
        # collinear in whole pixels), so an entity has the vertices a single mosaic would give it
        entity = shapely.simplify(shapely.union_all(parts[members]), 0)
        rows.append((_first_pixel(entity), entity, chip_rows))
    rows.sort(key=lambda r: r[0])
    reasoning = chips["reasoning"].tolist()
    ids = chips["chip_id"].tolist()
    frame = gpd.GeoDataFrame(
        {
            "chip_id": [",".join(ids[i] for i in members) for _, _, members in rows],
            "reasoning": [_combined(members, ids, reasoning) for _, _, members in rows],
        },
        geometry=gpd.GeoSeries(pixels_to_crs(np.array([g for _, g, _ in rows], dtype=object), grid), crs=grid.crs),
        crs=grid.crs,
    )
    local = measure(frame, simplify_m=simplify_m, min_area_m2=min_area_m2)
    if len(local) == 0:
        return _empty_entities()
    return local.to_crs("EPSG:4326")[["area_m2", "chip_id", "reasoning", "geometry"]].reset_index(drop=True)


def _touching_groups(parts) -> list[np.ndarray]:
    """Indexes of ``parts`` grouped into connected sets of touching or overlapping polygons."""
    import shapely

    n = len(parts)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    left, right = shapely.STRtree(parts).query(parts, predicate="intersects")
    for a, b in zip(left.tolist(), right.tolist()):
        if a < b:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(i) for i in range(n)], dtype=np.int64)
    order = np.argsort(roots, kind="stable")
    starts = np.flatnonzero(np.r_[True, roots[order][1:] != roots[order][:-1]])
    return np.split(order, starts[1:])


def _first_pixel(geometry) -> tuple[int, int]:
    """(row, col) of the entity's first pixel in raster order: its top row, leftmost there."""
    import shapely

    minx, top, maxx, _ = geometry.bounds
    first_row = shapely.intersection(geometry, shapely.box(minx, top, maxx, top + 1))
    return int(round(top)), int(round(first_row.bounds[0]))


def _combined(members: list[int], ids: list[str], reasoning: list[str]) -> str:
    if len(members) == 1:
        return reasoning[members[0]]
    return "\n\n".join(f"[{ids[i]}] {reasoning[i]}" for i in members)


def _empty_entities():
    from .vectorize import empty_frame

    return empty_frame("EPSG:4326", columns=["area_m2", "chip_id", "reasoning", "geometry"])


__all__ = ["RESULT_COLUMNS", "chip_polygons", "crs_to_pixels", "empty_result", "merge_entities", "pixels_to_crs"]
