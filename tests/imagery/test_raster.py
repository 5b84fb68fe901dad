"""Your own imagery as the satellite layer (sociogeo.imagery.raster), on real sub-metre imagery of
Rotterdam (tests/data/README.md): georeferencing against rasterio's own warp and pyproj, band
choice, the stretch, nodata, masks, NaN, any CRS, mosaics, DataArrays, and the zoom choice.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from conftest import ROTTERDAM_BBOX, ROTTERDAM_MS, ROTTERDAM_PAN, ROTTERDAM_PORT

from sociogeo.errors import (
    ConfigError,
    DatasetNotFoundError,
    InvalidImageError,
    OfflineError,
    ResolutionWarning,
)
from sociogeo.geo.area import Area
from sociogeo.geo.grid import ground_resolution
from sociogeo.imagery.raster import RasterReader, RasterSource, Stretch, is_raster, to_uint8
from sociogeo.imagery.source import ImagerySource

RGB = (3, 2, 1)  # rotterdam_ms.tif's natural-colour bands


def read(source: RasterSource, grid):
    with RasterReader(source) as reader:
        return reader.read(grid)


def stretched(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """A fixed stretch computed here, independently of sociogeo: 3 x H x W -> H x W x 3 uint8."""
    out = np.clip((values - low) / (high - low) * 255.0, 0, 255)
    return np.moveaxis(np.rint(np.nan_to_num(out)).astype(np.uint8), 0, -1)


@pytest.fixture(scope="module")
def area():
    return Area.from_bbox(ROTTERDAM_BBOX, zoom=17)


# -- recognising sources ------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["Esri.WorldImagery", "OpenStreetMap.Mapnik", "https://t/{z}/{x}/{y}.png",
                                   "http://127.0.0.1:9/sat/{z}/{x}/{y}.png", None, 17])
def test_tile_providers_are_not_rasters(value):
    assert not is_raster(value)


@pytest.mark.parametrize("value", [str(ROTTERDAM_MS), ROTTERDAM_MS, "missing.tif", "https://example.org/city.tif",
                                   "s3://bucket/ortho.tif", "item.json", [str(ROTTERDAM_MS), str(ROTTERDAM_PAN)]])
def test_files_urls_lists_and_stac_are_rasters(value):
    assert is_raster(value)


def test_imagery_source_turns_a_path_into_a_raster_source():
    source = ImagerySource(satellite=str(ROTTERDAM_MS))
    assert isinstance(source.satellite, RasterSource)
    assert source.raster is source.satellite
    assert ImagerySource().raster is None
    # providers() keeps working: the raster stands in for the satellite provider
    sat, _ = source.providers()
    assert sat.name == "rotterdam_ms.tif"
    assert sat.attribution.startswith("SpaceNet 6")  # from the file's ATTRIBUTION tag
    assert "raster:" in source.describe()["satellite"]


# -- resolution and zoom ------------------------------------------------------------------------------
def test_native_resolution_is_measured_on_the_ground():
    assert RasterSource(ROTTERDAM_MS).resolution_m == pytest.approx(1.0, abs=0.005)
    assert RasterSource(ROTTERDAM_PAN).resolution_m == pytest.approx(0.5, abs=0.003)


def test_zoom_nearest_the_raster_resolution_when_none_is_given():
    lat = (ROTTERDAM_BBOX[1] + ROTTERDAM_BBOX[3]) / 2
    # at 51.87 N: zoom 16 is 1.47 m/px, 17 is 0.74 m/px, 18 is 0.37 m/px
    assert ground_resolution(17, lat) == pytest.approx(0.737, abs=0.002)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 1 m and 0.5 m imagery at zoom 17 / 18 need no warning
        ms = ImagerySource(satellite=str(ROTTERDAM_MS)).choose_zoom(Area.from_bbox(ROTTERDAM_BBOX))
        pan = ImagerySource(satellite=str(ROTTERDAM_PAN)).choose_zoom(Area.from_bbox(ROTTERDAM_BBOX))
    assert (ms.zoom, pan.zoom) == (17, 18)
    # a zoom given is kept, for the area or as an argument
    assert ImagerySource(satellite=str(ROTTERDAM_PAN)).choose_zoom(Area.from_bbox(ROTTERDAM_BBOX, zoom=17)).zoom == 17
    assert ImagerySource(satellite=str(ROTTERDAM_PAN)).choose_zoom(ROTTERDAM_BBOX, zoom=16).zoom == 16
    # tiles keep the default zoom
    assert ImagerySource().choose_zoom(Area.from_bbox(ROTTERDAM_BBOX)).zoom == 17


def test_resolution_warnings_say_how_to_choose_a_zoom():
    source = ImagerySource(satellite=str(ROTTERDAM_MS))
    with pytest.warns(ResolutionWarning, match=r"trained on.*0\.6-1\.2 m/px.*--zoom") as caught:
        source.choose_zoom(Area.from_bbox(ROTTERDAM_BBOX, zoom=14))  # 5.9 m/px: far too coarse
    assert len(caught) == 1
    with pytest.warns(ResolutionWarning) as caught:
        source.choose_zoom(Area.from_bbox(ROTTERDAM_BBOX, zoom=20))  # 0.09 m/px from 1 m imagery
    messages = " ".join(str(w.message) for w in caught)
    assert "magnified 11x" in messages and "zoom 17 matches the raster" in messages
    assert "trained on" in messages
    # the same area is warned about once
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        source.choose_zoom(Area.from_bbox(ROTTERDAM_BBOX, zoom=20))


# -- georeferencing -------------------------------------------------------------------------------------
def test_window_equals_rasterio_warp_with_nearest_resampling(area, reference_warp):
    source = RasterSource(ROTTERDAM_MS, bands=RGB, stretch=(0, 2046), resampling="nearest")
    image, valid = read(source, area.grid)
    expected = reference_warp(ROTTERDAM_MS, area.grid, RGB)
    expected_valid = np.isfinite(expected).all(axis=0)
    assert valid.mean() > 0.99  # the bbox is inside the raster
    np.testing.assert_array_equal(valid, expected_valid)
    diff = np.abs(image.astype(int) - stretched(expected, 0, 2046).astype(int))
    assert diff[valid].max() <= 1  # float32 vs float64 rounding at most


def test_raster_edges_land_within_half_a_pixel_of_where_pyproj_puts_them():
    """Independent of GDAL's warp: the raster's footprint corners, projected with pyproj onto the
    grid, against where the valid pixels start and end."""
    import rasterio
    from pyproj import Transformer

    with rasterio.open(ROTTERDAM_MS) as src:
        left, bottom, right, top = src.bounds
        crs = src.crs
    to_merc = Transformer.from_crs(crs, "EPSG:3857", always_xy=True)
    # a bbox wider than the raster: the edges are inside the grid
    grid = Area.from_bbox((4.3540, 51.8685, 4.3600, 51.8725), zoom=18).grid
    _, valid = read(RasterSource(ROTTERDAM_MS, bands=RGB, resampling="nearest"), grid)
    rows = np.flatnonzero(valid.any(axis=1))
    northings = np.linspace(bottom, top, 2001)
    errors = []
    for edge_x, first in ((left, True), (right, False)):
        # the raster's west/east edge as a densely sampled line in EPSG:3857 (UTM is rotated there)
        mx, my = to_merc.transform(np.full_like(northings, edge_x), northings)
        for r in rows[len(rows) // 10: -len(rows) // 10]:  # away from the corners: there the north/south edges bound
            _, y_row = grid.xy(0, r + 0.5)  # the row's centre line
            edge_col, _ = grid.rowcol(np.interp(float(y_row), my, mx), y_row)
            cols = np.flatnonzero(valid[r])
            boundary = cols[0] if first else cols[-1] + 1  # between the invalid and the valid pixels
            errors.append(abs(boundary - float(edge_col)))
    assert len(errors) > 100
    assert max(errors) <= 0.5 + 1e-6, f"edges off by up to {max(errors):.3f} px"


def _shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Sub-pixel (rows, cols) translation of ``b`` relative to ``a`` by phase correlation with a
    parabolic fit around the peak."""
    a = a - a.mean()
    b = b - b.mean()
    spectrum = np.fft.fft2(a).conj() * np.fft.fft2(b)
    corr = np.fft.ifft2(spectrum / (np.abs(spectrum) + 1e-9)).real
    peak = np.unravel_index(np.argmax(corr), corr.shape)
    out = []
    for axis, p in enumerate(peak):
        n = corr.shape[axis]
        idx = [peak[0], peak[1]]
        idx[axis] = (p - 1) % n
        left = corr[tuple(idx)]
        idx[axis] = (p + 1) % n
        right = corr[tuple(idx)]
        centre = corr[peak]
        offset = 0.5 * (left - right) / (left - 2 * centre + right)
        value = p + offset
        out.append(value - n if value > n / 2 else value)
    return tuple(out)


