"""Rasters that are not a local file: a cloud-optimised GeoTIFF over HTTP (a loopback server that
honours Range requests and counts the bytes it sends), and STAC items (JSON written here, pystac
objects, collections), on the real Rotterdam imagery.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROTTERDAM_BBOX, ROTTERDAM_MS, ROTTERDAM_PAN

from sociogeo.errors import ConfigError
from sociogeo.geo.area import Area
from sociogeo.imagery.geotiff import to_cog
from sociogeo.imagery.raster import RasterReader, RasterSource, gdal_path
from sociogeo.imagery.source import ImagerySource
from sociogeo.testing import FileServer

RGB = (3, 2, 1)


@pytest.fixture(scope="module")
def cogs(tmp_path_factory):
    """COG copies of the Rotterdam rasters (128 px blocks, overviews)."""
    from rio_cogeo.cogeo import cog_validate

    folder = tmp_path_factory.mktemp("cogs")
    paths = {"pan.tif": to_cog(ROTTERDAM_PAN, folder / "pan.tif", blocksize=128),
             "ms.tif": to_cog(ROTTERDAM_MS, folder / "ms.tif", blocksize=128)}
    for path in paths.values():
        valid, errors, _ = cog_validate(str(path))
        assert valid, errors
    return paths


@pytest.fixture
def server(cogs):
    with FileServer(cogs) as srv:
        yield srv


def read(source, grid):
    with RasterReader(source) as reader:
        return reader.read(grid)


def test_urls_become_gdal_virtual_file_paths():
    assert gdal_path("https://host/a/city.tif") == "/vsicurl/https://host/a/city.tif"
    assert gdal_path("s3://bucket/ortho/city.tif") == "/vsis3/bucket/ortho/city.tif"
    assert gdal_path("/vsis3/bucket/x.tif") == "/vsis3/bucket/x.tif"
    assert RasterSource("s3://bucket/ortho/city.tif").remote
    assert not RasterSource(ROTTERDAM_MS).remote


def test_a_cog_url_is_read_by_windows_not_downloaded(server, cogs):
    size = cogs["pan.tif"].stat().st_size
    chip = Area.from_bbox((4.3555, 51.8700, 4.3562, 51.8704), zoom=18).grid  # a 140 x 110 px chip, 0.37 m/px
    # a fixed stretch: no statistics to read, only the header and the blocks under the window
    source = RasterSource(server.url("pan.tif"), stretch=(0, 1848))
    with RasterReader(source) as reader:
        opened = server.bytes_sent
        server.reset_log()
        image, valid = reader.read(chip)
    window_bytes = server.bytes_sent
    assert valid.all() and image.std() > 10
    assert all(r.status == 206 and r.range is not None for r in server.log), server.log
    assert server.requests <= 4
    assert window_bytes < 0.25 * size, f"{window_bytes} bytes for one window of a {size}-byte file"
    assert opened < 0.1 * size  # opening reads the header only
    # the same pixels as the local file
    local, local_valid = read(RasterSource(cogs["pan.tif"], stretch=(0, 1848)), chip)
    np.testing.assert_array_equal(valid, local_valid)
    np.testing.assert_array_equal(image, local)


def test_percentiles_of_a_remote_cog_come_from_its_overviews(server, cogs, monkeypatch):
    from sociogeo.imagery import raster as raster_module

    size = cogs["pan.tif"].stat().st_size
    # with the statistics size below the raster's, the decimated read is served by an overview
    monkeypatch.setattr(raster_module, "STATS_SIZE", 150)
    ranges = RasterSource(server.url("pan.tif")).value_ranges()
    assert server.bytes_sent < 0.5 * size
    full = RasterSource(ROTTERDAM_PAN).value_ranges()  # 600 px: the full-resolution percentiles
    np.testing.assert_allclose(ranges, full, rtol=0.1)


def test_a_remote_mosaic_and_the_source_name(server, cogs):
    source = RasterSource([server.url("ms.tif"), str(ROTTERDAM_MS)], bands=RGB, stretch=(0, 2046))
    assert source.remote and source.name == "mosaic of 2 rasters"
    grid = Area.from_bbox(ROTTERDAM_BBOX, zoom=17).grid
    image, valid = read(source, grid)
    local, local_valid = read(RasterSource(ROTTERDAM_MS, bands=RGB, stretch=(0, 2046)), grid)
    np.testing.assert_array_equal(valid, local_valid)
    assert np.abs(image.astype(int) - local.astype(int)).max() <= 1


# -- STAC ---------------------------------------------------------------------------------------------
def _item(href: str, *, key: str = "image", bands=("blue", "green", "red", "nir"), roles=("data",), extra=None):
    import rasterio
    from rasterio.warp import transform_bounds

    with rasterio.open(ROTTERDAM_MS) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    assets = {key: {"href": href, "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                    "roles": list(roles), "eo:bands": [{"name": f"b{i}", "common_name": c} for i, c in
                                                        enumerate(bands, 1)]},
              "thumbnail": {"href": "thumb.png", "type": "image/png", "roles": ["thumbnail"]}}
    assets.update(extra or {})
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": "rotterdam-ms1",
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
        "geometry": {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north],
                                                          [west, north], [west, south]]]},
        "bbox": [west, south, east, north], "properties": {"datetime": "2019-08-31T00:00:00Z"},
        "links": [], "assets": assets,
    }


def test_a_stac_item_json_with_relative_href_picks_the_rgb_bands(tmp_path):
    import shutil

    shutil.copy(ROTTERDAM_MS, tmp_path / "ms.tif")
    (tmp_path / "item.json").write_text(json.dumps(_item("./ms.tif")))
    source = RasterSource(str(tmp_path / "item.json"), stretch=(0, 2046))
    assert source.bands == RGB  # from eo:bands common names
    assert source.name == "rotterdam-ms1"
    grid = Area.from_bbox(ROTTERDAM_BBOX, zoom=17).grid
    image, valid = read(source, grid)
    expected, expected_valid = read(RasterSource(ROTTERDAM_MS, bands=RGB, stretch=(0, 2046)), grid)
    np.testing.assert_array_equal(valid, expected_valid)
    np.testing.assert_array_equal(image, expected)
    # the CLI's --satellite item.json goes the same way
    assert ImagerySource(satellite=str(tmp_path / "item.json")).raster.bands == RGB


def test_a_stac_item_served_over_http_reads_its_cog_by_windows(server, cogs, tmp_path):
    (tmp_path / "item.json").write_text(json.dumps(_item("ms.tif")))  # relative to the item's URL
    server.files["item.json"] = tmp_path / "item.json"
    source = RasterSource(server.url("item.json"), stretch=(0, 2046))
    assert source.paths == [f"/vsicurl/{server.url('ms.tif')}"]
    grid = Area.from_bbox((4.3555, 51.8700, 4.3562, 51.8704), zoom=17).grid
    server.reset_log()
    image, valid = read(source, grid)
    assert valid.all()
    assert server.bytes_sent < 0.5 * cogs["ms.tif"].stat().st_size
    local, _ = read(RasterSource(ROTTERDAM_MS, bands=RGB, stretch=(0, 2046)), grid)
    np.testing.assert_array_equal(image, local)


def test_visual_asset_wins_and_pystac_objects_work(tmp_path):
    pystac = pytest.importorskip("pystac")
    item_dict = _item(str(ROTTERDAM_MS), key="analytic", extra={
        "visual": {"href": str(ROTTERDAM_PAN), "type": "image/tiff; application=geotiff", "roles": ["visual"]}})
    assert RasterSource(item_dict).paths == [str(ROTTERDAM_PAN)]
    assert RasterSource(item_dict, asset="analytic").paths == [str(ROTTERDAM_MS)]
    item = pystac.Item.from_dict(item_dict)
    assert RasterSource(item).paths == [str(ROTTERDAM_PAN)]
    collection = pystac.ItemCollection([item, pystac.Item.from_dict({**item_dict, "id": "second"})])
    assert len(RasterSource(collection).paths) == 2
    assert ImagerySource(satellite=item).raster is not None


def test_stac_without_an_obvious_image_asset_asks_which(tmp_path):
    item = _item(str(ROTTERDAM_MS), bands=("coastal", "yellow", "rededge", "nir"), extra={
        "second": {"href": str(ROTTERDAM_PAN), "type": "image/tiff; application=geotiff", "roles": ["data"]}})
    with pytest.raises(ConfigError, match=r"assets: image, thumbnail, second.*asset='...'"):
        RasterSource(item)
    with pytest.raises(ConfigError, match="no asset 'rgb'"):
        RasterSource(item, asset="rgb")
    with pytest.raises(ConfigError, match="no item"):
        RasterSource({"type": "FeatureCollection", "features": []})
