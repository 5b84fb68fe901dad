"""Chip masks back onto the area's grid: entities cut by chip borders become one polygon, each
with the chips it was found in and their reasoning.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..imagery.chips import Window

RESULT_COLUMNS = ["query", "area_m2", "chip_id", "reasoning", "geometry"]


def empty_result(crs="EPSG:4326"):
    """An empty result frame: the same columns and CRS as a non-empty one."""
    from .vectorize import empty_frame

    return empty_frame(crs, columns=RESULT_COLUMNS)


@dataclass
class ChipResult:
    """One chip's answer to one query: its window in the grid, the in-grid part of its mask and its reasoning."""

    chip_id: str
    window: Window
    mask: np.ndarray  # bool, the chip's in-grid part
    reasoning: str


def record(bucket: list, chip, mask: np.ndarray, reasoning: str, grid_shape) -> None:
    """Keep the part of a chip's mask that lies inside the area's grid."""
    w = chip.window
    h = min(w.height, grid_shape[0] - w.row_off)
    wd = min(w.width, grid_shape[1] - w.col_off)
    inner = mask[:h, :wd]
    if inner.any():
        bucket.append(ChipResult(chip.chip_id, Window(w.col_off, w.row_off, wd, h), inner, reasoning))


def polygons(chip_results: Iterable[ChipResult], grid, *, min_area_m2, simplify_m):
    """Mosaic chip masks on the grid, label connected entities, vectorise, attach chip ids and reasoning."""
    from scipy import ndimage

    from .vectorize import vectorize

    chip_results = list(chip_results)
    mosaic = np.zeros(grid.shape, dtype=bool)
    for r in chip_results:
        w = r.window
        mosaic[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width] |= r.mask
    if not mosaic.any():
        return empty_result()
    labels, _ = ndimage.label(mosaic, structure=np.ones((3, 3), bool))
    frame = vectorize(labels, grid.transform, grid.crs, min_area_m2=min_area_m2, simplify_m=simplify_m)
    if len(frame) == 0:
        return empty_result()
    contributors: dict[int, list[ChipResult]] = {}
    for r in chip_results:
        w = r.window
        for lab in np.unique(labels[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width][r.mask]):
            if lab:
                contributors.setdefault(int(lab), []).append(r)
    chip_ids, reasoning = [], []
    for lab in frame["label"]:
        rs = contributors.get(int(lab), [])
        chip_ids.append(",".join(r.chip_id for r in rs))
        if len(rs) == 1:
            reasoning.append(rs[0].reasoning)
        else:
            reasoning.append("\n\n".join(f"[{r.chip_id}] {r.reasoning}" for r in rs))
    frame["chip_id"] = chip_ids
    frame["reasoning"] = reasoning
    return frame.drop(columns="label")
