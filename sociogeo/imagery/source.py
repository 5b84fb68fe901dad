"""Where the two images come from: one object that every step and command takes.

An :class:`ImagerySource` names the satellite layer, the map layer (tiles, or ``"osm"`` to render
the map locally from OpenStreetMap data), the OSM file to render from, the tile cache and offline
mode; ``fetch_pair(area, imagery=source)`` fetches both images. :func:`sociogeo.segment`,
:func:`~sociogeo.imagery.fetch_pair`,
:func:`~sociogeo.datasets.osm_build.build_dataset`, the :class:`~sociogeo.Explorer` and the
command line all accept one, and keep accepting the same settings as keyword arguments.
"""

from __future__ import annotations

import dataclasses
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
    satellite : str or xyzservices.TileProvider
        Tile provider: an xyzservices name (``"Esri.WorldImagery"``), a provider object or a URL
        template with ``{z}/{x}/{y}``.
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
        """The (satellite, map) :class:`~sociogeo.imagery.providers.TileProvider` objects; the map
        is None when it is rendered from OSM data. Raises ProviderError for unknown names.
        """
        from .providers import resolve_provider

        return resolve_provider(self.satellite), None if self.renders_map else resolve_provider(self.map)

    def check(self, zoom: int) -> None:
        """Fail fast, before anything is downloaded: both layers exist and serve ``zoom``."""
        for provider in self.providers():
            if provider is not None:
                provider.check_zoom(zoom)
        if self.renders_map and self.osm_source is not None:
            from ..osm.data import check_source

            check_source(self.osm_source)

    def describe(self) -> dict:
        """The settings as plain values (for metadata files)."""
        out = {}
        for name in FIELDS:
            value = getattr(self, name)
            out[name] = (
                str(value) if isinstance(value, Path) or not isinstance(value, (str, bool, type(None))) else value
            )
        return out


__all__ = ["FIELDS", "ImagerySource"]
