"""Tile fetching against a real loopback HTTP server: cache, offline mode, faults, decoding, strips.

The server renders tiles from a real Landsat raster (tests/data/sf_landsat7.tif); independent
reference images come from rasterio.warp.reproject straight onto the same grid.
"""

from __future__ import annotations

import io
import tracemalloc
import warnings

import numpy as np
import pytest

from sociogeo.errors import CacheError, OfflineError, TileFetchError
from sociogeo.geo.area import Area
from sociogeo.geo.grid import PixelGrid
from sociogeo.imagery.cache import TileCache
from sociogeo.imagery.providers import resolve_provider
from sociogeo.imagery.tiles import MissingTilesWarning, TileFetcher, decode_tile, fetch_mosaic, iter_mosaic_strips


def tiles_requested(server):
    return [r.tile for r in server.requests if r.tile is not None]


# -- the happy path -------------------------------------------------------------------------------
def test_mosaic_matches_the_raster_warped_onto_the_grid(
    tile_server, sf_area, fixture_raster, tile_cache_dir, warp_to_grid
):
    grid = sf_area.grid
    mosaic = fetch_mosaic(grid, tile_server.url_template("sat"), cache_dir=tile_cache_dir)
    expected, expected_valid = warp_to_grid(fixture_raster, grid)
    assert mosaic.image.shape == (*grid.shape, 3) and mosaic.image.dtype == np.uint8
    assert mosaic.missing == []
    np.testing.assert_array_equal(mosaic.valid, expected_valid)
    np.testing.assert_array_equal(mosaic.image[mosaic.valid], expected[expected_valid])
    assert mosaic.image.std() > 10  # real imagery, not a flat fill
    assert sorted(set(tiles_requested(tile_server))) == sorted(grid.tiles())


def test_requests_identify_sociogeo_not_a_browser(tile_server, sf_area, _reset_sociogeo_options):
    options = _reset_sociogeo_options
    fetch_mosaic(sf_area.grid, tile_server.url_template("sat"), cache_dir=False)
    assert tile_server.user_agents == {options.user_agent}
    assert options.user_agent.startswith("sociogeo/")
    assert "Mozilla" not in options.user_agent
    tile_server.reset_log()
    options.user_agent = "my-lab-pipeline/2.0 (ops@example.org)"
    fetch_mosaic(sf_area.grid, tile_server.url_template("sat"), cache_dir=False)
    assert tile_server.user_agents == {"my-lab-pipeline/2.0 (ops@example.org)"}


def test_strips_equal_the_whole_mosaic_and_fetch_each_tile_once(tile_server, sf_area):
    grid = sf_area.grid
    whole = fetch_mosaic(grid, tile_server.url_template("sat"), cache_dir=False)
    tile_server.reset_log()
    strips = list(iter_mosaic_strips(grid, tile_server.url_template("sat"), strip_rows=100, cache_dir=False))
    # 100-row strips do not line up with 256-px tiles: tiles straddle strips
    assert [s.grid.height for s in strips] == [100, 100, 96]
    assert all(s.grid.width == grid.width for s in strips)
    np.testing.assert_array_equal(np.concatenate([s.image for s in strips]), whole.image)
    np.testing.assert_array_equal(np.concatenate([s.valid for s in strips]), whole.valid)
    requested = tiles_requested(tile_server)
    assert sorted(requested) == sorted(grid.tiles())  # each once, none twice


def test_default_strips_are_rows_of_tiles(tile_server, sf_area):
    grid = sf_area.grid
    strips = list(iter_mosaic_strips(grid, tile_server.url_template("sat"), cache_dir=False))
    first = 256 - grid.row_off % 256
    assert [s.grid.height for s in strips] == [first, grid.height - first]
    assert [s.grid.row_off % 256 for s in strips[1:]] == [0]
    whole = fetch_mosaic(grid, tile_server.url_template("sat"), cache_dir=False)
    np.testing.assert_array_equal(np.concatenate([s.image for s in strips]), whole.image)


def test_strip_memory_does_not_grow_with_the_area(tile_server):
    """Python-side peak memory of streaming a 4x taller grid stays about the same."""
    base = Area.from_bbox((-122.42, 37.80, -122.41, 37.81), zoom=16).grid

    def peak(height):
        grid = PixelGrid(16, base.col_off, base.row_off, 768, height)
        tracemalloc.start()
        rows = 0
        for strip in iter_mosaic_strips(grid, tile_server.url_template("sat"), cache_dir=False):
            rows += strip.grid.height
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert rows == height
        return top

    small, large = peak(1024), peak(4096)
    # holding the whole mosaic would add 9.4 MB (3072 more rows x 768 px x (3 + 1) bytes) to `large`;
    # the server renders in this process too, so both peaks include its buffers
    assert large - small < 0.3 * 3072 * 768 * 4, (small, large)


