"""The co-registered image pair: a satellite image and a street-map image on one pixel grid.

Both images are fetched for the same :class:`~sociogeo.grid.PixelGrid` (a window of the global
Web-Mercator pixel raster), so they line up pixel for pixel by construction, without resampling.
They come back as xarray DataArrays (band, y, x; uint8 RGB) carrying their EPSG:3857 CRS and
transform through rioxarray, and can be written to tiled GeoTIFFs, also strip by strip for areas
too large to hold in memory (:func:`write_geotiff`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .area import Area
from .errors import DatasetNotFoundError, InvalidAreaError
from .grid import CRS, ORIGIN_SHIFT_M, PixelGrid
from .providers import TileProvider, resolve_provider
from .tiles import NODATA, TileFailure, TileFetcher

FILENAMES = {"satellite": "satellite.tif", "map": "map.tif"}
PREVIEW_MAX_SIZE = 1024  # pixels, per image, along the longer side
_GAP_PX = 8
_INVALID_RGB = (255, 0, 255)  # previews paint nodata magenta so gaps are never mistaken for imagery


@dataclass(eq=False)
class ImagePair:
    """A satellite image and a map image of one area on one grid.

    ``satellite`` and ``map`` are DataArrays (band, y, x) of uint8 RGB with ``.rio.crs`` EPSG:3857
    and ``.rio.transform()`` equal to ``grid.transform``. ``masks`` holds their per-pixel validity
    (H x W bool; False where tiles were missing or transparent), ``attrs`` the provider names,
    attributions, zoom and missing tiles.
    """

    satellite: object  # xarray.DataArray
    map: object  # xarray.DataArray
    grid: PixelGrid
    area: Area | None = None
    masks: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)

    @property
    def valid(self) -> np.ndarray:
        """H x W bool: pixels where both images have data."""
        out = np.ones(self.grid.shape, dtype=bool)
        for mask in self.masks.values():
            out &= mask
        return out

    @property
    def metadata(self) -> dict:
        return self.attrs

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return self.grid.shape

    def chips(self, size: int = 768, overlap: int = 0):
        """Square chips of ``size`` pixels overlapping by ``overlap`` pixels (see sociogeo.chips)."""
        from .chips import iter_chips

        return iter_chips(self, size=size, overlap=overlap)

    # -- files --------------------------------------------------------------------------------------
    def to_geotiff(self, directory) -> dict[str, Path]:
        """Write ``satellite.tif`` and ``map.tif`` (tiled, deflate, with a validity mask and the
        attribution in the tags) into ``directory``; return ``{"satellite": path, "map": path}``."""
        directory = Path(directory).expanduser()
        directory.mkdir(parents=True, exist_ok=True)
        paths = {}
        for layer in ("satellite", "map"):
            data = getattr(self, layer)
            image = np.moveaxis(np.asarray(data.values), 0, -1)
            tags = {
                "LAYER": layer,
                "PROVIDER": data.attrs.get("provider", ""),
                "ATTRIBUTION": data.attrs.get("attribution", ""),
                "MISSING_TILES": json.dumps(data.attrs.get("missing_tiles", [])),
            }
            with GeoTiffWriter(directory / FILENAMES[layer], self.grid, tags=tags, area=self.area) as writer:
                writer.write(0, image, self.masks.get(layer, np.ones(self.grid.shape, dtype=bool)))
            paths[layer] = writer.path
        return paths

    @classmethod
    def from_geotiff(cls, directory) -> ImagePair:
        """Read a pair written by :meth:`to_geotiff` (or by ``sociogeo fetch``)."""
        directory = Path(directory).expanduser()
        layers = {}
        for layer, name in FILENAMES.items():
            path = directory / name
            if not path.is_file():
                raise DatasetNotFoundError(
                    f"{path} does not exist; a pair directory holds {' and '.join(FILENAMES.values())} "
                    "(written by ImagePair.to_geotiff or `sociogeo fetch`)"
                )
            layers[layer] = read_geotiff(path)
        (sat, sat_valid, grid, sat_tags), (mp, map_valid, map_grid, map_tags) = layers["satellite"], layers["map"]
        if grid != map_grid:
            raise InvalidAreaError(
                f"satellite.tif and map.tif in {directory} are on different grids ({grid} vs {map_grid}); "
                "write them together with ImagePair.to_geotiff or `sociogeo fetch`"
            )
        area = None
        if sat_tags.get("AREA_WKT"):
            from shapely import wkt

            geometry = wkt.loads(sat_tags["AREA_WKT"])
            area = Area(geometry=geometry, zoom=grid.zoom, name=sat_tags.get("AREA_NAME") or None)
        sat_da = to_dataarray(sat, grid, name="satellite", attrs=_attrs_from_tags(sat_tags))
        map_da = to_dataarray(mp, grid, name="map", attrs=_attrs_from_tags(map_tags))
        return _make_pair(sat_da, map_da, grid, area, {"satellite": sat_valid, "map": map_valid})

    def preview(self, path=None, *, max_size: int = PREVIEW_MAX_SIZE):
        """A side-by-side PNG (satellite left, map right; nodata in magenta), at most ``max_size`` px
        per image side. Writes it and returns the path if ``path`` is given, else returns a PIL image."""
        image = side_by_side(
            np.moveaxis(np.asarray(self.satellite.values), 0, -1), self.masks.get("satellite"),
            np.moveaxis(np.asarray(self.map.values), 0, -1), self.masks.get("map"),
            max_size=max_size,
        )
        if path is None:
            return image
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="PNG")
        return path

    def __repr__(self) -> str:
        h, w = self.grid.shape
        return (
            f"ImagePair({w} x {h} px, zoom {self.grid.zoom}, satellite={self.attrs.get('satellite_provider')!r}, "
            f"map={self.attrs.get('map_provider')!r}, valid={self.valid.mean():.1%})"
        )


def fetch_pair(
    area,
    satellite="Esri.WorldImagery",
    map="OpenStreetMap.Mapnik",
    cache_dir=None,
    *,
    offline: bool | None = None,
    osm_source=None,
    osm_landuse: bool = False,
) -> ImagePair:
    """Fetch a satellite image and a map image of ``area`` on one grid (``area.grid``).

    ``satellite`` and ``map`` are tile providers (xyzservices names or objects, or URL templates
    with ``{z}/{x}/{y}``); ``map="osm"`` renders the map from OpenStreetMap data instead
    (``osm_source``: an .osm.pbf path or None for Overpass; ``osm_landuse`` colours land use).
    ``cache_dir=None`` uses ``options.cache_dir``, ``False`` disables caching; ``offline=None``
    follows ``options.offline``. Missing tiles are nodata, invalid in ``pair.masks`` and listed
    in ``pair.attrs["missing_tiles"]``, with a warning.
    """
    grid = _grid_of(area)
    sat_provider = resolve_provider(satellite)
    map_provider = None if _is_osm(map) else resolve_provider(map)
    # check both before downloading anything, so a bad map provider fails fast
    for provider in (sat_provider, map_provider):
        if provider is not None:
            provider.check_zoom(grid.zoom)

    with TileFetcher(sat_provider, cache_dir=cache_dir, offline=offline) as fetcher:
        sat = fetcher.read(grid, desc="satellite tiles")
    if map_provider is None:
        map_image, map_valid, map_attrs = _render_osm(grid, osm_source, osm_landuse)
    else:
        with TileFetcher(map_provider, cache_dir=cache_dir, offline=offline) as fetcher:
            mosaic = fetcher.read(grid, desc="map tiles")
        map_image, map_valid, map_attrs = mosaic.image, mosaic.valid, _mosaic_attrs(mosaic.provider, mosaic.missing)

    sat_da = to_dataarray(sat.image, grid, name="satellite", attrs=_mosaic_attrs(sat.provider, sat.missing))
    map_da = to_dataarray(map_image, grid, name="map", attrs=map_attrs)
    return _make_pair(sat_da, map_da, grid, area if isinstance(area, Area) else None,
                      {"satellite": sat.valid, "map": map_valid})


# -- streaming GeoTIFF writing ------------------------------------------------------------------------
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
    **fetcher_options,
) -> GeoTiffResult:
    """Fetch ``provider``'s tiles for an :class:`Area` or :class:`PixelGrid` straight into a
    GeoTIFF at ``path``, one row of tiles (or ``strip_rows`` pixel rows) at a time, so memory
    does not grow with the area.

    The file is tiled (256 px), deflate-compressed, EPSG:3857, with an internal validity mask and
    the provider's attribution in its tags; it appears under ``path`` only once complete.
    ``fetcher_options`` go to :class:`~sociogeo.tiles.TileFetcher` (retries, timeout_s, ...).
    """
    grid = _grid_of(area_or_grid)
    area = area_or_grid if isinstance(area_or_grid, Area) else None
    missing: dict[str, TileFailure] = {}
    n_valid = 0
    with TileFetcher(provider, cache_dir=cache_dir, offline=offline, **fetcher_options) as fetcher:
        tags = {"LAYER": layer, "PROVIDER": fetcher.provider.name, "ATTRIBUTION": fetcher.provider.attribution}
        with GeoTiffWriter(path, grid, tags=tags, area=area) as writer:
            for strip in fetcher.iter_strips(grid, strip_rows=strip_rows, desc=desc):
                writer.write(strip.grid.row_off - grid.row_off, strip.image, strip.valid)
                n_valid += int(strip.valid.sum())
                missing.update((f.tile, f) for f in strip.missing)
            writer.tags["MISSING_TILES"] = json.dumps([f.as_dict() for f in missing.values()])
    valid_fraction = n_valid / (grid.width * grid.height)
    return GeoTiffResult(writer.path, fetcher.provider, grid, list(missing.values()), valid_fraction)


def write_array_geotiff(path, image: np.ndarray, grid: PixelGrid, *, valid: np.ndarray | None = None,
                        tags: dict | None = None, area: Area | None = None) -> Path:
    """Write an H x W x 3 uint8 image on ``grid`` as a GeoTIFF like :func:`write_geotiff` does."""
    if valid is None:
        valid = np.ones(grid.shape, dtype=bool)
    with GeoTiffWriter(path, grid, tags=tags, area=area) as writer:
        writer.write(0, image, valid)
    return writer.path


class GeoTiffWriter:
    """Write an RGB GeoTIFF on a grid in row strips; the file is renamed into place on success.

    ``write(row, image, valid)`` takes H' x W x 3 uint8 and H' x W bool starting at pixel row ``row``.
    """

    def __init__(self, path, grid: PixelGrid, *, tags: dict | None = None, area: Area | None = None):
        self.path = Path(path).expanduser()
        self.grid = grid
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
            if exc_type is None:
                os.replace(self._tmp, self.path)
        finally:
            if exc_type is not None:
                self._tmp.unlink(missing_ok=True)
            self._env.__exit__(exc_type, exc, tb)


def read_geotiff(path):
    """Read an RGB GeoTIFF on a Web-Mercator tile grid: ``(image 3 x H x W uint8, valid H x W bool,
    grid, tags)``."""
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


# -- DataArrays and previews --------------------------------------------------------------------------
def to_dataarray(image: np.ndarray, grid: PixelGrid, *, name: str, attrs: dict | None = None):
    """An (band, y, x) uint8 DataArray from H x W x 3 (or 3 x H x W) pixels, with rioxarray CRS
    (EPSG:3857), transform and nodata (0); x/y coordinates are pixel centres in metres."""
    import rioxarray  # noqa: F401 (registers the .rio accessor)
    import xarray as xr

    data = np.asarray(image, dtype=np.uint8)
    if data.shape == (*grid.shape, 3):
        data = np.moveaxis(data, -1, 0)
    if data.shape != (3, *grid.shape):
        raise ValueError(f"expected an image of {grid.height} x {grid.width} x 3 pixels, got {image.shape}")
    xs, _ = grid.xy(np.arange(grid.width) + 0.5, 0)
    _, ys = grid.xy(0, np.arange(grid.height) + 0.5)
    da = xr.DataArray(
        data, dims=("band", "y", "x"), coords={"band": [1, 2, 3], "x": xs, "y": ys}, name=name,
        attrs=dict(attrs or {}),
    )
    da = da.rio.write_crs(CRS).rio.write_transform(grid.transform).rio.write_nodata(NODATA)
    return da


def side_by_side(sat: np.ndarray, sat_valid, map_image: np.ndarray, map_valid, *, max_size: int = PREVIEW_MAX_SIZE):
    """A PIL image: satellite (H x W x 3) left, map right, nodata painted magenta, each downscaled
    to at most ``max_size`` pixels along its longer side."""
    from PIL import Image

    panels = []
    for image, valid in ((sat, sat_valid), (map_image, map_valid)):
        rgb = np.array(image, dtype=np.uint8)
        if valid is not None:
            rgb[~np.asarray(valid, dtype=bool)] = _INVALID_RGB
        panel = Image.fromarray(rgb, "RGB")
        panel.thumbnail((max_size, max_size), Image.Resampling.BILINEAR)
        panels.append(panel)
    w = sum(p.width for p in panels) + _GAP_PX
    h = max(p.height for p in panels)
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    canvas.paste(panels[0], (0, 0))
    canvas.paste(panels[1], (panels[0].width + _GAP_PX, 0))
    return canvas


def write_preview(satellite_tif, map_tif, path, *, max_size: int = PREVIEW_MAX_SIZE) -> Path:
    """A side-by-side PNG from two GeoTIFFs, read at reduced resolution (memory stays small)."""
    import rasterio

    arrays = []
    for tif in (satellite_tif, map_tif):
        with rasterio.open(tif) as src:
            scale = min(1.0, max_size / max(src.width, src.height))
            shape = (max(1, round(src.height * scale)), max(1, round(src.width * scale)))
            image = np.moveaxis(src.read([1, 2, 3], out_shape=(3, *shape)), 0, -1)
            valid = src.dataset_mask(out_shape=shape) > 0
        arrays += [image, valid]
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    side_by_side(*arrays, max_size=max_size).save(path, format="PNG")
    return path


# -- helpers ------------------------------------------------------------------------------------------
def _grid_of(area_or_grid) -> PixelGrid:
    if isinstance(area_or_grid, PixelGrid):
        return area_or_grid
    if isinstance(area_or_grid, Area):
        return area_or_grid.grid
    raise InvalidAreaError(
        f"expected an Area (e.g. Area.from_bbox((west, south, east, north))) or a PixelGrid, "
        f"got {type(area_or_grid).__name__}"
    )


def _is_osm(spec) -> bool:
    return isinstance(spec, str) and spec.strip().lower() == "osm"


def _render_osm(grid: PixelGrid, source, landuse: bool):
    from .maprender import render_osm_map

    image, attribution = render_osm_map(grid, source=source, landuse=landuse)
    image = np.asarray(image)
    if image.shape != (*grid.shape, 3) or image.dtype != np.uint8:
        raise ValueError(
            f"render_osm_map returned {image.shape} {image.dtype}, expected {grid.height} x {grid.width} x 3 uint8"
        )
    attrs = {"provider": "osm", "attribution": attribution, "missing_tiles": []}
    return image, np.ones(grid.shape, dtype=bool), attrs


def _mosaic_attrs(provider: TileProvider, missing: list[TileFailure]) -> dict:
    return {
        "provider": provider.name,
        "attribution": provider.attribution,
        "missing_tiles": [f.as_dict() for f in missing],
    }


def _attrs_from_tags(tags: dict) -> dict:
    try:
        missing = json.loads(tags.get("MISSING_TILES", "[]"))
    except json.JSONDecodeError:
        missing = []
    return {"provider": tags.get("PROVIDER", ""), "attribution": tags.get("ATTRIBUTION", ""), "missing_tiles": missing}


def _make_pair(sat_da, map_da, grid: PixelGrid, area: Area | None, masks: dict) -> ImagePair:
    for da in (sat_da, map_da):
        da.attrs["zoom"] = grid.zoom
    attrs = {
        "satellite_provider": sat_da.attrs.get("provider", ""),
        "map_provider": map_da.attrs.get("provider", ""),
        "satellite_attribution": sat_da.attrs.get("attribution", ""),
        "map_attribution": map_da.attrs.get("attribution", ""),
        "zoom": grid.zoom,
        "crs": CRS,
        "resolution_m": area.resolution_m if area is not None else None,
        "missing_tiles": {
            "satellite": sat_da.attrs.get("missing_tiles", []),
            "map": map_da.attrs.get("missing_tiles", []),
        },
    }
    return ImagePair(sat_da, map_da, grid, area, masks, attrs)