def test_default_bilinear_window_lines_up_with_the_reference_within_half_a_pixel(area, reference_warp):
    image, valid = read(RasterSource(ROTTERDAM_MS, bands=RGB, stretch=(0, 2046)), area.grid)
    expected = stretched(reference_warp(ROTTERDAM_MS, area.grid, RGB), 0, 2046)
    assert valid.mean() > 0.99
    dy, dx = _shift(expected.mean(axis=-1)[8:-8, 8:-8], image.mean(axis=-1).astype(float)[8:-8, 8:-8])
    assert math.hypot(dy, dx) < 0.5, (dy, dx)
    # and it is a resampling of the same picture, not another one
    assert np.corrcoef(expected[valid].ravel(), image[valid].ravel())[0, 1] > 0.9


def test_any_crs_gives_the_same_picture(area, tmp_path):
    import rasterio
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    lonlat = tmp_path / "rotterdam_4326.tif"
    with rasterio.open(ROTTERDAM_MS) as src:
        transform, width, height = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height,
                                                               *src.bounds)
        profile = src.profile | {"crs": "EPSG:4326", "transform": transform, "width": width, "height": height,
                                 "nodata": 0}
        with rasterio.open(lonlat, "w", **profile) as dst:
            for b in range(1, src.count + 1):
                reproject(rasterio.band(src, b), rasterio.band(dst, b), resampling=Resampling.bilinear)
    a, valid_a = read(RasterSource(ROTTERDAM_MS, bands=RGB, stretch=(0, 2046)), area.grid)
    b, valid_b = read(RasterSource(lonlat, bands=RGB, stretch=(0, 2046)), area.grid)
    both = valid_a & valid_b
    assert both.mean() > 0.95
    assert np.abs(a[both].astype(int) - b[both].astype(int)).mean() < 12  # two resamplings, same place


