"""Stage-2 rendering: the stage-1 result drawn onto the images the VLM sees again (docs/interface.md, stage 2).

The released pipeline first draws every stage-1 box as a blue outline (width 2), then
alpha-composites the stage-1 mask as a red overlay, RGBA (255, 0, 0, 102), on top. The same
rendering is applied to the map and to the satellite image. A mask of another size (the release
hands over the chip-size mask) is resized to the image with OpenCV-style nearest neighbour.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

MASK_RGBA = (255, 0, 0, int(255 * 0.4))  # alpha 102
BOX_COLOUR = "blue"
BOX_WIDTH = 2


def render_stage2(image: np.ndarray, mask: np.ndarray, boxes: Iterable[Sequence[float]]) -> np.ndarray:
    """Draw ``boxes`` (x1, y1, x2, y2 in the image's pixels) and the mask overlay on ``image``.

    ``image`` is H x W x 3 uint8; ``mask`` is bool, resized with OpenCV-style nearest neighbour
    (:func:`~sociogeo.geo.modelspace.resize_nearest`) if its size differs. Boxes are drawn as
    given, also past the image's edge; inverted ones are skipped (PIL refuses them, and the
    release skips them for that reason). Returns a new H x W x 3 uint8 array.
    """
    from PIL import Image, ImageDraw

    from ..geo.modelspace import resize_nearest

    height, width = image.shape[:2]
    canvas = Image.fromarray(np.ascontiguousarray(image[..., :3])).convert("RGBA")
    draw = ImageDraw.Draw(canvas)
    for box in boxes:
        x1, y1, x2, y2 = (float(v) for v in box)
        if x2 < x1 or y2 < y1:
            continue  # PIL refuses inverted rectangles
        draw.rectangle([(x1, y1), (x2, y2)], outline=BOX_COLOUR, width=BOX_WIDTH)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (height, width):
        mask = resize_nearest(mask, (height, width))
    overlay = np.zeros((height, width, 4), dtype=np.uint8)
    overlay[mask] = MASK_RGBA
    canvas = Image.alpha_composite(canvas, Image.fromarray(overlay, "RGBA"))
    return np.array(canvas.convert("RGB"))
