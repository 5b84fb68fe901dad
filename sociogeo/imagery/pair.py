"""The co-registered image pair: a satellite image and a street-map image on one pixel grid.

Both images are fetched for the same :class:`~sociogeo.geo.grid.PixelGrid` (a window of the global
Web-Mercator pixel raster), so they line up pixel for pixel by construction, without resampling.
They come back as xarray DataArrays (band, y, x; uint8 RGB) carrying their EPSG:3857 CRS and
transform through rioxarray, and can be written to tiled GeoTIFFs, also strip by strip for areas
too large to hold in memory (:func:`write_geotiff`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import defaults
from ..errors import DatasetNotFoundError, InvalidAreaError
from ..geo.area import Area, grid_of
from ..geo.grid import CRS, PixelGrid
from .arrays import is_synthetic
from .geotiff import GeoTiffWriter, read_geotiff
from .preview import PREVIEW_MAX_SIZE, side_by_side
from .tiles import NODATA, TileFailure, TileFetcher

FILENAMES = {"satellite": "satellite.tif", "map": "map.tif"}


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
        """The pair's :attr:`attrs` (providers, attributions, zoom, missing tiles)."""
        return self.attrs

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return self.grid.shape

    def chips(self, size: int = defaults.CHIP_SIZE, overlap: int = 0):
        """Square chips of ``size`` pixels overlapping by ``overlap`` pixels (see sociogeo.imagery.chips)."""
        from .chips import iter_chips

        return iter_chips(self, size=size, overlap=overlap)

    # -- files --------------------------------------------------------------------------------------
    def to_geotiff(self, directory, *, cog: bool = False) -> dict[str, Path]:
        """Write ``satellite.tif`` and ``map.tif`` (tiled, deflate, with a validity mask and the
        attribution in the tags) into ``directory``; return ``{"satellite": path, "map": path}``.
        ``cog=True`` writes cloud-optimised GeoTIFFs (internal overviews) instead.
        """
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
            if data.attrs.get("synthetic"):
                tags["SYNTHETIC"] = "yes"
            with GeoTiffWriter(directory / FILENAMES[layer], self.grid, tags=tags, area=self.area, cog=cog) as writer:
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
        per image side. Writes it and returns the path if ``path`` is given, else returns a PIL image.
        """
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
    satellite=None,
    map=None,
    cache_dir=None,
    *,
    offline: bool | None = None,
    osm_source=None,
    osm_landuse: bool | None = None,
    imagery=None,
) -> ImagePair:
    """Fetch a satellite image and a map image of ``area`` on one grid (``area.grid``).

    ``area`` is anything :meth:`~sociogeo.Area.coerce` accepts (or a PixelGrid). The layers come
    from ``imagery`` (an :class:`~sociogeo.imagery.source.ImagerySource`) or from the keyword
    settings, which override it: ``satellite`` and ``map`` are tile providers (xyzservices names
    or objects, or URL templates with ``{z}/{x}/{y}``; defaults Esri.WorldImagery and
    OpenStreetMap.Mapnik); ``satellite`` may also be your own imagery (a GeoTIFF/COG path or URL,
    a list of them, a STAC item, a DataArray or a :class:`~sociogeo.imagery.raster.RasterSource`),
    warped onto the grid; an area without a zoom then gets the zoom nearest the raster's
    resolution (:meth:`ImagerySource.choose_zoom`). ``map="osm"`` renders the map from OpenStreetMap data instead
    (``osm_source``: an .osm.pbf path or None for Overpass; ``osm_landuse`` colours land use).
    ``cache_dir=None`` uses ``options.cache_dir``, ``False`` disables caching; ``offline=None``
    follows ``options.offline``. Missing tiles are nodata, invalid in ``pair.masks`` and listed
    in ``pair.attrs["missing_tiles"]``, with a warning.
    """
    from .source import ImagerySource

    source = ImagerySource.coerce(imagery, satellite=satellite, map=map, cache_dir=cache_dir, offline=offline,
                                  osm_source=osm_source, osm_landuse=osm_landuse)
    if not isinstance(area, PixelGrid):
        area = source.choose_zoom(Area.coerce(area))
    grid = grid_of(area)
    sat_provider, map_provider = source.providers()
    source.check(grid.zoom)  # both layers, before downloading anything

    if source.raster is not None:
        sat = _read_raster(source, grid)
    else:
        with TileFetcher(sat_provider, cache_dir=source.cache_dir, offline=source.offline) as fetcher:
            sat = fetcher.read(grid, desc="satellite tiles")
    if map_provider is None:
        map_image, map_valid, map_attrs = _render_osm(grid, source.osm_source, source.osm_landuse)
    else:
        with TileFetcher(map_provider, cache_dir=source.cache_dir, offline=source.offline) as fetcher:
            mosaic = fetcher.read(grid, desc="map tiles")
        map_image, map_valid, map_attrs = mosaic.image, mosaic.valid, _mosaic_attrs(mosaic.provider, mosaic.missing)

    sat_da = to_dataarray(sat.image, grid, name="satellite", attrs=_mosaic_attrs(sat.provider, sat.missing))
    map_da = to_dataarray(map_image, grid, name="map", attrs=map_attrs)
    return _make_pair(sat_da, map_da, grid, area if isinstance(area, Area) else None,
                      {"satellite": sat.valid, "map": map_valid})


# -- DataArrays --------------------------------------------------------------------------
def to_dataarray(image: np.ndarray, grid: PixelGrid, *, name: str, attrs: dict | None = None):
    """An (band, y, x) uint8 DataArray from H x W x 3 (or 3 x H x W) pixels, with rioxarray CRS
    (EPSG:3857), transform and nodata (0); x/y coordinates are pixel centres in metres.
    """
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


# -- helpers ------------------------------------------------------------------------------------------
@dataclass
class _RasterRead:
    """The satellite layer of a grid read from a raster, shaped like a tile mosaic."""

    image: np.ndarray
    valid: np.ndarray
    provider: object
    missing: list = field(default_factory=list)


def _read_raster(source, grid: PixelGrid) -> _RasterRead:
    from .raster import RasterReader

    with RasterReader(source.raster, offline=source.offline) as reader:
        image, valid = reader.read(grid)
    return _RasterRead(image, valid, source.raster)


def _render_osm(grid: PixelGrid, source, landuse: bool):
    from ..osm.render import render_osm_map

    image, attribution = render_osm_map(grid, source=source, landuse=landuse)
    image = np.asarray(image)
    if image.shape != (*grid.shape, 3) or image.dtype != np.uint8:
        raise ValueError(
            f"render_osm_map returned {image.shape} {image.dtype}, expected {grid.height} x {grid.width} x 3 uint8"
        )
    attrs = {"provider": "osm", "attribution": attribution, "missing_tiles": []}
    return image, np.ones(grid.shape, dtype=bool), attrs


def _mosaic_attrs(provider, missing: list[TileFailure]) -> dict:
    return {
        "provider": provider.name,
        "attribution": provider.attribution,
        "missing_tiles": [f.as_dict() for f in missing],
        "synthetic": bool(getattr(provider, "synthetic", False)),
    }


def _attrs_from_tags(tags: dict) -> dict:
    try:
        missing = json.loads(tags.get("MISSING_TILES", "[]"))
    except json.JSONDecodeError:
        missing = []
    return {"provider": tags.get("PROVIDER", ""), "attribution": tags.get("ATTRIBUTION", ""), "missing_tiles": missing,
            "synthetic": is_synthetic(tags)}


def _make_pair(sat_da, map_da, grid: PixelGrid, area: Area | None, masks: dict) -> ImagePair:
    for da in (sat_da, map_da):
        da.attrs["zoom"] = grid.zoom
    attrs = {
        "satellite_provider": sat_da.attrs.get("provider", ""),
        "map_provider": map_da.attrs.get("provider", ""),
        "satellite_attribution": sat_da.attrs.get("attribution", ""),
        "map_attribution": map_da.attrs.get("attribution", ""),
        "satellite_synthetic": bool(sat_da.attrs.get("synthetic", False)),
        "zoom": grid.zoom,
        "crs": CRS,
        "resolution_m": area.resolution_m if area is not None else None,
        "missing_tiles": {
            "satellite": sat_da.attrs.get("missing_tiles", []),
            "map": map_da.attrs.get("missing_tiles", []),
        },
    }
    return ImagePair(sat_da, map_da, grid, area, masks, attrs)
