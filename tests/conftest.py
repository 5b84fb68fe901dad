"""Shared fixtures: the checked-in city raster, a loopback tile server, a fresh cache, clean options.

Everything here is offline: the tile server is a real HTTP server on 127.0.0.1 rendering tiles
from tests/data/sf_landsat7.tif (see tests/data/README.md).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parent / "data"
FIXTURE_RASTER = DATA / "sf_landsat7.tif"
# a map-like palette (roads grey, built-up beige, parks green, water blue); no colour is (0, 0, 0)
MAP_PALETTE = np.array([[170, 211, 223], [173, 209, 158], [242, 239, 233], [255, 255, 255]], dtype=np.uint8)


@pytest.fixture(autouse=True)
def _reset_sociogeo_options():
    """Give every test default options and restore whatever it changed."""
    from sociogeo.options import options

    saved = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    yield options
    for name, value in saved.items():
        setattr(options, name, value)


@pytest.fixture(scope="session")
def fixture_raster() -> Path:
    """Landsat 7 over San Francisco/Oakland: 3 x 634 x 631 uint8, EPSG:3857, 30 m, nodata 0."""
    assert FIXTURE_RASTER.is_file(), "tests/data/sf_landsat7.tif is missing; run tests/data/make_fixtures.py"
    return FIXTURE_RASTER


@pytest.fixture(scope="session")
def map_raster(fixture_raster, tmp_path_factory) -> Path:
    """A street-map-looking layer of the same place: the satellite raster's brightness quantised
    onto four flat map colours, same grid, same nodata."""
    import rasterio

    with rasterio.open(fixture_raster) as src:
        data = src.read()
        valid = src.dataset_mask() > 0
        profile = src.profile
    brightness = data.astype(np.float32).mean(axis=0)
    levels = np.digitize(brightness, np.quantile(brightness[valid], [0.25, 0.5, 0.75]))
    out = np.moveaxis(MAP_PALETTE[levels], -1, 0)
    out[:, ~valid] = 0
    path = tmp_path_factory.mktemp("rasters") / "sf_map.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(out)
    return path


@pytest.fixture(scope="session")
def _tile_server_session(fixture_raster, map_raster):
    from sociogeo.testing import TileServer

    with TileServer({"sat": fixture_raster, "map": map_raster}) as server:
        yield server


@pytest.fixture
def fast_retries(monkeypatch):
    """Retry backoff of 1 ms, so fault tests do not sleep."""
    import sociogeo

    monkeypatch.setattr(sociogeo.options, "backoff_s", 0.001)


@pytest.fixture
def tile_server(_tile_server_session, fast_retries):
    """The running loopback TileServer (layers "sat" and "map"), with no faults and an empty log."""
    server = _tile_server_session
    server.clear_faults()
    server.reset_log()
    yield server
    server.clear_faults()


@pytest.fixture
def tile_cache_dir(tmp_path) -> Path:
    """An empty per-test tile cache directory."""
    path = tmp_path / "tile-cache"
    path.mkdir()
    return path


@pytest.fixture
def sf_area():
    """About 1.2 x 1.1 km of downtown San Francisco at zoom 15 (3.8 m/px): 327 x 296 px, 6 tiles."""
    from sociogeo.geo.area import Area

    return Area.from_bbox((-122.4105, 37.7825, -122.3965, 37.7925), zoom=15, name="downtown SF")


def _warp_to_grid(raster_path, grid):
    """A raster warped onto a PixelGrid by rasterio directly (nearest): (H x W x 3 uint8, H x W bool)."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    with rasterio.open(raster_path) as src:
        image = np.zeros((3, *grid.shape), dtype=np.uint8)
        reproject(rasterio.band(src, [1, 2, 3]), image, dst_transform=grid.transform, dst_crs="EPSG:3857",
                  resampling=Resampling.nearest, dst_nodata=0)
        valid = np.zeros(grid.shape, dtype=np.uint8)
        reproject(src.dataset_mask(), valid, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=grid.transform, dst_crs="EPSG:3857", resampling=Resampling.nearest)
    return np.moveaxis(image, 0, -1), valid > 0


def _tile_mask(grid, tile):
    """H x W bool: the pixels of ``grid`` that tile (z, x, y) covers."""
    mask = np.zeros(grid.shape, dtype=bool)
    _, _, rows, cols = grid.tile_placement(tile[1], tile[2])
    mask[rows, cols] = True
    return mask


@pytest.fixture(scope="session")
def warp_to_grid():
    """``warp_to_grid(raster_path, grid) -> (image, valid)``: an independent reference for fetched
    imagery, rasterio.warp.reproject straight onto the grid with nearest resampling."""
    return _warp_to_grid


@pytest.fixture(scope="session")
def tile_mask():
    """``tile_mask(grid, (z, x, y)) -> H x W bool``: where a tile lands in a grid."""
    return _tile_mask
