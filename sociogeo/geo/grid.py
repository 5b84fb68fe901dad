"""Web-Mercator (EPSG:3857) pixel grids aligned with the XYZ tile scheme.

A :class:`PixelGrid` is a window of the global pixel raster at one zoom level: at zoom ``z`` the
world is ``256 * 2**z`` pixels wide, pixel ``(0, 0)`` is the north-west corner at
(-20037508.34 m, 20037508.34 m). Because every grid is such a window, tiles paste into it
without resampling, and two images fetched for one grid line up pixel for pixel by construction.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

EARTH_RADIUS_M = 6378137.0
ORIGIN_SHIFT_M = math.pi * EARTH_RADIUS_M  # 20037508.342789244
MAX_LATITUDE = 85.0511287798066  # Web Mercator's square world
TILE_SIZE = 256
MAX_ZOOM = 24
CRS = "EPSG:3857"


def lonlat_to_mercator(lon, lat):
    """Longitude/latitude in degrees to EPSG:3857 metres (numpy-vectorised)."""
    lon = np.asarray(lon, dtype="float64")
    lat = np.clip(np.asarray(lat, dtype="float64"), -MAX_LATITUDE, MAX_LATITUDE)
    x = np.radians(lon) * EARTH_RADIUS_M
    y = np.log(np.tan(np.pi / 4 + np.radians(lat) / 2)) * EARTH_RADIUS_M
    return x, y


def mercator_to_lonlat(x, y):
    """EPSG:3857 metres to longitude/latitude in degrees (numpy-vectorised)."""
    x = np.asarray(x, dtype="float64")
    y = np.asarray(y, dtype="float64")
    lon = np.degrees(x / EARTH_RADIUS_M)
    lat = np.degrees(2 * np.arctan(np.exp(y / EARTH_RADIUS_M)) - np.pi / 2)
    return lon, lat


def mercator_resolution(zoom: int, tile_size: int = TILE_SIZE) -> float:
    """Size of one pixel in EPSG:3857 metres at ``zoom`` (equal to ground metres at the equator)."""
    return 2 * ORIGIN_SHIFT_M / (tile_size * 2**zoom)


def ground_resolution(zoom: int, lat: float, tile_size: int = TILE_SIZE) -> float:
    """Ground metres per pixel at latitude ``lat`` (degrees) and ``zoom``."""
    return mercator_resolution(zoom, tile_size) * math.cos(math.radians(lat))


def zoom_for_resolution(metres_per_pixel: float, lat: float, tile_size: int = TILE_SIZE) -> int:
    """The coarsest zoom whose ground resolution at ``lat`` is at least as fine as requested."""
    if not (metres_per_pixel > 0 and math.isfinite(metres_per_pixel)):
        raise ValueError(f"resolution must be a positive number of metres per pixel, got {metres_per_pixel!r}")
    equator = 2 * ORIGIN_SHIFT_M / tile_size * math.cos(math.radians(lat))
    zoom = math.ceil(math.log2(equator / metres_per_pixel) - 1e-9)
    return int(min(max(zoom, 0), MAX_ZOOM))


def lonlat_to_pixel(lon, lat, zoom: int, tile_size: int = TILE_SIZE):
    """Longitude/latitude to global (fractional) pixel coordinates at ``zoom``."""
    x, y = lonlat_to_mercator(lon, lat)
    res = mercator_resolution(zoom, tile_size)
    return (x + ORIGIN_SHIFT_M) / res, (ORIGIN_SHIFT_M - y) / res


@dataclass(frozen=True)
class PixelGrid:
    """A ``height`` x ``width`` window of the global pixel raster at ``zoom``.

    ``col_off``/``row_off`` are the global pixel indices of the window's top-left pixel.
    """

    zoom: int
    col_off: int
    row_off: int
    width: int
    height: int
    tile_size: int = TILE_SIZE

    def __post_init__(self):
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"grid must have positive width and height, got {self.width} x {self.height}")
        if not 0 <= self.zoom <= MAX_ZOOM:
            raise ValueError(f"zoom must be between 0 and {MAX_ZOOM}, got {self.zoom}")

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_lonlat_bounds(cls, west, south, east, north, zoom: int, tile_size: int = TILE_SIZE):
        """The smallest grid at ``zoom`` whose pixels cover the lon/lat box."""
        x0, y0 = lonlat_to_pixel(west, north, zoom, tile_size)
        x1, y1 = lonlat_to_pixel(east, south, zoom, tile_size)
        col0, row0 = math.floor(float(x0) + 1e-9), math.floor(float(y0) + 1e-9)
        col1, row1 = math.ceil(float(x1) - 1e-9), math.ceil(float(y1) - 1e-9)
        return cls(zoom, col0, row0, max(col1 - col0, 1), max(row1 - row0, 1), tile_size)

    # -- georeferencing ---------------------------------------------------------------------
    @property
    def resolution(self) -> float:
        """Pixel size in EPSG:3857 metres."""
        return mercator_resolution(self.zoom, self.tile_size)

    @property
    def crs(self) -> str:
        """The grid's CRS: always ``"EPSG:3857"`` (Web Mercator)."""
        return CRS

    @property
    def transform(self):
        """The affine transform from (col, row) pixel to EPSG:3857 metres (an ``affine.Affine``)."""
        from affine import Affine

        res = self.resolution
        return Affine(res, 0.0, -ORIGIN_SHIFT_M + self.col_off * res, 0.0, -res, ORIGIN_SHIFT_M - self.row_off * res)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels (NumPy's row, column order)."""
        return (self.height, self.width)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in EPSG:3857 metres."""
        res = self.resolution
        left = -ORIGIN_SHIFT_M + self.col_off * res
        top = ORIGIN_SHIFT_M - self.row_off * res
        return (left, top - self.height * res, left + self.width * res, top)

    @property
    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees."""
        left, bottom, right, top = self.bounds
        (w, e), (s, n) = mercator_to_lonlat([left, right], [bottom, top])
        return (float(w), float(s), float(e), float(n))

    def xy(self, col, row):
        """Pixel (col, row) to EPSG:3857 metres; integers give the pixel's corner, +0.5 its centre."""
        res = self.resolution
        col = np.asarray(col, dtype="float64")
        row = np.asarray(row, dtype="float64")
        return -ORIGIN_SHIFT_M + (self.col_off + col) * res, ORIGIN_SHIFT_M - (self.row_off + row) * res

    def rowcol(self, x, y):
        """EPSG:3857 metres to fractional (col, row) within this grid."""
        res = self.resolution
        x = np.asarray(x, dtype="float64")
        y = np.asarray(y, dtype="float64")
        return (x + ORIGIN_SHIFT_M) / res - self.col_off, (ORIGIN_SHIFT_M - y) / res - self.row_off

    # -- tiles ------------------------------------------------------------------------------
    def tiles(self) -> Iterator[tuple[int, int, int]]:
        """The (z, x, y) XYZ tiles that overlap this grid, row by row."""
        ts = self.tile_size
        n = 2**self.zoom
        for ty in range(self.row_off // ts, (self.row_off + self.height - 1) // ts + 1):
            if not 0 <= ty < n:
                continue
            for tx in range(self.col_off // ts, (self.col_off + self.width - 1) // ts + 1):
                yield (self.zoom, tx % n, ty)

    def tile_placement(self, x: int, y: int):
        """Where tile (x, y) lands: (tile slice rows, tile slice cols, grid slice rows, grid slice cols)."""
        ts = self.tile_size
        # a tile index can be wrapped across the antimeridian; pick the copy that overlaps
        n = 2**self.zoom
        tx0 = x * ts
        while tx0 + ts <= self.col_off:
            tx0 += n * ts
        ty0 = y * ts
        c0, c1 = max(tx0, self.col_off), min(tx0 + ts, self.col_off + self.width)
        r0, r1 = max(ty0, self.row_off), min(ty0 + ts, self.row_off + self.height)
        return (
            slice(r0 - ty0, r1 - ty0),
            slice(c0 - tx0, c1 - tx0),
            slice(r0 - self.row_off, r1 - self.row_off),
            slice(c0 - self.col_off, c1 - self.col_off),
        )

    def window(self, col: int, row: int, width: int, height: int) -> PixelGrid:
        """A sub-grid (it may extend beyond this grid, e.g. for padded edge chips)."""
        return PixelGrid(self.zoom, self.col_off + col, self.row_off + row, width, height, self.tile_size)

    def n_tiles(self) -> int:
        """Number of XYZ tiles that overlap this grid (see :meth:`tiles`)."""
        return sum(1 for _ in self.tiles())
