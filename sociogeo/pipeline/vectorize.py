"""Masks to polygons: binary or instance masks become a GeoDataFrame."""

from __future__ import annotations

import numpy as np

COLUMNS = ["label", "area_m2", "geometry"]


def empty_frame(crs="EPSG:4326", columns=COLUMNS):
    """An empty GeoDataFrame with the given columns and CRS (what every empty result looks like)."""
    import geopandas as gpd
    import pandas as pd

    data = {c: pd.Series(dtype="float64" if c == "area_m2" else "int64" if c == "label" else "object")
            for c in columns if c != "geometry"}
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs=crs), crs=crs)


def vectorize(
    mask,
    transform,
    crs,
    *,
    to_crs="EPSG:4326",
    simplify_m: float | None = None,
    min_area_m2: float = 0.0,
    connectivity: int = 8,
):
    """Polygons of a mask, georeferenced.

    Parameters
    ----------
    mask : H x W array
        bool or 0/1 (binary: one row per connected component), or integer labels (instance: one
        row per label, a MultiPolygon when a label is split). 0 is background.
    transform : affine.Affine
        Pixel-to-CRS transform of the mask (e.g. ``chip.transform``).
    crs : the mask's CRS (e.g. "EPSG:3857").
    to_crs : output CRS (default EPSG:4326, lon/lat).
    simplify_m : Douglas-Peucker tolerance in metres (applied in a local UTM CRS), or None.
    min_area_m2 : drop polygons smaller than this, in square metres.
    connectivity : 4 or 8 (diagonal neighbours join a component).

    Returns
    -------
    GeoDataFrame with columns ``label``, ``area_m2`` (computed in a local UTM CRS) and
    ``geometry``; holes are kept. An empty mask gives an empty frame with the same columns and CRS.
    """
    import geopandas as gpd
    from rasterio import features
    from shapely import make_valid
    from shapely.geometry import shape

    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be 2-D (H x W), got shape {arr.shape}")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    if arr.dtype == bool:
        labels = arr.astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.integer):
        if arr.min(initial=0) < 0:
            raise ValueError("instance labels must be non-negative (0 is background)")
        labels = arr.astype(np.int32) if arr.max(initial=0) > 255 else arr.astype(np.uint8)
    else:
        raise ValueError(f"mask must be bool or integer, got {arr.dtype}")
    binary = labels.max(initial=0) <= 1
    if not labels.any():
        return empty_frame(to_crs)

    rows = []
    for geom, value in features.shapes(labels, mask=labels > 0, transform=transform, connectivity=connectivity):
        poly = shape(geom)
        if not poly.is_valid:
            poly = make_valid(poly)
        rows.append((int(value), poly))
    frame = gpd.GeoDataFrame({"label": [v for v, _ in rows]}, geometry=[g for _, g in rows], crs=crs)
    if not binary:
        frame = frame.dissolve(by="label", as_index=False)

    local = measure(frame, simplify_m=simplify_m, min_area_m2=min_area_m2)
    if len(local) == 0:
        return empty_frame(to_crs)
    out = local.to_crs(to_crs)[COLUMNS]
    if binary:
        # connected components of a binary mask are numbered 1..n (largest first)
        out = out.sort_values("area_m2", ascending=False, ignore_index=True)
        out["label"] = np.arange(1, len(out) + 1)
    return out.reset_index(drop=True)


def measure(frame, *, simplify_m: float | None = None, min_area_m2: float = 0.0):
    """``frame`` in its local UTM CRS with ``area_m2`` (square metres), simplified with tolerance
    ``simplify_m`` metres first if given, without polygons smaller than ``min_area_m2``.
    """
    metric = frame.estimate_utm_crs()
    local = frame.to_crs(metric)
    if simplify_m:
        local["geometry"] = local.geometry.simplify(simplify_m, preserve_topology=True)
        local = local[~local.geometry.is_empty]
    local["area_m2"] = local.geometry.area
    if min_area_m2:
        local = local[local["area_m2"] >= min_area_m2]
    return local
