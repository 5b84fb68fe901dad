"""Where the two images come from: one object that every step and command takes.

An :class:`ImagerySource` names the satellite layer, the map layer (tiles, or ``"osm"`` to render
the map locally from OpenStreetMap data), the OSM file to render from, the tile cache and offline
mode; ``fetch_pair(area, imagery=source)`` fetches both images. :func:`sociogeo.segment`,
:func:`~sociogeo.imagery.fetch_pair`,
:func:`~sociogeo.datasets.osm_build.build_dataset`, the :class:`~sociogeo.Explorer` and the
command line all accept one, and keep accepting the same settings as keyword arguments.

The satellite layer is a tile provider, or your own imagery: a GeoTIFF/COG path or URL, a list
of them, a STAC item or an xarray DataArray (:class:`~sociogeo.imagery.raster.RasterSource`).
With a raster, :meth:`ImagerySource.choose_zoom` puts an area whose zoom was not given at the
zoom nearest the raster's own resolution, and warns (:class:`~sociogeo.errors.ResolutionWarning`)
when the grid is far from the resolution the model was trained on.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import defaults

# keyword arguments that describe imagery, as functions accept them next to (or instead of) a source
FIELDS = ("satellite", "map", "osm_source", "cache_dir", "offline", "osm_landuse")


@dataclass(frozen=True)
class ImagerySource:
    """The satellite and map layers of a run, and how to get them.

    Parameters
    ----------
    satellite : str, xyzservices.TileProvider, path, list, STAC item, DataArray or RasterSource
        Tile provider: an xyzservices name (``"Esri.WorldImagery"``), a provider object or a URL
        template with ``{z}/{x}/{y}``. Or your own imagery, read window by window: a GeoTIFF/COG
        path, an ``http(s)://`` or ``s3://`` COG URL, a list of those (a mosaic), a STAC Item /
        ItemCollection / search or STAC Item JSON file, or an xarray DataArray with a CRS; it
        becomes a :class:`~sociogeo.imagery.raster.RasterSource` (build one yourself to choose
        ``bands``, ``stretch``, ``nodata`` or ``resampling``).
    map : str or xyzservices.TileProvider
        Tile provider as above, or ``"osm"`` to render the street map locally from OpenStreetMap
        data in SocioSeg's style (roads and POI labels).
    osm_source : path or None
        With ``map="osm"``: an ``.osm`` / ``.osm.pbf`` file to render from; None asks the
        Overpass API.
    cache_dir : path, None or False
        Tile cache folder; None uses ``sociogeo.options.cache_dir``, False disables caching.
    offline : bool or None
        Never touch the network (cached tiles and local files only); None follows
        ``sociogeo.options.offline``.
    osm_landuse : bool
        With ``map="osm"``: colour land use (SocioSeg's maps do not).
    """

    satellite: Any = defaults.SATELLITE
    map: Any = defaults.MAP
    osm_source: Any = None
    cache_dir: Any = None
    offline: bool | None = None
    osm_landuse: bool = False

    def __post_init__(self):
        from .raster import RasterSource, is_raster

        if is_raster(self.satellite) and not isinstance(self.satellite, RasterSource):
            object.__setattr__(self, "satellite", RasterSource(self.satellite))
        raster = self.raster
        if raster is not None and raster.remote:
            from ..errors import OfflineError
            from ..options import options

            if options.offline if self.offline is None else self.offline:
                # before anything opens the file, which would already be a request
                raise OfflineError(f"the satellite raster {raster.name} is on the network and offline mode is on; "
                                   "download it and pass the local file, or drop offline=True (--offline)")

    @property
    def raster(self):
        """The satellite :class:`~sociogeo.imagery.raster.RasterSource`, or None for tiles."""
        from .raster import RasterSource

        return self.satellite if isinstance(self.satellite, RasterSource) else None

    @classmethod
    def coerce(cls, imagery: ImagerySource | None = None, **settings) -> ImagerySource:
        """``imagery`` (or a default source) with the given keyword settings applied on top.

        Settings that are None keep the source's value, so ``segment(area, q, imagery=src,
        satellite=None)`` and ``segment(area, q, satellite="Esri.WorldImagery")`` both work.
        """
        unknown = set(settings) - set(FIELDS)
        if unknown:
            raise TypeError(f"unknown imagery settings {sorted(unknown)}; known: {', '.join(FIELDS)}")
        base = imagery if imagery is not None else cls()
        if not isinstance(base, ImagerySource):
            raise TypeError(f"imagery must be a sociogeo ImagerySource, got {type(base).__name__}")
        changes = {k: v for k, v in settings.items() if v is not None}
        return dataclasses.replace(base, **changes) if changes else base

    @property
    def renders_map(self) -> bool:
        """True when the map is rendered locally from OpenStreetMap data (``map="osm"``)."""
        return isinstance(self.map, str) and self.map.strip().lower() == defaults.OSM_MAP

    def providers(self):
        """The (satellite, map) :class:`~sociogeo.imagery.providers.TileProvider` objects; the
        satellite is the :class:`~sociogeo.imagery.raster.RasterSource` for your own imagery
        (it has ``name`` and ``attribution`` too), the map None when it is rendered from OSM
        data. Raises ProviderError for unknown names.
        """
        from .providers import resolve_provider

        satellite = self.raster if self.raster is not None else resolve_provider(self.satellite)
        return satellite, None if self.renders_map else resolve_provider(self.map)

    def check(self, zoom: int) -> None:
        """Fail fast, before anything is downloaded: both layers exist and serve ``zoom``."""
        for provider in self.providers():
            if provider is not None:
                provider.check_zoom(zoom)
        if self.renders_map and self.osm_source is not None:
            from ..osm.data import check_source

            check_source(self.osm_source)

    def choose_zoom(self, area, zoom: int | None = None):
        """``area`` (anything :meth:`~sociogeo.Area.coerce` accepts) at the zoom its imagery uses.

        ``zoom`` wins when given, then a zoom the area was made with; an area at the default zoom
        with a raster satellite layer gets the zoom nearest the raster's native resolution at the
        area's latitude. With a raster, a :class:`~sociogeo.errors.ResolutionWarning` says when
        the grid is much finer or coarser than what the model was trained on (about 0.6-1.2 m/px,
        zoom 17-18) or than the raster itself.
        """
        from ..geo.area import Area

        area = Area.coerce(area, zoom) if not isinstance(area, Area) or zoom is not None else area
        raster = self.raster
        if raster is None:
            return area
        if not raster.covers(area.grid.bounds):
            from ..errors import InvalidAreaError

            w, s, e, n = raster.lonlat_bounds()
            raise InvalidAreaError(
                f"the area {tuple(round(v, 5) for v in area.bounds)} does not overlap the satellite raster "
                f"{raster.name}, which covers (west, south, east, north) ({w:.5f}, {s:.5f}, {e:.5f}, {n:.5f}); "
                "choose an area inside it (--bbox)"
            )
        if area.default_zoom:
            west, south, east, north = area.bounds
            area = area.with_zoom(raster.native_zoom((south + north) / 2))
        warn_resolution(area, raster)
        return area

    def describe(self) -> dict:
        """The settings as plain values (for metadata files)."""
        out = {}
        for name in FIELDS:
            value = getattr(self, name)
            out[name] = (
                str(value) if isinstance(value, Path) or not isinstance(value, (str, bool, type(None))) else value
            )
        return out


def warn_resolution(area, raster=None) -> None:
    """Warn (:class:`~sociogeo.errors.ResolutionWarning`) when ``area``'s grid is far from the
    model's training resolution, or much finer than ``raster``'s own pixels.
    """
    from ..errors import ResolutionWarning

    key = (area.zoom, area.bounds)
    seen = getattr(raster, "warned_for", None)
    if seen is not None:  # one warning per raster and area, however many steps choose the zoom
        if key in seen:
            return
        seen.add(key)
    grid_m = area.resolution_m
    low, high = defaults.MODEL_RESOLUTION_M
    tolerance = defaults.RESOLUTION_TOLERANCE
    lat = (area.bounds[1] + area.bounds[3]) / 2
    if not low / tolerance <= grid_m <= high * tolerance:
        warnings.warn(
            f"the imagery grid is {grid_m:.2g} m/px (zoom {area.zoom}); SocioReasoner was trained on "
            f"imagery of about {low:g}-{high:g} m/px (zoom 17-18), so results may be poor. Choose the zoom "
            f"with zoom= (CLI: --zoom), e.g. {_zoom_for(1.0, lat)} for about 1 m/px here, or resolution= in "
            "metres per pixel (docs/own_imagery.md explains the choice)",
            ResolutionWarning, stacklevel=3,
        )
    if raster is not None and raster.resolution_m > tolerance * grid_m:
        warnings.warn(
            f"the raster's pixels are {raster.resolution_m:.2g} m but the grid's are {grid_m:.2g} m (zoom "
            f"{area.zoom}): the imagery is magnified {raster.resolution_m / grid_m:.0f}x and shows no more "
            f"detail; zoom {raster.native_zoom(lat)} matches the raster",
            ResolutionWarning, stacklevel=3,
        )


def _zoom_for(metres: float, lat: float) -> int:
    from ..geo.grid import ground_resolution

    return round(math.log2(ground_resolution(0, lat) / metres))


__all__ = ["FIELDS", "ImagerySource", "warn_resolution"]
