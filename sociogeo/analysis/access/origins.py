"""Origins for accessibility: OSM buildings of an area, or a hexagon grid covering it."""

from __future__ import annotations

import math

import numpy as np

from ...errors import ConfigError
from .network import area_geometry, lonlat_bounds


def buildings(area_or_bounds, *, source=None):
    """OSM buildings of an area as origins: one row per building.

    ``geometry`` is the footprint's representative point (always inside it) in EPSG:4326;
    ``footprint`` keeps the polygon (a second geometry column, used by :func:`plot_access`).
    Columns: ``osmid``, ``building``, ``name``, ``footprint``, ``geometry``. Buildings whose
    point lies outside the area are left out.
    """
    import geopandas as gpd
    import shapely

    from ...osm.data import load_features

    geometry, crs = area_geometry(area_or_bounds)
    area = gpd.GeoSeries([geometry], crs=crs).to_crs("EPSG:4326").iloc[0]
    feats = load_features(lonlat_bounds(area_or_bounds), {"building": True}, source=source)
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
    geometry, crs = area_geometry(area_or_bounds)
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
