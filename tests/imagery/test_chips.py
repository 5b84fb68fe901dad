from types import SimpleNamespace

import numpy as np
import pytest

from sociogeo.geo.grid import PixelGrid
from sociogeo.imagery.chips import Chip, chip_from_arrays, chip_windows, iter_chips


def _pair(width, height, zoom=17):
    grid = PixelGrid(zoom=zoom, col_off=19101606, row_off=9712048, width=width, height=height)
    rows, cols = np.mgrid[0:height, 0:width]
    # encode each pixel's position so chips can be checked against their windows
    sat = np.stack([rows % 251, cols % 251, (rows + cols) % 7], axis=0).astype(np.uint8)
    mp = 255 - sat
    valid = np.ones((height, width), bool)
    valid[:5, :5] = False  # a missing tile corner
    return SimpleNamespace(grid=grid, satellite=sat, map=mp, valid=valid)


@pytest.mark.parametrize(
    "width,height,size,overlap",
    [(1119, 1125, 768, 0), (768, 768, 768, 0), (500, 300, 768, 0), (2000, 900, 768, 128)],
)
def test_chips_cover_the_area_completely(width, height, size, overlap):
    pair = _pair(width, height)
    chips = list(iter_chips(pair, size=size, overlap=overlap))
    covered = np.zeros((height, width), int)
    for chip in chips:
        assert chip.satellite.shape == (size, size, 3) and chip.map.shape == (size, size, 3)
        assert chip.satellite.dtype == np.uint8
        w = chip.window
        r1, c1 = min(w.row_off + size, height), min(w.col_off + size, width)
        covered[w.row_off:r1, w.col_off:c1] += 1
        # pixel content matches the source window, padding is zero and marked invalid
        src = np.moveaxis(pair.satellite, 0, -1)[w.row_off:r1, w.col_off:c1]
        np.testing.assert_array_equal(chip.satellite[: r1 - w.row_off, : c1 - w.col_off], src)
        assert chip.pad == (w.row_off + size - r1, w.col_off + size - c1)
        assert not chip.valid[r1 - w.row_off:, :].any() and not chip.valid[:, c1 - w.col_off:].any()
        assert chip.satellite[r1 - w.row_off:, :].sum() == 0
        # chip grid is a window of the pair grid: same zoom, shifted origin
        assert chip.grid.zoom == pair.grid.zoom
        assert chip.transform.c == pytest.approx(pair.grid.transform.c + w.col_off * pair.grid.resolution)
        assert chip.transform.f == pytest.approx(pair.grid.transform.f - w.row_off * pair.grid.resolution)
    assert (covered >= 1).all()
    if overlap == 0:
        assert (covered == 1).all()
    assert not chips[0].valid[:5, :5].any()  # nodata carried into valid
    assert len({c.chip_id for c in chips}) == len(chips)


def test_chip_windows_validation():
    with pytest.raises(ValueError):
        chip_windows(100, 100, size=0)
    with pytest.raises(ValueError):
        chip_windows(100, 100, size=64, overlap=64)
    assert len(chip_windows(768 * 2, 768, 768)) == 2
    assert len(chip_windows(768 * 2 + 1, 768, 768)) == 3


def test_chip_coordinate_conversions_agree():
    pair = _pair(800, 800)
    chip = next(iter_chips(pair))
    # the model's 756 space spans the same extent as the 768-pixel chip
    corners_model = np.array([[0, 0], [756, 756]])
    np.testing.assert_allclose(chip.model_to_pixel(corners_model), [[0, 0], [768, 768]])
    np.testing.assert_allclose(chip.pixel_to_model(chip.model_to_pixel([[123.4, 567.8]])), [[123.4, 567.8]])
    xy = chip.pixel_to_crs([[0, 0], [768, 768]])
    b = chip.grid.bounds
    np.testing.assert_allclose(xy, [[b[0], b[3]], [b[2], b[1]]])
    np.testing.assert_allclose(chip.crs_to_pixel(xy), [[0, 0], [768, 768]], atol=1e-6)
    lonlat = chip.model_to_lonlat([[0, 0]])[0]
    w, s, e, n = chip.grid.lonlat_bounds
    assert lonlat == pytest.approx((w, n))


def test_chip_from_arrays():
    sat = np.zeros((768, 768, 3), np.uint8)
    chip = chip_from_arrays(sat, sat.copy())
    assert isinstance(chip, Chip) and chip.valid.all() and chip.size == (768, 768)
    with pytest.raises(ValueError):
        chip_from_arrays(sat, np.zeros((10, 10, 3), np.uint8))
