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


# -- real sub-metre imagery of Rotterdam (see tests/data/README.md) ---------------------------------
ROTTERDAM_MS = DATA / "rotterdam_ms.tif"  # 4 bands uint16, 1.0 m, EPSG:32631; bands 3, 2, 1 are R, G, B
ROTTERDAM_PAN = DATA / "rotterdam_pan.tif"  # 1 band uint16, 0.5 m, same footprint
ROTTERDAM_PORT = DATA / "rotterdam_port_ms.tif"  # 4 bands uint16, upper 73 % is 0 (undeclared nodata)
#: (west, south, east, north): inside the footprint of rotterdam_ms.tif and rotterdam_pan.tif
ROTTERDAM_BBOX = (4.3552, 51.8695, 4.3587, 51.8716)


@pytest.fixture(scope="session")
def rotterdam_osm(tmp_path_factory) -> Path:
    """A small OSM XML file over ROTTERDAM_BBOX: two streets, a footway and a park (made up for
    the map layer: no OSM extract of Rotterdam ships in a package)."""
    west, south, east, north = ROTTERDAM_BBOX
    mid_lon, mid_lat = (west + east) / 2, (south + north) / 2
    nodes = {1: (west, mid_lat), 2: (east, mid_lat), 3: (mid_lon, south), 4: (mid_lon, north),
             5: (west + 0.0005, south + 0.0003), 6: (west + 0.0015, south + 0.0003), 7: (west + 0.0015, south + 0.0008),
             8: (west + 0.0005, south + 0.0008), 9: (west, north - 0.0004), 10: (east, north - 0.0002)}
    ways = [(101, [1, 2], {"highway": "residential", "name": "Teststraat"}),
            (102, [3, 4], {"highway": "secondary", "name": "Proefweg"}),
            (103, [9, 10], {"highway": "footway"}),
            (104, [5, 6, 7, 8, 5], {"leisure": "park", "name": "Testpark"})]
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="sociogeo tests">']
    lines += [f'  <node id="{i}" version="1" lat="{lat:.7f}" lon="{lon:.7f}"/>' for i, (lon, lat) in nodes.items()]
    for wid, refs, tags in ways:
        lines.append(f'  <way id="{wid}" version="1">')
        lines += [f'    <nd ref="{r}"/>' for r in refs]
        lines += [f'    <tag k="{k}" v="{v}"/>' for k, v in tags.items()]
        lines.append("  </way>")
    lines.append("</osm>")
    path = tmp_path_factory.mktemp("osm") / "rotterdam.osm"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _reference_warp(path, grid, bands, *, resampling="nearest", nodata=None):
    """Bands of a raster warped onto a PixelGrid by rasterio directly: (len(bands) x H x W float64
    with NaN where there is no data)."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    with rasterio.open(path) as src:
        out = np.full((len(bands), *grid.shape), np.nan, dtype=np.float64)
        reproject(rasterio.band(src, list(bands)), out, dst_transform=grid.transform, dst_crs="EPSG:3857",
                  resampling=Resampling[resampling], dst_nodata=np.nan,
                  src_nodata=nodata if nodata is not None else src.nodata)
    return out


@pytest.fixture(scope="session")
def reference_warp():
    """``reference_warp(path, grid, bands, resampling=, nodata=)``: rasterio.warp.reproject of the
    given bands straight onto the grid (NaN = no data), an independent reference for raster layers."""
    return _reference_warp