# -- the cache ------------------------------------------------------------------------------------
def test_second_fetch_is_served_from_the_cache(tile_server, sf_area, tile_cache_dir):
    url = tile_server.url_template("sat")
    first = fetch_mosaic(sf_area.grid, url, cache_dir=tile_cache_dir)
    n_tiles = sf_area.grid.n_tiles()
    assert tile_server.n_requests == n_tiles
    with TileFetcher(url, cache_dir=tile_cache_dir) as fetcher:
        second = fetcher.read(sf_area.grid)
        assert fetcher.stats["cache_hits"] == n_tiles
    assert tile_server.n_requests == n_tiles  # no new request
    np.testing.assert_array_equal(first.image, second.image)
    np.testing.assert_array_equal(first.valid, second.valid)


def test_corrupt_and_truncated_cache_files_are_refetched(tile_server, sf_area, tile_cache_dir):
    url = tile_server.url_template("sat")
    first = fetch_mosaic(sf_area.grid, url, cache_dir=tile_cache_dir)
    cache = TileCache(tile_cache_dir)
    key = resolve_provider(url).key
    truncated, garbage = list(sf_area.grid.tiles())[:2]
    path = cache.path(key, *truncated)
    path.write_bytes(path.read_bytes()[:200])
    cache.path(key, *garbage).write_bytes(b"<html>502 Bad Gateway</html>")
    tile_server.reset_log()

    second = fetch_mosaic(sf_area.grid, url, cache_dir=tile_cache_dir)
    assert sorted(tiles_requested(tile_server)) == sorted([truncated, garbage])
    np.testing.assert_array_equal(first.image, second.image)
    # the refetched tiles are whole again
    for tile in (truncated, garbage):
        decode_tile(cache.get(key, *tile))


def test_cache_writes_are_atomic_and_misses_are_none(tmp_path):
    cache = TileCache(tmp_path / "c")
    assert cache.get("k", 1, 0, 0) is None
    png = _png("RGB")
    path = cache.put("k", 1, 0, 0, png)
    assert path.read_bytes().endswith(png) and ("k", 1, 0, 0) in cache
    assert not list(path.parent.glob("*.part"))  # no temporary files left behind
    assert cache.get("k", 1, 0, 0) == png


def test_unusable_cache_dir_is_a_cache_error(tmp_path):
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    with pytest.raises(CacheError, match="not a directory"):
        TileCache(a_file)
    with pytest.raises(CacheError, match="cannot create"):
        TileCache(a_file / "sub")
    with pytest.raises(CacheError):
        TileFetcher("http://127.0.0.1:9/t/{z}/{x}/{y}.png", cache_dir=a_file)


def test_offline_with_empty_cache_lists_the_missing_tiles(tile_server, sf_area, tile_cache_dir):
    with pytest.raises(OfflineError) as info:
        fetch_mosaic(sf_area.grid, tile_server.url_template("sat"), cache_dir=tile_cache_dir, offline=True)
    message = str(info.value)
    for z, x, y in sf_area.grid.tiles():
        assert f"{z}/{x}/{y}" in message
    assert "offline" in message
    assert tile_server.n_requests == 0


def test_offline_with_full_cache_makes_no_request(tile_server, sf_area, tile_cache_dir, _reset_sociogeo_options):
    url = tile_server.url_template("sat")
    online = fetch_mosaic(sf_area.grid, url, cache_dir=tile_cache_dir)
    tile_server.reset_log()
    _reset_sociogeo_options.offline = True  # offline=None follows options.offline
    offline = fetch_mosaic(sf_area.grid, url, cache_dir=tile_cache_dir)
    assert tile_server.n_requests == 0
    np.testing.assert_array_equal(online.image, offline.image)


def test_offline_with_partial_cache_warns_and_names_what_is_missing(tile_server, sf_area, tile_cache_dir, tile_mask):
    url = tile_server.url_template("sat")
    fetch_mosaic(sf_area.grid, url, cache_dir=tile_cache_dir)
    gone = list(sf_area.grid.tiles())[-1]
    TileCache(tile_cache_dir).path(resolve_provider(url).key, *gone).unlink()
    with pytest.warns(MissingTilesWarning, match=f"1 of {sf_area.grid.n_tiles()} tiles.*{'/'.join(map(str, gone))}"):
        mosaic = fetch_mosaic(sf_area.grid, url, cache_dir=tile_cache_dir, offline=True)
    assert [(f.z, f.x, f.y) for f in mosaic.missing] == [gone]
    assert not mosaic.valid[tile_mask(sf_area.grid, gone)].any()


