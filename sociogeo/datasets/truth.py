"""Ground-truth boxes of a mask, exactly as the release derives them for its rewards.

OpenCV's ``findContours(RETR_EXTERNAL)`` + ``contourArea`` + ``boundingRect``, reproduced in numpy
(a test checks it against OpenCV on thousands of random masks), so datasets, SFT targets and
rewards share one definition without depending on OpenCV.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._optional import require
from ..imagery.arrays import as_mask

#: Ground-truth contours must enclose more than this many square pixels (cv2.contourArea units).
MIN_CONTOUR_AREA = 10.0


# The 8 neighbours, counterclockwise as seen on screen (rows grow downwards), starting east.
_RING = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))
_RING_INDEX = {step: k for k, step in enumerate(_RING)}


def _trace_outer_border(img: np.ndarray, start: tuple[int, int]) -> list[tuple[int, int]]:
    """Suzuki-Abe outer border following from ``start``, the component's first pixel in raster
    order; returns the border pixels (row, col) in tracing order, as cv2's CHAIN_APPROX_NONE would.

    ``img`` is a bool array padded with a zero frame, so neighbours never leave it.
    """
    r0, c0 = start
    # 3.1: clockwise from the west neighbour (background by construction) to the first pixel set.
    west = _RING_INDEX[(0, -1)]
    first = None
    for k in range(1, 8):
        dr, dc = _RING[(west - k) % 8]
        if img[r0 + dr, c0 + dc]:
            first = (r0 + dr, c0 + dc)
            break
    if first is None:  # an isolated pixel is a one-point contour
        return [start]
    points = [start]
    prev, cur = first, start
    while True:
        # 3.3: counterclockwise around `cur`, starting just after the pixel we came from.
        k0 = _RING_INDEX[(prev[0] - cur[0], prev[1] - cur[1])]
        for k in range(1, 9):
            dr, dc = _RING[(k0 + k) % 8]
            if img[cur[0] + dr, cur[1] + dc]:
                nxt = (cur[0] + dr, cur[1] + dc)
                break
        if nxt == start and cur == first:
            return points
        prev, cur = cur, nxt
        points.append(cur)


def _polygon_area(points: Sequence[tuple[int, int]]) -> float:
    """Unsigned shoelace area of a closed polygon of pixel centres (square pixels)."""
    if len(points) < 3:
        return 0.0
    pts = np.asarray(points, dtype=np.float64)
    y, x = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def gt_boxes(mask: Any) -> list[list[int]]:
    """Ground-truth boxes ``[x1, y1, x2, y2]`` (pixels, x2/y2 exclusive) of a mask, as released.

    Reproduces ``cv2.findContours(mask, RETR_EXTERNAL, CHAIN_APPROX_SIMPLE)`` followed by
    ``cv2.contourArea(c) > 10`` and ``x, y, w, h = cv2.boundingRect(c)`` -> ``[x, y, x + w, y + h]``,
    without OpenCV:

    - foreground components are 8-connected; only outermost ones count (a component lying in a
      hole of another, like an island inside a ring, has no external contour);
    - a contour's area is the polygon area through the centres of its boundary pixels, so a filled
      w x h block has area (w - 1) * (h - 1): a 3 x 3 block (area 4) is dropped, 4 x 5 (12) kept;
    - boxes come in OpenCV's order: by the contour's first pixel (topmost, then leftmost) in
      reverse raster order, i.e. bottom-most first.

    Args:
        mask: H x W array; any nonzero pixel is foreground.
    """
    require("scipy", purpose="ground-truth boxes and Hungarian matching in rewards")
    from scipy import ndimage

    fg = np.pad(as_mask(mask), 1)  # cv2 also treats everything outside the image as background
    labels, n = ndimage.label(fg, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return []
    # Background is 4-connected; its component touching the frame is "outside everything".
    background, _ = ndimage.label(~fg)
    outside = background == background[0, 0]
    touches_outside = ndimage.binary_dilation(outside) & fg
    external = np.zeros(n + 1, dtype=bool)
    external[np.unique(labels[touches_outside])] = True

    boxes = []
    for index, window in enumerate(ndimage.find_objects(labels), start=1):
        if not external[index]:
            continue
        rows, cols = window
        h, w = rows.stop - rows.start, cols.stop - cols.start
        # The polygon lies inside the (w-1) x (h-1) box of centres: skip tracing hopeless specks.
        if (w - 1) * (h - 1) <= MIN_CONTOUR_AREA:
            continue
        top = labels[rows.start, cols] == index
        start = (rows.start, cols.start + int(np.argmax(top)))
        if _polygon_area(_trace_outer_border(fg, start)) > MIN_CONTOUR_AREA:
            # -1 undoes the padding; the bounding rect of the border is the component's box.
            boxes.append((start, [cols.start - 1, rows.start - 1, cols.stop - 1, rows.stop - 1]))
    boxes.sort(key=lambda item: item[0], reverse=True)
    return [box for _, box in boxes]


__all__ = ["MIN_CONTOUR_AREA", "gt_boxes"]
