
import numpy as np
import pytest
from pyproj import Transformer

from sociogeo.geo.grid import (
    ORIGIN_SHIFT_M,
    PixelGrid,
    ground_resolution,
    lonlat_to_mercator,
    lonlat_to_pixel,
    mercator_resolution,
    mercator_to_lonlat,
    zoom_for_resolution,
)


def test_mercator_matches_pyproj():
    tr = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    lon = np.array([-122.4194, 24.9384, 116.3974, 0.0, -179.9])
    lat = np.array([37.7749, 60.1699, 39.9093, 0.0, -85.0])
    x, y = lonlat_to_mercator(lon, lat)
    ex, ey = tr.transform(lon, lat)
    np.testing.assert_allclose(x, ex, atol=1e-6)
    np.testing.assert_allclose(y, ey, atol=1e-6)
    lon2, lat2 = mercator_to_lonlat(x, y)
    np.testing.assert_allclose(lon2, lon, atol=1e-9)
    np.testing.assert_allclose(lat2, lat, atol=1e-9)


def test_resolution_and_zoom_choice():
    assert mercator_resolution(0) == pytest.approx(2 * ORIGIN_SHIFT_M / 256)
    assert mercator_resolution(17) == pytest.approx(1.1943, abs=1e-4)
    lat = 60.17
    z = zoom_for_resolution(0.6, lat)
    assert ground_resolution(z, lat) <= 0.6 < ground_resolution(z - 1, lat)
    with pytest.raises(ValueError):
        zoom_for_resolution(0, lat)


def test_grid_from_bounds_covers_the_box_and_snaps_to_pixels():
    w, s, e, n = 24.938, 60.166, 24.950, 60.172
    g = PixelGrid.from_lonlat_bounds(w, s, e, n, zoom=17)
    gw, gs, ge, gn = g.lonlat_bounds
    assert gw <= w and gs <= s and ge >= e and gn >= n
    # no more than one pixel of slack on each side
    res_deg_x = (ge - gw) / g.width
    assert w - gw < res_deg_x and ge - e < res_deg_x
    # the transform's origin is a whole number of pixels from the world's corner
    t = g.transform
    assert (t.c + ORIGIN_SHIFT_M) / t.a == pytest.approx(g.col_off)
    assert (ORIGIN_SHIFT_M - t.f) / -t.e == pytest.approx(g.row_off)


def test_tiles_and_placement_cover_the_grid_exactly():
    g = PixelGrid(zoom=5, col_off=300, row_off=200, width=600, height=100)
    covered = np.zeros(g.shape, int)
    for _z, x, y in g.tiles():
        tr, tc, gr, gc = g.tile_placement(x, y)
        assert (tr.stop - tr.start, tc.stop - tc.start) == (gr.stop - gr.start, gc.stop - gc.start)
        covered[gr, gc] += 1
    assert (covered == 1).all()
    assert g.n_tiles() == len(range(300 // 256, (899 // 256) + 1)) * len(range(200 // 256, 299 // 256 + 1))


def test_pixel_round_trip_and_centres():
    g = PixelGrid(zoom=17, col_off=19101606, row_off=9712048, width=100, height=80)
    x, y = g.xy(10.5, 20.5)
    col, row = g.rowcol(x, y)
    assert (float(col), float(row)) == pytest.approx((10.5, 20.5))
    lon, lat = mercator_to_lonlat(x, y)
    px, py = lonlat_to_pixel(lon, lat, 17)
    assert (float(px) - g.col_off, float(py) - g.row_off) == pytest.approx((10.5, 20.5), abs=1e-6)
    assert g.transform @ (10.5, 20.5) == pytest.approx((float(x), float(y)))


def test_invalid_grids():
    with pytest.raises(ValueError):
        PixelGrid(zoom=3, col_off=0, row_off=0, width=0, height=10)
    with pytest.raises(ValueError):
        PixelGrid(zoom=30, col_off=0, row_off=0, width=1, height=1)