def test_offline_without_a_cache_is_refused():
    with pytest.raises(OfflineError, match="cache_dir=False"):
        TileFetcher("http://127.0.0.1:9/t/{z}/{x}/{y}.png", cache_dir=False, offline=True)


# -- faults ---------------------------------------------------------------------------------------
def test_404_tiles_become_nodata_with_warning_and_metadata(tile_server, sf_area, tile_mask):
    grid = sf_area.grid
    holes = list(grid.tiles())[1:3]
    tile_server.inject("404", tiles=holes)
    with pytest.warns(MissingTilesWarning, match=f"2 of {grid.n_tiles()} tiles.*HTTP 404"):
        mosaic = fetch_mosaic(grid, tile_server.url_template("sat"), cache_dir=False)
    assert sorted((f.z, f.x, f.y) for f in mosaic.missing) == sorted(holes)
    assert {m["reason"] for m in mosaic.metadata["missing_tiles"]} == {"HTTP 404 (no tile here)"}
    hole_pixels = tile_mask(grid, holes[0]) | tile_mask(grid, holes[1])
    assert not mosaic.valid[hole_pixels].any()
    assert (mosaic.image[hole_pixels] == 0).all()
    # a 404 is an answer: asked once, never retried
    assert sorted(r.tile for r in tile_server.requests if r.tile in holes) == sorted(holes)
    tile_server.clear_faults()
    clean = fetch_mosaic(grid, tile_server.url_template("sat"), cache_dir=False)
    assert clean.valid[hole_pixels].mean() > 0.9  # the holes had imagery
    np.testing.assert_array_equal(mosaic.valid, clean.valid & ~hole_pixels)


@pytest.mark.parametrize("status", ["500", "429"])
def test_transient_errors_are_retried_until_they_succeed(tile_server, sf_area, status):
    grid = sf_area.grid
    clean = fetch_mosaic(grid, tile_server.url_template("sat"), cache_dir=False)
    tile_server.reset_log()
    tile_server.inject(status, first=3, retry_after=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingTilesWarning)
        mosaic = fetch_mosaic(grid, tile_server.url_template("sat"), cache_dir=False)
    assert mosaic.missing == []
    np.testing.assert_array_equal(mosaic.image, clean.image)
    assert tile_server.counts[int(status)] == 3
    assert tile_server.counts[200] == grid.n_tiles()


def test_retry_after_is_honoured(tile_server, sf_area):
    """The retry of a 429'd tile waits at least Retry-After seconds (backoff here is 1 ms)."""
    tile = next(sf_area.grid.tiles())
    tile_server.inject("429", tiles=[tile], first=1, retry_after=1)
    fetch_mosaic(sf_area.grid, tile_server.url_template("sat"), cache_dir=False)
    attempts = [r for r in tile_server.requests if r.tile == tile]
    assert [r.status for r in attempts] == [429, 200]
    assert attempts[1].time - attempts[0].time >= 0.95


def test_persistent_server_errors_are_reported_after_retries(tile_server, sf_area, _reset_sociogeo_options):
    _reset_sociogeo_options.retries = 2
    tile = next(sf_area.grid.tiles())
    tile_server.inject("500", tiles=[tile])
    with pytest.warns(MissingTilesWarning, match="HTTP 500"):
        mosaic = fetch_mosaic(sf_area.grid, tile_server.url_template("sat"), cache_dir=False)
    assert [(f.z, f.x, f.y, f.kind) for f in mosaic.missing] == [(*tile, "server")]
    assert "3 attempts" in mosaic.missing[0].reason
    assert sum(r.tile == tile for r in tile_server.requests) == 3


def test_every_tile_failing_raises_with_the_first_error(tile_server, sf_area, _reset_sociogeo_options):
    _reset_sociogeo_options.retries = 1
    tile_server.inject("500")
    with pytest.raises(TileFetchError, match="could not fetch any of the 6 tiles.*HTTP 500"):
        fetch_mosaic(sf_area.grid, tile_server.url_template("sat"), cache_dir=False)


