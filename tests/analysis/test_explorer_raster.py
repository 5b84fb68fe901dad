"""The Explorer with your own raster as the satellite layer: an ImageOverlay of the current view
rendered in the kernel as a PNG data URL (no tile server), areas at the raster's zoom, runs on the
raster. The browser's view changes are simulated by setting the map's ``bounds`` trait, as the
widget's front end does."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from conftest import ROTTERDAM_BBOX, ROTTERDAM_MS

pytest.importorskip("leafmap")
ipyleaflet = pytest.importorskip("ipyleaflet")

from sociogeo.analysis.explorer import Explorer  # noqa: E402
from sociogeo.errors import ConfigError  # noqa: E402
from sociogeo.geo.area import Area  # noqa: E402
from sociogeo.imagery.raster import RasterReader, RasterSource  # noqa: E402
from sociogeo.reasoner import SocioReasoner  # noqa: E402
from sociogeo.testing.scripted import BlobVLM, BrightnessSegmenter  # noqa: E402

RGB = (3, 2, 1)


def decode(url: str) -> np.ndarray:
    from PIL import Image

    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))


@pytest.fixture
def ex(rotterdam_osm):
    return Explorer(SocioReasoner(BlobVLM(80), BrightnessSegmenter(80)),
                    satellite=RasterSource(ROTTERDAM_MS, bands=RGB, stretch=(0, 800)), map="osm",
                    osm_source=rotterdam_osm, offline=True, chip_size=256, min_area_m2=0)


def test_the_raster_is_an_image_overlay_over_the_street_map(ex):
    overlays = [layer for layer in ex.map.layers if isinstance(layer, ipyleaflet.ImageOverlay)]
    assert overlays == [ex.raster_view.layer]
    assert overlays[0].name == "Satellite (rotterdam_ms.tif)"
    tiles = [layer for layer in ex.map.layers if isinstance(layer, ipyleaflet.TileLayer)]
    # offline (as here), OpenStreetMap's own tiles are not sent to the browser: the raster is all
    assert tiles == [] and ex.hidden_layers == ["Street map (OpenStreetMap.Mapnik) (tile.openstreetmap.org)"]
    # the map opens on the raster, showing its whole footprint
    lat, lon = ex.map.center
    west, south, east, north = ROTTERDAM_BBOX
    assert abs(lat - 51.8705) < 0.002 and abs(lon - 4.357) < 0.003
    picture = decode(overlays[0].url)
    assert picture.shape[2] == 4 and (picture[..., 3] > 0).mean() > 0.9
    (s, w), (n, e) = overlays[0].bounds
    assert s < south and w < west and n > north and e > east


def test_a_view_change_renders_that_window_of_the_raster(ex):
    view = ((51.8700, 4.3555), (51.8710, 4.3575))
    before = ex.raster_view.renders
    ex.map.zoom = 18
    ex.map.set_trait("bounds", view)  # what the browser sends when the user pans or zooms
    assert ex.raster_view.renders == before + 1
    grid = ex.raster_view.grid
    assert grid.zoom == 18
    expected = Area.from_bbox((4.3555, 51.8700, 4.3575, 51.8710), zoom=18).grid
    assert grid == expected
    with RasterReader(RasterSource(ROTTERDAM_MS, bands=RGB, stretch=(0, 800))) as reader:
        image, valid = reader.read(grid)
    picture = decode(ex.raster_view.layer.url)
    np.testing.assert_array_equal(picture[..., :3], image)
    assert (picture[..., 3] == 255).all() and valid.all()
    w, s, e, n = grid.lonlat_bounds
    np.testing.assert_allclose(np.asarray(ex.raster_view.layer.bounds), [[s, w], [n, e]])
    # a view far away does not touch the raster: nothing is read
    ex.map.set_trait("bounds", ((40.0, -3.8), (40.1, -3.6)))
    assert ex.raster_view.renders == before + 1


def test_a_wide_view_is_read_on_a_coarser_grid(ex):
    ex.map.zoom = 12
    ex.map.set_trait("bounds", ((51.80, 4.25), (51.95, 4.45)))
    grid = ex.raster_view.grid
    assert max(grid.width, grid.height) <= 1024
    assert grid.zoom <= 17


def test_areas_get_the_rasters_zoom_and_runs_read_the_raster(ex):
    ex.area = ROTTERDAM_BBOX
    assert ex.area.zoom == 17
    frame = ex.run("roof")
    assert len(frame) > 0
    assert frame.attrs["satellite"] == "rotterdam_ms.tif"


def test_split_view_is_refused_with_a_raster(ex):
    with pytest.raises(ConfigError, match="layer control"):
        ex.split_view = True
    assert not ex.split_view
