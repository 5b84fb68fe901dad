"""GeoTIFF files of the imagery grid: streamed writing (memory does not grow with the area),
cloud-optimised copies (:func:`to_cog`), reading back, and recognising the Web-Mercator tile grid
a raster lies on.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidAreaError
from ..geo.area import Area, grid_of
from ..geo.grid import CRS, ORIGIN_SHIFT_M, PixelGrid
from .providers import TileProvider
from .tiles import TileFailure, TileFetcher


@dataclass
class GeoTiffResult:
    """What :func:`write_geotiff` wrote: the file, the provider and the tiles it could not get."""

    path: Path
    provider: TileProvider
    grid: PixelGrid
    missing: list[TileFailure]
    valid_fraction: float


def write_geotiff(
    area_or_grid,
    provider,
    path,
    *,
    cache_dir=None,
    offline: bool | None = None,
    strip_rows: int | None = None,
    desc: str | None = None,
    layer: str = "",
    cog: bool = False,
    **fetcher_options,
) -> GeoTiffResult:
    """Fetch ``provider``'s tiles for an :class:`Area` or :class:`PixelGrid` straight into a
    GeoTIFF at ``path``, one row of tiles (or ``strip_rows`` pixel rows) at a time, so memory
    does not grow with the area.

    The file is tiled (256 px), deflate-compressed, EPSG:3857, with an internal validity mask and
    the provider's attribution in its tags; it appears under ``path`` only once complete.
    ``cog=True`` makes it a cloud-optimised GeoTIFF (:func:`to_cog`). ``fetcher_options`` go to
    :class:`~sociogeo.imagery.tiles.TileFetcher` (retries, timeout_s, ...).
    """
    grid = grid_of(area_or_grid)
    area = area_or_grid if isinstance(area_or_grid, Area) else None
    missing: dict[str, TileFailure] = {}
    n_valid = 0
    with TileFetcher(provider, cache_dir=cache_dir, offline=offline, **fetcher_options) as fetcher:
        tags = {"LAYER": layer, "PROVIDER": fetcher.provider.name, "ATTRIBUTION": fetcher.provider.attribution}
        with GeoTiffWriter(path, grid, tags=tags, area=area, cog=cog) as writer:
            for strip in fetcher.iter_strips(grid, strip_rows=strip_rows, desc=desc):
                writer.write(strip.grid.row_off - grid.row_off, strip.image, strip.valid)
                n_valid += int(strip.valid.sum())
                missing.update((f.tile, f) for f in strip.missing)
            writer.tags["MISSING_TILES"] = json.dumps([f.as_dict() for f in missing.values()])
    valid_fraction = n_valid / (grid.width * grid.height)
    return GeoTiffResult(writer.path, fetcher.provider, grid, list(missing.values()), valid_fraction)


def write_raster_geotiff(area_or_grid, raster, path, *, offline: bool | None = None, strip_rows: int = 1024,
                         layer: str = "satellite", cog: bool = False) -> GeoTiffResult:
    """Warp your own raster (:class:`~sociogeo.imagery.raster.RasterSource`) onto an Area's or
    PixelGrid's grid into a GeoTIFF at ``path``, ``strip_rows`` pixel rows at a time (memory does
    not grow with the area); like :func:`write_geotiff` otherwise.
    """
    from .raster import RasterReader

    grid = grid_of(area_or_grid)
    area = area_or_grid if isinstance(area_or_grid, Area) else None
    n_valid = 0
    with RasterReader(raster, offline=offline) as reader:
        tags = {"LAYER": layer, "PROVIDER": raster.name, "ATTRIBUTION": raster.attribution, "MISSING_TILES": "[]"}
        with GeoTiffWriter(path, grid, tags=tags, area=area, cog=cog) as writer:
            for row in range(0, grid.height, strip_rows):
                strip = grid.window(0, row, grid.width, min(strip_rows, grid.height - row))
                image, valid = reader.read(strip)
                writer.write(row, image, valid)
                n_valid += int(valid.sum())
    return GeoTiffResult(writer.path, raster, grid, [], n_valid / (grid.width * grid.height))


def write_array_geotiff(path, image: np.ndarray, grid: PixelGrid, *, valid: np.ndarray | None = None,
                        tags: dict | None = None, area: Area | None = None, cog: bool = False) -> Path:
    """Write an H x W x 3 uint8 image on ``grid`` as a GeoTIFF like :func:`write_geotiff` does."""
    if valid is None:
        valid = np.ones(grid.shape, dtype=bool)
    with GeoTiffWriter(path, grid, tags=tags, area=area, cog=cog) as writer:
        writer.write(0, image, valid)
    return writer.path


def to_cog(source, path, *, resampling: str = "average", blocksize: int = 256) -> Path:
    """Copy the GeoTIFF ``source`` to ``path`` as a cloud-optimised GeoTIFF with GDAL's COG driver.

    The copy is tiled (``blocksize`` px), deflate-compressed, with internal overviews halving down
    to one block (``resampling`` between levels: ``"average"`` suits images, ``"nearest"``
    masks and classes), the source's mask and tags kept; GDAL streams it block by block. The
    file appears under ``path`` only once complete.
    """
    import rasterio
    import rasterio.shutil

    path = Path(path).expanduser()
    tmp = path.with_name(f".{path.name}.cog.part")
    try:
        with rasterio.Env(GDAL_CACHEMAX=64, GDAL_TIFF_INTERNAL_MASK=True):
            rasterio.shutil.copy(
                str(source), str(tmp), driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES",
                BLOCKSIZE=str(blocksize), OVERVIEWS="IGNORE_EXISTING", OVERVIEW_RESAMPLING=resampling.upper(),
                BIGTIFF="IF_SAFER",
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class GeoTiffWriter:
    """Write an RGB GeoTIFF on a grid in row strips; the file is renamed into place on success.

    ``write(row, image, valid)`` takes H' x W x 3 uint8 and H' x W bool starting at pixel row ``row``.
    ``cog=True`` turns the finished file into a cloud-optimised GeoTIFF (:func:`to_cog`).
    """

    def __init__(self, path, grid: PixelGrid, *, tags: dict | None = None, area: Area | None = None,
                 cog: bool = False):
        self.path = Path(path).expanduser()
        self.grid = grid
        self.cog = cog
        self.tags = {"ZOOM": str(grid.zoom), **(tags or {})}
        if self.tags.get("ATTRIBUTION"):
            # the standard TIFF Copyright tag, which GIS software shows without knowing our tags
            self.tags.setdefault("TIFFTAG_COPYRIGHT", self.tags["ATTRIBUTION"])
        if area is not None:
            self.tags["AREA_WKT"] = area.geometry.wkt
            self.tags["AREA_NAME"] = area.name or ""
        self._tmp = self.path.with_name(f".{self.path.name}.part")
        self._env = None
        self._dst = None

    def __enter__(self) -> GeoTiffWriter:
        import rasterio

        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a small block cache: dirty blocks are flushed as strips arrive instead of piling up
        self._env = rasterio.Env(GDAL_CACHEMAX=64, GDAL_TIFF_INTERNAL_MASK=True)
        self._env.__enter__()
        self._dst = rasterio.open(
            self._tmp, "w", driver="GTiff", width=self.grid.width, height=self.grid.height, count=3,
            dtype="uint8", crs=CRS, transform=self.grid.transform, tiled=True, blockxsize=256,
            blockysize=256, compress="deflate", predictor=2, photometric="RGB", interleave="pixel",
            BIGTIFF="IF_SAFER",
        )
        return self

    def write(self, row: int, image: np.ndarray, valid: np.ndarray) -> None:
        """Write an H' x W x 3 uint8 strip and its H' x W bool valid mask starting at pixel row ``row``."""
        from rasterio.windows import Window

        h, w = valid.shape
        if image.shape != (h, w, 3) or w != self.grid.width:
            raise ValueError(
                f"expected an H x {self.grid.width} x 3 image and H x {self.grid.width} mask, "
                f"got {image.shape} and {valid.shape}"
            )
        window = Window(0, row, w, h)
        # all bands in one call: pixel-interleaved compressed tiles written band by band are
        # rewritten (and the stale copies left in the file) once per band
        self._dst.write(np.ascontiguousarray(np.moveaxis(image, -1, 0), dtype=np.uint8), window=window)
        self._dst.write_mask(valid.astype(np.uint8) * 255, window=window)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._dst.update_tags(**{k: str(v) for k, v in self.tags.items()})
            self._dst.close()
            if exc_type is None and self.cog:
                to_cog(self._tmp, self.path)
            elif exc_type is None:
                os.replace(self._tmp, self.path)
        finally:
            self._tmp.unlink(missing_ok=True)
            self._env.__exit__(exc_type, exc, tb)


def read_geotiff(path):
    """Read an RGB GeoTIFF on a Web-Mercator tile grid: ``(image 3 x H x W uint8, valid H x W bool,
    grid, tags)``.
    """
    import rasterio

    with rasterio.open(path) as src:
        if src.count < 3:
            raise InvalidAreaError(f"{path} has {src.count} band(s); an RGB image needs 3")
        grid = grid_from_transform(src.transform, src.width, src.height, src.crs)
        image = src.read([1, 2, 3])
        valid = src.dataset_mask() > 0
        tags = src.tags()
    return image, valid, grid, tags


def grid_from_transform(transform, width: int, height: int, crs) -> PixelGrid:
    """The :class:`PixelGrid` an EPSG:3857 raster lies on; raises if it is not on a tile grid."""
    from rasterio.crs import CRS as RioCRS

    if crs is None or RioCRS.from_user_input(crs) != RioCRS.from_user_input(CRS):
        raise InvalidAreaError(f"the raster's CRS is {crs}, not {CRS}; sociogeo pairs live on the Web-Mercator grid")
    res = transform.a
    zoom = round(math.log2(2 * ORIGIN_SHIFT_M / (256 * res)))
    grid = PixelGrid(zoom, round((transform.c + ORIGIN_SHIFT_M) / res), round((ORIGIN_SHIFT_M - transform.f) / res),
                     width, height)
    if not grid.transform.almost_equals(transform, precision=1e-6 * res):
        raise InvalidAreaError(
            f"the raster's transform {tuple(transform)[:6]} is not a window of the zoom-{zoom} Web-Mercator "
            "tile grid; warp it onto Area.grid first"
        )
    return grid