def test_stopped_server_raises_a_clear_error(fixture_raster, sf_area, fast_retries, _reset_sociogeo_options):
    """Also with a connection pool that talked to the server before it stopped."""
    from sociogeo.testing import TileServer

    _reset_sociogeo_options.retries = 1
    with TileServer({"sat": fixture_raster}) as server:
        fetcher = TileFetcher(server.url_template("sat"), cache_dir=False)
        assert fetcher.read(sf_area.grid).missing == []
    assert not server.running
    with fetcher, pytest.raises(TileFetchError, match="cannot connect to 127.0.0.1") as info:
        fetcher.read(sf_area.grid)
    assert "Connection refused" in str(info.value)


def test_slow_responses_time_out_are_retried_then_reported(tile_server, sf_area, _reset_sociogeo_options, tile_mask):
    _reset_sociogeo_options.timeout_s = 0.1
    _reset_sociogeo_options.retries = 1
    tile = next(sf_area.grid.tiles())
    tile_server.inject("slow", tiles=[tile], delay_s=0.4)
    with pytest.warns(MissingTilesWarning, match="timed out"):
        mosaic = fetch_mosaic(sf_area.grid, tile_server.url_template("sat"), cache_dir=False)
    assert [(f.z, f.x, f.y, f.kind) for f in mosaic.missing] == [(*tile, "network")]
    assert "2 attempts" in mosaic.missing[0].reason
    assert mosaic.valid[~tile_mask(sf_area.grid, tile)].mean() > 0.9


def test_truncated_png_is_a_failure_and_is_not_cached(tile_server, sf_area, tile_cache_dir, _reset_sociogeo_options):
    _reset_sociogeo_options.retries = 1
    url = tile_server.url_template("sat")
    key = resolve_provider(url).key
    bad, flaky = list(sf_area.grid.tiles())[:2]
    tile_server.inject("truncate", tiles=[bad])
    tile_server.inject("truncate", tiles=[flaky], first=1)
    with pytest.warns(MissingTilesWarning, match="invalid image"):
        mosaic = fetch_mosaic(sf_area.grid, url, cache_dir=tile_cache_dir)
    assert [(f.z, f.x, f.y, f.kind) for f in mosaic.missing] == [(*bad, "invalid")]
    cache = TileCache(tile_cache_dir)
    assert (key, *bad) not in cache
    decode_tile(cache.get(key, *flaky))  # the retry succeeded and was cached whole


# -- decoding and coverage ------------------------------------------------------------------------
def _png(mode, size=256, **save):
    from PIL import Image

    rng = np.random.default_rng(0)
    if mode == "P":
        img = Image.fromarray(rng.integers(0, 4, (size, size), dtype=np.uint8), "P")
        img.putpalette([10, 20, 30, 200, 10, 10, 10, 200, 10, 250, 250, 250])
    elif mode == "L":
        img = Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8), "L")
    else:
        channels = {"RGB": 3, "RGBA": 4}[mode]
        img = Image.fromarray(rng.integers(0, 255, (size, size, channels), dtype=np.uint8), mode)
    buf = io.BytesIO()
    img.save(buf, **({"format": "PNG"} | save))
    return buf.getvalue()


def test_decode_handles_rgba_palette_greyscale_and_jpeg():
    from PIL import Image

    rgba = Image.open(io.BytesIO(_png("RGBA"))).convert("RGBA")
    alpha = np.asarray(rgba)[..., 3]
    tile = decode_tile(_png("RGBA"))
    np.testing.assert_array_equal(tile.valid, alpha > 0)
    assert (tile.rgb[alpha == 0] == 0).all()
    np.testing.assert_array_equal(tile.rgb[alpha > 0], np.asarray(rgba)[..., :3][alpha > 0])

    # palette with index 0 transparent
    pal = decode_tile(_png("P", transparency=0))
    index = np.asarray(Image.open(io.BytesIO(_png("P", transparency=0))))
    np.testing.assert_array_equal(pal.valid, index != 0)
    assert tuple(pal.rgb[index == 1][0]) == (200, 10, 10)

    grey = decode_tile(_png("L"))
    assert grey.valid.all() and (grey.rgb[..., 0] == grey.rgb[..., 2]).all()

    jpeg = decode_tile(_png("RGB", format="JPEG", quality=90))
    assert jpeg.rgb.shape == (256, 256, 3) and jpeg.valid.all()


