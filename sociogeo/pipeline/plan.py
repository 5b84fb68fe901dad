"""Which chips cover an area: a light plan (windows only, no pixels) that engines share."""

from __future__ import annotations

from dataclasses import dataclass

from ..geo.grid import PixelGrid
from ..imagery.chips import Window, chip_windows


@dataclass(frozen=True)
class ChipTask:
    """One chip of an area: its position in the chip grid and its window in the area's pixels.

    ``window`` may run past the area's right or bottom edge (the chip is then padded); the part
    inside the area is :meth:`inner`.
    """

    row: int
    col: int
    window: Window

    @property
    def chip_id(self) -> str:
        """``"r<row>_c<col>"``: the chip's name in results (``chip_id`` column)."""
        return f"r{self.row}_c{self.col}"

    def grid(self, area_grid: PixelGrid) -> PixelGrid:
        """The chip's own pixel grid: a window of the area's grid (georeferenced)."""
        w = self.window
        return area_grid.window(w.col_off, w.row_off, w.width, w.height)

    def inner(self, area_grid: PixelGrid) -> Window:
        """The part of the chip inside the area, in the area's pixels."""
        w = self.window
        return Window(w.col_off, w.row_off, min(w.width, area_grid.width - w.col_off),
                      min(w.height, area_grid.height - w.row_off))

    def as_dict(self) -> dict:
        """Plain values (for Ray and for the result store)."""
        w = self.window
        return {"chip_id": self.chip_id, "row": self.row, "col": self.col, "col_off": w.col_off,
                "row_off": w.row_off, "width": w.width, "height": w.height}

    @classmethod
    def from_dict(cls, d) -> ChipTask:
        """The task :meth:`as_dict` described."""
        return cls(int(d["row"]), int(d["col"]),
                   Window(int(d["col_off"]), int(d["row_off"]), int(d["width"]), int(d["height"])))


def plan_chips(grid: PixelGrid, size: int, overlap: int = 0) -> list[ChipTask]:
    """The chips of ``size`` pixels (stepping by ``size - overlap``) covering ``grid``, row-major."""
    return [ChipTask(r, c, w) for r, c, w in chip_windows(grid.width, grid.height, size, overlap)]


__all__ = ["ChipTask", "plan_chips"]
