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


# --- OpenCV's nearest neighbour, without OpenCV -------------------------------------------------

_SIZES = [(756, 768), (768, 756), (100, 37), (37, 100), (1000, 999), (1, 5), (5, 1)]


@pytest.mark.parametrize("src,dst", _SIZES + [tuple(s) for s in np.random.default_rng(3).integers(1, 1500, (60, 2))])
def test_nearest_indices_equal_opencv_inter_nearest(src, dst):
    cv2 = pytest.importorskip("cv2")
    ramp = np.arange(src, dtype=np.int32)[None, :].repeat(2, axis=0)
    expected = cv2.resize(ramp.astype(np.float32), (int(dst), 2), interpolation=cv2.INTER_NEAREST)[0]
    np.testing.assert_array_equal(ms.nearest_indices(int(src), int(dst)), expected.astype(int))


@pytest.mark.parametrize("shape,size", [((756, 756), (768, 768)), ((768, 768), (756, 756)), ((240, 320), (97, 411))])
def test_resize_nearest_equals_cv2_on_masks_and_images(shape, size):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    mask = rng.random(shape) < 0.5
    expected = cv2.resize(mask.astype(np.uint8), size[::-1], interpolation=cv2.INTER_NEAREST)
    got = ms.resize_nearest(mask, size)
    assert got.dtype == bool and got.shape == size
    np.testing.assert_array_equal(got, expected.astype(bool))
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    np.testing.assert_array_equal(ms.resize_nearest(image, size),
                                  cv2.resize(image, size[::-1], interpolation=cv2.INTER_NEAREST))


def test_opencv_nearest_is_not_pils_centre_aligned_nearest():
    # 756 -> 768: OpenCV takes source column floor(x * 756 / 768); PIL the centre-aligned one
    indices = ms.nearest_indices(756, 768)
    assert indices[:66].tolist() == [x * 756 // 768 for x in range(66)]
    centre = np.floor((np.arange(768) + 0.5) * 756 / 768).astype(int)
    assert int((indices != centre).sum()) == 372
    # the round trip 756 -> 768 -> 756 moves most rows and columns by one pixel
    trip = ms.nearest_indices(756, 768)[ms.nearest_indices(768, 756)]
    assert int((trip != np.arange(756)).sum()) > 756 // 2
    with pytest.raises(ValueError):
        ms.nearest_indices(0, 5)