def _previous_decode(data: bytes, tile_size: int = 256):
    """decode_tile as it was before it stopped copying RGB out of a strided RGBA view: the reference."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        assert img.size == (tile_size, tile_size)
        if img.mode in {"RGBA", "LA", "PA", "La", "RGBa"} or "transparency" in img.info:
            rgba = np.asarray(img.convert("RGBA"))
            valid = rgba[..., 3] > 0
            rgb = np.where(valid[..., None], rgba[..., :3], 0).astype(np.uint8)
        else:
            rgb = np.array(img.convert("RGB"), dtype=np.uint8)
            valid = np.ones((tile_size, tile_size), dtype=bool)
    return rgb, valid


def _assert_decodes_as_before(data: bytes) -> None:
    tile = decode_tile(data)
    rgb, valid = _previous_decode(data)
    assert tile.rgb.dtype == np.uint8 and tile.rgb.shape == (256, 256, 3) and tile.valid.dtype == bool
    assert tile.rgb.flags.c_contiguous and tile.rgb.flags.writeable
    np.testing.assert_array_equal(tile.rgb, rgb)
    np.testing.assert_array_equal(tile.valid, valid)


def test_decode_equals_the_previous_decoder_on_served_tiles(tile_server):
    """Real tiles: the Landsat fixture and its map layer, including tiles cut by the raster's edge."""
    inside = Area.from_bbox((-122.4105, 37.7825, -122.3965, 37.7925), zoom=15).grid.tiles()
    edge = Area.from_bbox((-122.445, 37.76, -122.425, 37.775), zoom=15).grid.tiles()
    seen = {"partly transparent": 0, "opaque": 0}
    for layer in ("sat", "map"):
        for tile in [*inside, *edge]:
            png = tile_server.render(layer, *tile)
            if png is None:
                continue
            _assert_decodes_as_before(png)
            valid = decode_tile(png).valid
            seen["opaque" if valid.all() else "partly transparent"] += 1
    assert seen["partly transparent"] >= 2 and seen["opaque"] >= 2


def _edge_case_pngs():
    from PIL import Image

    rng = np.random.default_rng(3)
    colours = rng.integers(1, 256, (256, 256, 3), dtype=np.uint8)  # never 0: blanking shows
    alpha = rng.choice(np.array([0, 1, 128, 255], dtype=np.uint8), (256, 256))
    images = {
        "RGBA, alpha 0/1/128/255 under colour": Image.fromarray(np.dstack([colours, alpha]), "RGBA"),
        "RGBA, fully transparent": Image.fromarray(np.dstack([colours, np.zeros_like(alpha)]), "RGBA"),
        "RGBA, opaque": Image.fromarray(np.dstack([colours, np.full_like(alpha, 255)]), "RGBA"),
        "LA": Image.fromarray(np.dstack([colours[..., 0], alpha]), "LA"),
        "RGB": Image.fromarray(colours, "RGB"),
        "L": Image.fromarray(colours[..., 1], "L"),
    }
    out = {name: _save(img) for name, img in images.items()}
    index = rng.integers(0, 4, (256, 256), dtype=np.uint8)
    palette = Image.fromarray(index, "P")
    palette.putpalette([10, 20, 30, 200, 10, 10, 10, 200, 10, 250, 250, 250])
    out["P, index 0 transparent"] = _save(palette, transparency=0)
    out["P, alpha per index"] = _save(palette, transparency=bytes([0, 90, 255, 0]))
    out["L, grey 7 transparent"] = _save(Image.fromarray(index * 7, "L"), transparency=7)
    out["RGB, colour key"] = _save(Image.fromarray(np.dstack([index * 50] * 3), "RGB"), transparency=(50, 50, 50))
    out["JPEG"] = _save(Image.fromarray(colours, "RGB"), format="JPEG", quality=90)
    out["WebP RGBA"] = _save(Image.fromarray(np.dstack([colours, alpha]), "RGBA"), format="WEBP", lossless=True)
    return out


def _save(img, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, **({"format": "PNG"} | options))
    return buf.getvalue()


@pytest.mark.parametrize("name", list(_edge_case_pngs()))
def test_decode_equals_the_previous_decoder_on_edge_cases(name):
    data = _edge_case_pngs()[name]
    _assert_decodes_as_before(data)
    tile = decode_tile(data)
    if name.startswith("RGBA, alpha"):
        assert 0 < tile.valid.mean() < 1 and (tile.rgb[~tile.valid] == 0).all()
        assert (tile.rgb[tile.valid] > 0).all()  # alpha 1 and 128 keep their colour
    if name == "RGBA, fully transparent":
        assert not tile.valid.any() and not tile.rgb.any()


