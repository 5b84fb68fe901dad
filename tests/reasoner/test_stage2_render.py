import numpy as np

from sociogeo.reasoner.render import MASK_RGBA, render_stage2


def test_render_overlay_and_boxes():
    img = np.full((756, 756, 3), 200, np.uint8)
    mask = np.zeros((756, 756), bool)
    mask[100:200, 300:400] = True
    out = render_stage2(img, mask, [(10, 20, 110, 220)])
    assert out.shape == img.shape and out.dtype == np.uint8
    # inside the mask: alpha blend of red over grey, 102/255
    a = MASK_RGBA[3] / 255
    expected = np.round(np.array([255, 0, 0]) * a + 200 * (1 - a))
    np.testing.assert_allclose(out[150, 350], expected, atol=1)
    # the box outline is blue, 2 px wide, and the interior untouched
    assert tuple(out[20, 50]) == (0, 0, 255) and tuple(out[21, 50]) == (0, 0, 255)
    assert tuple(out[22, 50]) == (200, 200, 200)
    assert tuple(out[120, 10]) == (0, 0, 255)
    # elsewhere unchanged
    assert tuple(out[700, 700]) == (200, 200, 200)


def test_mask_drawn_over_boxes_and_resized():
    img = np.zeros((56, 56, 3), np.uint8)
    mask = np.ones((28, 28), bool)  # resized with nearest neighbour to the image
    out = render_stage2(img, mask, [(0, 0, 55, 55)])
    # box pixels are blue then covered by the red overlay (release order: boxes, then mask)
    a = MASK_RGBA[3] / 255
    np.testing.assert_allclose(out[0, 10], [255 * a, 0, 255 * (1 - a)], atol=1)
    np.testing.assert_allclose(out[30, 30], [255 * a, 0, 0], atol=1)


def test_no_boxes_empty_mask_is_identity():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    out = render_stage2(img, np.zeros((40, 60), bool), [])
    np.testing.assert_array_equal(out, img)