# -- bands and the stretch ---------------------------------------------------------------------------
def test_percentile_stretch_is_computed_once_from_the_whole_raster(area):
    import rasterio

    source = RasterSource(ROTTERDAM_MS, bands=RGB)
    assert source.stretch.describe() == "auto"
    with rasterio.open(ROTTERDAM_MS) as src:  # 300 px: the decimated read is the full raster
        values = src.read(list(RGB)).reshape(3, -1).astype(float)
    expected = np.percentile(values, (2, 98), axis=1).T
    np.testing.assert_allclose(source.value_ranges(), expected)
    image, valid = read(source, area.grid)
    for band in range(3):
        saturated = (image[..., band][valid] == 255).mean()
        black = (image[..., band][valid] == 0).mean()
        assert 0.002 < saturated < 0.06 and 0.002 < black < 0.06


def test_every_window_uses_the_same_stretch(area):
    source = RasterSource(ROTTERDAM_MS, bands=RGB)
    whole, _ = read(source, area.grid)
    g = area.grid
    parts = [g.window(0, 0, g.width // 2, g.height), g.window(g.width // 2, 0, g.width - g.width // 2, g.height)]
    left, _ = read(source, parts[0])
    right, _ = read(source, parts[1])
    # GDAL's bilinear warp of another source window may differ by one level in rounding, no more
    diff = np.abs(np.concatenate([left, right], axis=1).astype(int) - whole.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.02


def test_fixed_ranges_per_band(area, reference_warp):
    ranges = [(100, 900), (50, 700), (20, 500)]
    image, valid = read(RasterSource(ROTTERDAM_MS, bands=RGB, stretch=ranges, resampling="nearest"), area.grid)
    ref = reference_warp(ROTTERDAM_MS, area.grid, RGB)
    for band, (low, high) in enumerate(ranges):
        expected = stretched(ref[band:band + 1], low, high)[..., 0]
        assert np.abs(image[..., band].astype(int) - expected.astype(int))[valid].max() <= 1


def test_one_band_is_grey(area):
    image, valid = read(RasterSource(ROTTERDAM_PAN), area.grid)
    assert valid.all()
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    assert image.std() > 20  # a real picture, stretched


def test_colour_interpretation_picks_the_bands(tmp_path, area):
    import rasterio
    from rasterio.enums import ColorInterp

    tagged = tmp_path / "bgrn.tif"
    with rasterio.open(ROTTERDAM_MS) as src:
        profile, data = src.profile, src.read()
    with rasterio.open(tagged, "w", **profile) as dst:
        dst.write(data)
        dst.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    assert RasterSource(tagged).info["bands"] == RGB
    auto, _ = read(RasterSource(tagged, stretch=(0, 2046)), area.grid)
    given, _ = read(RasterSource(ROTTERDAM_MS, bands=RGB, stretch=(0, 2046)), area.grid)
    np.testing.assert_array_equal(auto, given)


def test_uint8_imagery_keeps_its_values(tmp_path, area, reference_warp):
    import rasterio

    eight = tmp_path / "rgb8.tif"
    with rasterio.open(ROTTERDAM_MS) as src:
        data = np.clip(src.read(list(RGB)) / 4, 0, 255).astype(np.uint8)
        profile = src.profile | {"count": 3, "dtype": "uint8"}
    with rasterio.open(eight, "w", **profile) as dst:
        dst.write(data)
    image, valid = read(RasterSource(eight, resampling="nearest"), area.grid)
    ref = reference_warp(eight, area.grid, (1, 2, 3))
    np.testing.assert_array_equal(image[valid], np.moveaxis(ref, 0, -1)[valid].astype(np.uint8))


def test_float_data_and_nan(tmp_path, area):
    import rasterio

    floats = tmp_path / "reflectance.tif"
    with rasterio.open(ROTTERDAM_MS) as src:
        data = src.read().astype(np.float32) / 10000.0
        profile = src.profile | {"dtype": "float32", "nodata": np.nan}
    data[:, :100, :] = np.nan  # the northern third has no data
    with rasterio.open(floats, "w", **profile) as dst:
        dst.write(data)
    image, valid = read(RasterSource(floats, bands=RGB, stretch=(0, 0.2046), resampling="nearest"), area.grid)
    reference, _ = read(RasterSource(ROTTERDAM_MS, bands=RGB, stretch=(0, 2046), resampling="nearest"), area.grid)
    assert 0.2 < 1 - valid.mean() < 0.45  # the NaN rows are invalid
    assert (image[~valid] == 0).all()
    assert np.abs(image[valid].astype(int) - reference[valid].astype(int)).max() <= 1


def test_to_uint8_maps_ranges_and_zeroes_invalid():
    values = np.array([[[0.0, 50.0, 100.0, 200.0]]] * 3)
    valid = np.array([[True, True, True, False]])
    out = to_uint8(values, np.array([[0.0, 100.0]] * 3), valid)
    assert out[0, :, 0].tolist() == [0, 128, 255, 0]


# -- nodata and masks --------------------------------------------------------------------------------
def _port_grid():
    import rasterio
    from rasterio.warp import transform_bounds

    with rasterio.open(ROTTERDAM_PORT) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    pad = 0.0002
    return Area.from_bbox((west + pad, south + pad, east - pad, north - pad), zoom=17).grid


def test_undeclared_nodata_is_given_by_the_user(reference_warp):
    grid = _port_grid()
    ref = reference_warp(ROTTERDAM_PORT, grid, RGB)
    expected_invalid = (ref == 0).all(axis=0)
    assert 0.5 < expected_invalid.mean() < 0.9  # the real scene edge
    _, valid = read(RasterSource(ROTTERDAM_PORT, bands=RGB, resampling="nearest"), grid)
    assert valid.all()  # the file declares no nodata: its zeros look like pixels
    image, valid = read(RasterSource(ROTTERDAM_PORT, bands=RGB, resampling="nearest", nodata=0), grid)
    np.testing.assert_array_equal(~valid, expected_invalid)
    assert (image[~valid] == 0).all() and image[valid].any()


@pytest.mark.parametrize("kind", ["nodata", "mask"])
def test_declared_nodata_and_internal_masks_are_invalid(kind, tmp_path, reference_warp):
    import rasterio

    path = tmp_path / f"{kind}.tif"
    with rasterio.open(ROTTERDAM_PORT) as src:
        data, profile = src.read(), src.profile
    scene = ~(data == 0).all(axis=0)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", **(profile | ({"nodata": 0} if kind == "nodata" else {}))) as dst:
            dst.write(data)
            if kind == "mask":
                dst.write_mask(scene.astype(np.uint8) * 255)
    grid = _port_grid()
    expected_invalid = (reference_warp(ROTTERDAM_PORT, grid, RGB) == 0).all(axis=0)
    _, valid = read(RasterSource(path, bands=RGB, resampling="nearest"), grid)
    np.testing.assert_array_equal(~valid, expected_invalid)
    # bilinear resampling does not blend nodata into the picture at the scene's edge
    image, valid = read(RasterSource(path, bands=RGB, stretch=(0, 2046)), grid)
    assert abs((~valid).mean() - expected_invalid.mean()) < 0.02
    edge = valid & np.roll(~valid, 1, axis=0)
    assert image[edge].mean() > 10  # no dark fringe from zeros mixed in


def test_outside_the_raster_is_invalid_and_black():
    grid = Area.from_bbox((4.36, 51.872, 4.362, 51.873), zoom=17).grid  # north-east of the raster
    image, valid = read(RasterSource(ROTTERDAM_MS, bands=RGB), grid)
    assert not valid.any() and not image.any()


# -- mosaics and DataArrays ---------------------------------------------------------------------------------
def test_a_mosaic_of_two_halves_reads_like_the_whole(tmp_path, area):
    import rasterio
    from rasterio.windows import Window

    halves = []
    with rasterio.open(ROTTERDAM_MS) as src:
        for i, window in enumerate([Window(0, 0, 160, 300), Window(150, 0, 150, 300)]):
            path = tmp_path / f"half{i}.tif"
            with rasterio.open(path, "w", **(src.profile | {"width": int(window.width), "height": 300,
                                                           "transform": src.window_transform(window)})) as dst:
                dst.write(src.read(window=window))
            halves.append(path)
    whole, valid = read(RasterSource(ROTTERDAM_MS, bands=RGB, stretch=(0, 2046), resampling="nearest"), area.grid)
    mosaic_source = RasterSource([str(p) for p in halves], bands=RGB, stretch=(0, 2046), resampling="nearest")
    assert mosaic_source.name == "mosaic of 2 rasters"
    mosaic, mosaic_valid = read(mosaic_source, area.grid)
    np.testing.assert_array_equal(mosaic_valid, valid)
    np.testing.assert_array_equal(mosaic, whole)


def test_a_dataarray_reads_like_its_file(area):
    import rioxarray

    da = rioxarray.open_rasterio(ROTTERDAM_MS)
    from_file, valid = read(RasterSource(ROTTERDAM_MS, bands=RGB, stretch=(0, 2046), resampling="nearest"),
                            area.grid)
    from_da, da_valid = read(RasterSource(da, bands=RGB, stretch=(0, 2046), resampling="nearest"), area.grid)
    np.testing.assert_array_equal(da_valid, valid)
    np.testing.assert_array_equal(from_da, from_file)
    # percentiles from the array agree with percentiles from the file
    np.testing.assert_allclose(RasterSource(da, bands=RGB).value_ranges(),
                               RasterSource(ROTTERDAM_MS, bands=RGB).value_ranges())
    assert RasterSource(da).resolution_m == pytest.approx(1.0, abs=0.005)


def test_a_dataarray_needs_a_crs():
    import xarray as xr

    with pytest.raises(InvalidImageError, match="write_crs"):
        RasterSource(xr.DataArray(np.zeros((3, 4, 4)), dims=("band", "y", "x")))


# -- errors -------------------------------------------------------------------------------------------
def test_missing_file_names_the_option(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"not found.*--satellite"):
        RasterSource(tmp_path / "nope.tif").info  # noqa: B018


def test_bad_bands_and_stretch():
    with pytest.raises(ConfigError, match="4 band"):
        RasterSource(ROTTERDAM_MS, bands=(5, 2, 1)).info  # noqa: B018
    with pytest.raises(ConfigError, match="three 1-based"):
        RasterSource(ROTTERDAM_MS, bands=(1, 2))
    with pytest.raises(ConfigError, match="low < high"):
        Stretch.parse((10, 5))
    with pytest.raises(ConfigError, match="stretch must be"):
        Stretch.parse("median")
    with pytest.raises(ConfigError, match="resampling"):
        RasterSource(ROTTERDAM_MS, resampling="magic")


def test_remote_raster_refused_offline():
    with pytest.raises(OfflineError, match="offline"):
        source = RasterSource("https://127.0.0.1:9/city.tif")
        source._info = {"bands": (1, 2, 3)}  # no request: the refusal comes first
        source._ranges = np.tile([0.0, 255.0], (3, 1))
        RasterReader(source, offline=True)


def test_a_source_travels_to_other_processes_with_its_stretch(area):
    """Ray workers get the ImagerySource pickled: the stretch computed here goes along."""
    import pickle

    source = ImagerySource(satellite=RasterSource(ROTTERDAM_MS, bands=RGB))
    ranges = source.raster.value_ranges()
    copy = pickle.loads(pickle.dumps(source))
    assert copy.raster._ranges is not None
    np.testing.assert_array_equal(copy.raster.value_ranges(), ranges)
    np.testing.assert_array_equal(read(copy.raster, area.grid)[0], read(source.raster, area.grid)[0])


def test_a_remote_raster_with_offline_fails_before_any_request():
    with pytest.raises(OfflineError, match="--offline"):
        ImagerySource(satellite="https://127.0.0.1:9/city.tif", offline=True)


def test_an_area_outside_the_raster_is_refused_with_its_extent():
    from sociogeo.errors import InvalidAreaError

    with pytest.raises(InvalidAreaError, match=r"does not overlap.*rotterdam_ms\.tif.*4\.354.*--bbox"):
        ImagerySource(satellite=str(ROTTERDAM_MS)).choose_zoom(Area.from_bbox((24.94, 60.16, 24.95, 60.17)))
