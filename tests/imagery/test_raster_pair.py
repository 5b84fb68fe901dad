"""The in-memory pair and its files with a raster satellite layer: fetch_pair on the real Rotterdam
imagery with the map rendered from OSM data, and cloud-optimised GeoTIFF outputs (checked with
rio-cogeo's validator and read back)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROTTERDAM_BBOX, ROTTERDAM_MS, ROTTERDAM_PORT

from sociogeo.imagery import ImagePair, fetch_pair
from sociogeo.imagery.geotiff import to_cog
from sociogeo.imagery.raster import RasterReader, RasterSource

RGB = (3, 2, 1)


@pytest.fixture(scope="module")
def pair(rotterdam_osm):
    return fetch_pair(ROTTERDAM_BBOX, satellite=RasterSource(ROTTERDAM_MS, bands=RGB), map="osm",
                      osm_source=rotterdam_osm, offline=True)


def test_fetch_pair_puts_both_layers_on_the_rasters_zoom(pair):
    grid = pair.grid
    assert grid.zoom == 17  # nearest the raster's 1 m, no zoom given
    assert pair.satellite.rio.crs.to_epsg() == 3857 and pair.map.rio.crs.to_epsg() == 3857
    for da in (pair.satellite, pair.map):
        assert da.rio.transform().almost_equals(grid.transform, precision=1e-6)
    assert pair.satellite.shape == pair.map.shape == (3, *grid.shape)
    assert pair.valid.all()
    with RasterReader(RasterSource(ROTTERDAM_MS, bands=RGB)) as reader:
        image, _ = reader.read(grid)
    np.testing.assert_array_equal(np.moveaxis(pair.satellite.values, 0, -1), image)
    assert pair.map.values.std() > 0  # the rendered streets and park
    assert pair.attrs["satellite_provider"] == "rotterdam_ms.tif"
    assert pair.attrs["satellite_attribution"].startswith("SpaceNet 6")
    assert pair.attrs["missing_tiles"]["satellite"] == []


def test_nodata_of_the_raster_is_invalid_in_the_pair(rotterdam_osm):
    import rasterio
    from rasterio.warp import transform_bounds

    with rasterio.open(ROTTERDAM_PORT) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    bbox = (west + 0.0002, south + 0.0002, east - 0.0002, north - 0.0002)
    port = fetch_pair(bbox, satellite=RasterSource(ROTTERDAM_PORT, bands=RGB, nodata=0), map="osm",
                      osm_source=rotterdam_osm, offline=True)
    assert 0.5 < 1 - port.valid.mean() < 0.9
    assert not port.satellite.values[:, ~port.masks["satellite"]].any()
    assert port.masks["map"].all()


def test_pair_as_cloud_optimised_geotiffs(pair, tmp_path):
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    paths = pair.to_geotiff(tmp_path / "cog", cog=True)
    for layer, path in paths.items():
        valid, errors, warnings = cog_validate(str(path))
        assert valid, (layer, errors)
        with rasterio.open(path) as src:
            assert src.overviews(1), f"{layer} has no overviews"
            assert src.crs.to_epsg() == 3857 and src.transform.almost_equals(pair.grid.transform, precision=1e-6)
            assert src.tags()["LAYER"] == layer
    back = ImagePair.from_geotiff(tmp_path / "cog")
    assert back.grid == pair.grid
    np.testing.assert_array_equal(back.satellite.values, pair.satellite.values)
    np.testing.assert_array_equal(back.map.values, pair.map.values)


def test_to_cog_keeps_the_mask_and_validates(tmp_path):
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    masked = tmp_path / "masked.tif"
    with rasterio.open(ROTTERDAM_PORT) as src:
        data, profile = src.read(), src.profile
    scene = ~(data == 0).all(axis=0)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(masked, "w", **profile) as dst:
        dst.write(data)
        dst.write_mask(scene.astype(np.uint8) * 255)
    cog = to_cog(masked, tmp_path / "masked_cog.tif", blocksize=128)
    valid, errors, _ = cog_validate(str(cog))
    assert valid, errors
    with rasterio.open(cog) as src:
        np.testing.assert_array_equal(src.read(), data)
        np.testing.assert_array_equal(src.dataset_mask() > 0, scene)
    # a plain GeoTIFF is not a COG, by the same validator (the check can fail)
    assert not cog_validate(str(ROTTERDAM_PORT))[0]
