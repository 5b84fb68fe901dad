"""The co-registered pair: alignment with the source raster, one grid for both images, GeoTIFFs.

Tiles come from the loopback server rendering tests/data/sf_landsat7.tif (satellite) and a
map-coloured copy of it (map).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from sociogeo.errors import DatasetNotFoundError, InvalidAreaError, ProviderError
from sociogeo.geo.area import Area
from sociogeo.imagery import ImagePair, fetch_pair, write_geotiff
from sociogeo.imagery.tiles import MissingTilesWarning


def phase_shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The (rows, cols) translation of ``b`` relative to ``a`` by phase correlation, with a
    parabolic sub-pixel fit around the correlation peak."""
    a = a - a.mean()
    b = b - b.mean()
    spectrum = np.fft.fft2(b) * np.conj(np.fft.fft2(a))
    corr = np.fft.ifft2(spectrum / (np.abs(spectrum) + 1e-12)).real
    peak = np.unravel_index(np.argmax(corr), corr.shape)
    shift = []
    for axis, p in enumerate(peak):
        n = corr.shape[axis]
        idx = [peak[0], peak[1]]
        idx[axis] = (p - 1) % n
        left = corr[tuple(idx)]
        idx[axis] = (p + 1) % n
        right = corr[tuple(idx)]
        centre = corr[peak]
        denom = left - 2 * centre + right
        frac = 0.5 * (left - right) / denom if denom != 0 else 0.0
        s = p + frac
        shift.append(s - n if s > n / 2 else s)
    return tuple(shift)


@pytest.fixture
def pair(tile_server, sf_area, tile_cache_dir):
    return fetch_pair(sf_area, satellite=tile_server.url_template("sat"), map=tile_server.url_template("map"),
                      cache_dir=tile_cache_dir)


def test_pair_images_share_one_grid_with_crs_and_transform(pair, sf_area):
    grid = sf_area.grid
    assert pair.grid == grid
    for da in (pair.satellite, pair.map):
        assert da.dims == ("band", "y", "x")
        assert da.shape == (3, *grid.shape) and da.dtype == np.uint8
        assert da.rio.crs.to_epsg() == 3857
        assert da.rio.transform() == grid.transform
        assert da.rio.nodata == 0
    assert pair.satellite.rio.transform() == pair.map.rio.transform()
    np.testing.assert_array_equal(pair.satellite.x.values, pair.map.x.values)
    np.testing.assert_array_equal(pair.satellite.y.values, pair.map.y.values)
    # pixel centres: x of column 0 is half a pixel east of the grid's left edge
    assert pair.satellite.x.values[0] == pytest.approx(grid.bounds[0] + grid.resolution / 2)
    assert not np.array_equal(pair.satellite.values, pair.map.values)  # two different layers
    assert pair.masks["satellite"].shape == pair.masks["map"].shape == grid.shape
    assert pair.valid.mean() > 0.9


def test_pair_metadata_names_providers_zoom_and_attribution(tile_server, sf_area, tile_cache_dir):
    from sociogeo.imagery.providers import resolve_provider

    sat = resolve_provider(tile_server.url_template("sat"), name="Loopback sat", attribution="(C) USGS Landsat")
    pair = fetch_pair(sf_area, satellite=sat, map=tile_server.url_template("map"), cache_dir=tile_cache_dir)
    assert pair.attrs["satellite_provider"] == "Loopback sat"
    assert pair.attrs["satellite_attribution"] == "(C) USGS Landsat"
    assert pair.attrs["map_provider"].endswith("/map")
    assert pair.attrs["zoom"] == 15 and pair.attrs["crs"] == "EPSG:3857"
    assert pair.attrs["missing_tiles"] == {"satellite": [], "map": []}
    assert pair.satellite.attrs["attribution"] == "(C) USGS Landsat"
    assert pair.area is sf_area