def test_decode_rejects_truncated_foreign_and_wrong_size_tiles():
    with pytest.raises(ValueError, match="not a complete image"):
        decode_tile(_png("RGB")[:500])
    with pytest.raises(ValueError, match="not a complete image"):
        decode_tile(b"<html>rate limited</html>")
    with pytest.raises(ValueError, match="512 x 512"):
        decode_tile(_png("RGB", size=512))


def test_area_beyond_coverage_is_transparent_then_404(tile_server, fixture_raster, warp_to_grid):
    """The raster's west edge at ~-122.435: partly covered tiles are transparent beyond it, tiles
    wholly outside are 404; both end up invalid, matching the raster's own footprint."""
    grid = Area.from_bbox((-122.47, 37.78, -122.42, 37.79), zoom=15).grid
    with pytest.warns(MissingTilesWarning, match="HTTP 404"):
        mosaic = fetch_mosaic(grid, tile_server.url_template("sat"), cache_dir=False)
    assert mosaic.missing  # some tiles lie entirely west of the raster
    _, expected_valid = warp_to_grid(fixture_raster, grid)
    np.testing.assert_array_equal(mosaic.valid, expected_valid)
    assert 0.1 < mosaic.valid.mean() < 0.9


def test_server_warps_rasters_in_any_crs(fixture_raster, tmp_path, fast_retries, warp_to_grid):
    """A UTM (EPSG:32610) copy of the raster, served by the tile server, matches the same UTM
    raster warped onto the grid by rasterio directly."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import calculate_default_transform, reproject

    from sociogeo.testing import TileServer

    utm = tmp_path / "sf_utm.tif"
    with rasterio.open(fixture_raster) as src:
        transform, width, height = calculate_default_transform(src.crs, "EPSG:32610", src.width, src.height,
                                                               *src.bounds, resolution=25)
        profile = src.profile | {"crs": "EPSG:32610", "transform": transform, "width": width, "height": height}
        with rasterio.open(utm, "w", **profile) as dst:
            for band in (1, 2, 3):
                reproject(rasterio.band(src, band), rasterio.band(dst, band), resampling=Resampling.nearest)
    grid = Area.from_bbox((-122.41, 37.78, -122.39, 37.80), zoom=15).grid
    with TileServer({"utm": utm}) as server:
        mosaic = fetch_mosaic(grid, server.url_template("utm"), cache_dir=False)
    expected, expected_valid = warp_to_grid(utm, grid)
    assert mosaic.missing == []
    assert (mosaic.valid == expected_valid).mean() > 0.999
    both = mosaic.valid & expected_valid
    assert (mosaic.image[both] == expected[both]).all(axis=-1).mean() > 0.999
    # and it is the same place as the original Web-Mercator raster (within resampling noise)
    original, _ = warp_to_grid(fixture_raster, grid)
    corr = np.corrcoef(mosaic.image[both].ravel().astype(float), original[both].ravel().astype(float))[0, 1]
    assert corr > 0.9


def test_tile_server_sends_without_delay(tile_server, sf_area):
    """Keep-alive sockets have TCP_NODELAY: no ~40 ms Nagle/delayed-ACK stall per response."""
    import socket

    import requests

    with requests.Session() as session:
        z, x, y = next(iter(sf_area.grid.tiles()))
        assert session.get(f"{tile_server.url}/sat/{z}/{x}/{y}.png", timeout=10).status_code == 200
        with tile_server._lock:
            open_sockets = list(tile_server._connections)
        assert open_sockets  # the session's connection, kept alive
        for sock in open_sockets:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_tile_server_answers_png_tiles_and_404s(tile_server, sf_area):
    import requests
    from PIL import Image

    z, x, y = next(sf_area.grid.tiles())
    ok = requests.get(f"{tile_server.url}/map/{z}/{x}/{y}.png", timeout=10)
    assert ok.status_code == 200 and ok.headers["Content-Type"] == "image/png"
    img = Image.open(io.BytesIO(ok.content))
    assert img.size == (256, 256) and img.mode == "RGBA"
    for path in ("/nope/1/0/0.png", "/map/1/0/0.jpg", f"/map/{z}/{2**z}/{y}.png", "/map/0/0/0.png"):
        assert requests.get(tile_server.url + path, timeout=10).status_code == 404, path
    assert [r.status for r in tile_server.requests] == [200, 404, 404, 404, 404]
    with pytest.raises(KeyError, match="sat, map"):
        tile_server.url_template("satellite")
    with pytest.raises(ValueError, match="unknown fault"):
        tile_server.inject("503")
