"""Cutting an image pair into model-sized chips that cover the area completely.

Chips are windows of the pair's pixel grid. A chip that runs past the area's edge is padded with
zeros and its ``valid`` mask marks the padding (and any pixels whose tiles could not be fetched),
so later steps can ignore them. Each chip keeps its own georeferencing: the padded part is still
a correct window of the global Web-Mercator pixel raster.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .. import defaults
from ..geo import modelspace
from ..geo.grid import PixelGrid
from .arrays import as_rgb

DEFAULT_CHIP_SIZE = defaults.CHIP_SIZE  # SocioSeg's image size


class Window(NamedTuple):
    """A rectangle of pixels: offsets and size in the parent grid's pixel coordinates."""

    col_off: int
    row_off: int
    width: int
    height: int


@dataclass
class Chip:
    """One model-sized piece of an image pair.

    ``satellite`` and ``map`` are ``size x size x 3`` uint8 arrays; ``valid`` is ``size x size`` bool
    (False for padding and nodata). ``window`` is the chip's full extent in the pair's pixel grid
    (it can extend past the grid's right/bottom edge, by ``pad`` pixels).
    """

    satellite: np.ndarray
    map: np.ndarray
    valid: np.ndarray
    grid: PixelGrid
    window: Window
    row: int
    col: int
    pad: tuple[int, int] = (0, 0)  # (rows of padding at the bottom, columns at the right)
    attrs: dict = field(default_factory=dict)

    @property
    def chip_id(self) -> str:
        """The chip's name from its place in the chip layout: ``"r<row>_c<col>"``."""
        return f"r{self.row}_c{self.col}"

    @property
    def transform(self):
        """Affine transform from chip pixels to EPSG:3857 metres."""
        return self.grid.transform

    @property
    def crs(self) -> str:
        """The CRS of :attr:`transform`: ``"EPSG:3857"``."""
        return self.grid.crs

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return self.satellite.shape[:2]

    @property
    def padded(self) -> bool:
        """Whether the chip runs past the grid's edge and is zero-padded there."""
        return self.pad != (0, 0)

    # -- coordinate conversions ------------------------------------------------------------------
    def pixel_to_crs(self, xy) -> np.ndarray:
        """Chip pixel coordinates (x=col, y=row; continuous, corner-based) to EPSG:3857 metres."""
        return modelspace.pixel_to_crs(xy, self.transform)

    def crs_to_pixel(self, xy) -> np.ndarray:
        """EPSG:3857 metres to chip pixel coordinates (x=col, y=row; continuous, corner-based)."""
        return modelspace.crs_to_pixel(xy, self.transform)

    def pixel_to_lonlat(self, xy) -> np.ndarray:
        """Chip pixel coordinates (x=col, y=row) to (longitude, latitude) in degrees."""
        from ..geo.grid import mercator_to_lonlat

        xy_m = self.pixel_to_crs(xy)
        lon, lat = mercator_to_lonlat(xy_m[..., 0], xy_m[..., 1])
        return np.stack([lon, lat], axis=-1)

    def model_to_pixel(self, xy) -> np.ndarray:
        """Model-space coordinates (756 px for a 768 chip) to chip pixels."""
        return modelspace.model_to_chip(xy, self.size)

    def pixel_to_model(self, xy) -> np.ndarray:
        """Chip pixels to model-space coordinates (756 px for a 768 chip)."""
        return modelspace.chip_to_model(xy, self.size)

    def model_to_lonlat(self, xy) -> np.ndarray:
        """Model-space coordinates to (longitude, latitude) in degrees."""
        return self.pixel_to_lonlat(self.model_to_pixel(xy))


def chip_windows(
    width: int, height: int, size: int = DEFAULT_CHIP_SIZE, overlap: int = 0
) -> list[tuple[int, int, Window]]:
    """(row, col, window) of the chips covering a ``width`` x ``height`` grid.

    Chips step by ``size - overlap`` pixels; the last row/column of chips may run past the edge.
    """
    if size <= 0:
        raise ValueError(f"chip size must be positive, got {size}")
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, size), got overlap={overlap} with size={size}")
    step = size - overlap

    def count(extent: int) -> int:
        return 1 if extent <= size else math.ceil((extent - size) / step) + 1

    out = []
    for r in range(count(height)):
        for c in range(count(width)):
            out.append((r, c, Window(c * step, r * step, size, size)))
    return out


def _cut(image: np.ndarray, win: Window) -> np.ndarray:
    """The window of ``image`` (H x W [x C]), zero-padded where it runs past the edge."""
    h, w = image.shape[:2]
    out = np.zeros((win.height, win.width) + image.shape[2:], dtype=image.dtype)
    r1, c1 = min(win.row_off + win.height, h), min(win.col_off + win.width, w)
    out[: r1 - win.row_off, : c1 - win.col_off] = image[win.row_off : r1, win.col_off : c1]
    return out


def iter_chips(pair, size: int = DEFAULT_CHIP_SIZE, overlap: int = 0) -> Iterator[Chip]:
    """Chips of ``size`` x ``size`` pixels covering ``pair`` (an :class:`~sociogeo.imagery.ImagePair`).

    Row-major order. Edge chips are zero-padded; ``chip.valid`` marks real pixels.
    """
    grid: PixelGrid = pair.grid
    sat = as_rgb(pair.satellite, "satellite")
    mp = as_rgb(pair.map, "map")
    if sat.shape[:2] != grid.shape or mp.shape[:2] != grid.shape:
        raise ValueError(
            f"satellite {sat.shape[:2]} and map {mp.shape[:2]} must both match the grid {grid.shape}"
        )
    valid_full = getattr(pair, "valid", None)
    valid_full = np.ones(grid.shape, bool) if valid_full is None else np.asarray(valid_full, bool)
    for r, c, win in chip_windows(grid.width, grid.height, size, overlap):
        valid = _cut(valid_full, win)
        pad = (max(0, win.row_off + win.height - grid.height), max(0, win.col_off + win.width - grid.width))
        yield Chip(
            satellite=_cut(sat, win),
            map=_cut(mp, win),
            valid=valid,
            grid=grid.window(win.col_off, win.row_off, win.width, win.height),
            window=win,
            row=r,
            col=c,
            pad=pad,
        )


def chip_from_arrays(satellite: np.ndarray, map: np.ndarray, *, grid: PixelGrid | None = None) -> Chip:
    """A single chip from two H x W x 3 arrays (e.g. one SocioSeg sample), optionally georeferenced.

    Without ``grid`` the chip gets a placeholder grid at zoom 0 (pixel coordinates only).
    """
    satellite = as_rgb(satellite, "satellite")
    map = as_rgb(map, "map")
    if satellite.shape != map.shape:
        raise ValueError(f"satellite {satellite.shape} and map {map.shape} must have the same shape")
    h, w = satellite.shape[:2]
    if grid is None:
        grid = PixelGrid(zoom=0, col_off=0, row_off=0, width=w, height=h)
    return Chip(satellite, map, np.ones((h, w), bool), grid, Window(0, 0, w, h), 0, 0)