def test_satellite_is_aligned_with_the_source_raster(pair, fixture_raster, sf_area, warp_to_grid):
    """Independent path: rasterio.warp.reproject of the source straight onto the area grid."""
    expected, expected_valid = warp_to_grid(fixture_raster, sf_area.grid)
    sat = np.moveaxis(pair.satellite.values, 0, -1)
    both = pair.masks["satellite"] & expected_valid
    assert both.mean() > 0.95
    # nearest resampling both ways: identical pixels, not just similar ones
    assert (sat[both] == expected[both]).all(axis=-1).mean() > 0.999
    dy, dx = phase_shift(expected.mean(axis=-1), sat.mean(axis=-1))
    assert abs(dy) < 0.5 and abs(dx) < 0.5, (dy, dx)


def test_phase_correlation_detects_a_one_pixel_shift(fixture_raster, sf_area, warp_to_grid):
    """The alignment test above can fail: a 1-px misregistration is measured as such."""
    expected, _ = warp_to_grid(fixture_raster, sf_area.grid)
    grey = expected.mean(axis=-1)
    dy, dx = phase_shift(grey, np.roll(grey, 1, axis=1))
    assert abs(dy) < 0.5 and abs(dx - 1) < 0.5, (dy, dx)


def test_map_is_aligned_with_its_source_too(pair, map_raster, sf_area, warp_to_grid):
    expected, expected_valid = warp_to_grid(map_raster, sf_area.grid)
    both = pair.masks["map"] & expected_valid
    assert (np.moveaxis(pair.map.values, 0, -1)[both] == expected[both]).all(axis=-1).mean() > 0.999


def test_geotiff_round_trip_keeps_crs_transform_values_masks_and_tags(tile_server, sf_area, tmp_path, tile_mask):
    import rasterio

    hole = list(sf_area.grid.tiles())[-1]
    tile_server.inject("404", tiles=[hole], layer="map")
    with pytest.warns(MissingTilesWarning):
        pair = fetch_pair(sf_area, satellite=tile_server.url_template("sat"),
                          map=tile_server.url_template("map"), cache_dir=False)
    paths = pair.to_geotiff(tmp_path / "pair")
    assert sorted(p.name for p in paths.values()) == ["map.tif", "satellite.tif"]
    with rasterio.open(paths["map"]) as src:
        assert src.crs.to_epsg() == 3857 and src.transform == sf_area.grid.transform
        assert src.profile["tiled"] and src.profile["compress"] == "deflate"
        assert src.tags()["PROVIDER"] == pair.attrs["map_provider"]
        assert json.loads(src.tags()["MISSING_TILES"])[0]["y"] == hole[2]
        np.testing.assert_array_equal(src.dataset_mask() > 0, pair.masks["map"])

    back = ImagePair.from_geotiff(tmp_path / "pair")
    assert back.grid == pair.grid
    for layer in ("satellite", "map"):
        np.testing.assert_array_equal(getattr(back, layer).values, getattr(pair, layer).values)
        assert getattr(back, layer).rio.transform() == getattr(pair, layer).rio.transform()
        assert getattr(back, layer).rio.crs == getattr(pair, layer).rio.crs
        np.testing.assert_array_equal(back.masks[layer], pair.masks[layer])
    assert not back.masks["map"][tile_mask(sf_area.grid, hole)].any()
    assert back.attrs["missing_tiles"]["map"] == pair.attrs["missing_tiles"]["map"]
    assert back.area.geometry.equals(sf_area.geometry) and back.area.name == "downtown SF"


def test_from_geotiff_explains_what_is_missing_or_wrong(tmp_path, fixture_raster):
    with pytest.raises(DatasetNotFoundError, match="satellite.tif"):
        ImagePair.from_geotiff(tmp_path)
    # a 30 m raster is not on the Web-Mercator tile grid
    import shutil

    shutil.copy(fixture_raster, tmp_path / "satellite.tif")
    shutil.copy(fixture_raster, tmp_path / "map.tif")
    with pytest.raises(InvalidAreaError, match="not a window of the zoom"):
        ImagePair.from_geotiff(tmp_path)


def test_streamed_geotiff_equals_the_in_memory_pair(pair, tile_server, sf_area, tmp_path):
    import rasterio

    result = write_geotiff(sf_area, tile_server.url_template("sat"), tmp_path / "sat.tif", cache_dir=False,
                           strip_rows=64)
    assert result.missing == [] and result.valid_fraction == pytest.approx(pair.masks["satellite"].mean())
    with rasterio.open(result.path) as src:
        np.testing.assert_array_equal(src.read(), pair.satellite.values)
        np.testing.assert_array_equal(src.dataset_mask() > 0, pair.masks["satellite"])
        assert src.transform == sf_area.grid.transform
    assert not list(tmp_path.glob(".*part"))  # the temporary file was renamed into place


