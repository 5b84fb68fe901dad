import numpy as np
import pytest
from affine import Affine

from sociogeo.geo import modelspace as ms


@pytest.mark.parametrize(
    "h,w,expected", [(768, 768, (756, 756)), (1024, 1024, (756, 756)), (28, 28, (56, 56)), (500, 300, (504, 308))]
)
def test_smart_resize(h, w, expected):
    out = ms.smart_resize(h, w)
    assert out == expected
    assert out[0] % 28 == 0 and out[1] % 28 == 0
    assert 56 * 56 <= out[0] * out[1] <= 768 * 768


def test_smart_resize_rejects_bad_input():
    with pytest.raises(ValueError):
        ms.smart_resize(0, 10)
    with pytest.raises(ValueError):
        ms.smart_resize(10, 3000)


def test_scaling_round_trip_and_edges():
    pts = np.array([[0.0, 0.0], [756.0, 756.0], [378.0, 100.0]])
    chip = ms.model_to_chip(pts, (768, 768))
    np.testing.assert_allclose(chip[1], [768, 768])
    np.testing.assert_allclose(ms.chip_to_model(chip, (768, 768)), pts)


def test_pixel_crs_round_trip():
    t = Affine(2.0, 0, 1000.0, 0, -2.0, 5000.0)
    xy = ms.pixel_to_crs([[0, 0], [10, 5]], t)
    np.testing.assert_allclose(xy, [[1000, 5000], [1020, 4990]])
    np.testing.assert_allclose(ms.crs_to_pixel(xy, t), [[0, 0], [10, 5]])


def test_resize_image_and_mask():
    img = np.random.default_rng(0).integers(0, 255, (768, 768, 3), dtype=np.uint8)
    assert ms.resize_image(img, (756, 756)).shape == (756, 756, 3)
    m = np.zeros((756, 756), bool)
    m[:378] = True
    back = ms.resize_image(m, (768, 768))
    assert back.dtype == bool and back.shape == (768, 768)
    assert back[:380].all() and not back[390:].any()