def test_streamed_geotiff_is_not_left_behind_when_fetching_fails(tile_server, sf_area, tmp_path,
                                                                  _reset_sociogeo_options):
    from sociogeo.errors import TileFetchError

    _reset_sociogeo_options.retries = 0
    tile_server.inject("500")
    with pytest.raises(TileFetchError):
        write_geotiff(sf_area, tile_server.url_template("sat"), tmp_path / "sat.tif", cache_dir=False)
    assert list(tmp_path.iterdir()) == []


def test_preview_is_side_by_side_with_gaps_in_magenta(tile_server, sf_area, tmp_path, tile_mask):
    from PIL import Image

    hole = next(sf_area.grid.tiles())
    tile_server.inject("404", tiles=[hole], layer="sat")
    with pytest.warns(MissingTilesWarning):
        pair = fetch_pair(sf_area, satellite=tile_server.url_template("sat"),
                          map=tile_server.url_template("map"), cache_dir=False)
    path = pair.preview(tmp_path / "preview.png")
    image = np.asarray(Image.open(path).convert("RGB"))
    h, w = sf_area.grid.shape
    assert image.shape == (h, 2 * w + 8, 3)
    left = image[:, :w]
    hole_px = tile_mask(sf_area.grid, hole)
    assert (left[hole_px] == (255, 0, 255)).all()
    np.testing.assert_array_equal(image[:, w + 8:][pair.masks["map"]],
                                  np.moveaxis(pair.map.values, 0, -1)[pair.masks["map"]])
    small = pair.preview(max_size=100)
    assert max(small.size) <= 2 * 100 + 8


def test_cache_dir_none_uses_options_and_false_disables(tile_server, sf_area, tmp_path, _reset_sociogeo_options):
    _reset_sociogeo_options.cache_dir = tmp_path / "opt-cache"
    urls = {"satellite": tile_server.url_template("sat"), "map": tile_server.url_template("map")}
    fetch_pair(sf_area, **urls)
    assert len(list((tmp_path / "opt-cache").rglob("*.tile"))) == 2 * sf_area.grid.n_tiles()
    tile_server.reset_log()
    fetch_pair(sf_area, **urls, cache_dir=False)
    assert tile_server.n_requests == 2 * sf_area.grid.n_tiles()
    assert len(list((tmp_path / "opt-cache").rglob("*.tile"))) == 2 * sf_area.grid.n_tiles()


def test_bad_map_provider_or_zoom_fails_before_any_download(tile_server, sf_area):
    with pytest.raises(ProviderError, match="Did you mean"):
        fetch_pair(sf_area, satellite=tile_server.url_template("sat"), map="OpenStreetMap.Mapnk")
    deep = sf_area.with_zoom(20)
    with pytest.raises(ProviderError, match="zoom 20"):
        fetch_pair(deep, satellite=tile_server.url_template("sat"), map="OpenStreetMap.Mapnik")
    assert tile_server.n_requests == 0


def test_offline_pair_from_a_warm_cache(tile_server, sf_area, tile_cache_dir):
    urls = {"satellite": tile_server.url_template("sat"), "map": tile_server.url_template("map")}
    online = fetch_pair(sf_area, **urls, cache_dir=tile_cache_dir)
    tile_server.reset_log()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        offline = fetch_pair(sf_area, **urls, cache_dir=tile_cache_dir, offline=True)
    assert tile_server.n_requests == 0
    np.testing.assert_array_equal(offline.map.values, online.map.values)


def test_fetch_pair_takes_what_area_coerce_takes_and_rejects_the_rest():
    from sociogeo.errors import AreaTooLargeError

    with pytest.raises(InvalidAreaError, match="four numbers"):
        fetch_pair(object())
    # a bbox is an area too, checked like Area.from_bbox (this one is ~98 km², above the default limit)
    with pytest.raises(AreaTooLargeError, match="max_area_km2"):
        fetch_pair((-122.4, 37.7, -122.3, 37.8))
    assert Area
