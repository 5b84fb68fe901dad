"""Cached tiles keep their decoded pixels: a warm fetch reads and checks a file instead of decoding an
image, gives the same pixels as decoding the served bytes, and a damaged or foreign file is refetched."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest

import sociogeo
from sociogeo.imagery import cache as cache_module
from sociogeo.imagery.cache import MAGIC, MAGIC_DECODED, TileCache
from sociogeo.imagery.providers import resolve_provider
from sociogeo.imagery.tiles import TileFetcher, decode_tile, fetch_mosaic, pack_tile, unpack_tile


@pytest.fixture
def decoded(monkeypatch):
    """Lists the sizes of the images whose pixels PIL decodes (its load, still run for real; a load
    of an image already decoded decodes nothing and is not listed).
    """
    from PIL import ImageFile

    calls = []
    real = ImageFile.ImageFile.load

    def load(self):
        if self.tile:  # emptied once the pixels are decoded
            calls.append(self.size)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return calls


def _requested(server) -> list:
    return [r.tile for r in server.requests if r.tile is not None]


def _served(server, area) -> dict:
    """Each tile of ``area`` decoded from the bytes the server sends, with PIL alone (no sociogeo)."""
    from PIL import Image

    out = {}
    for t in area.grid.tiles():
        rgba = np.asarray(Image.open(io.BytesIO(server.render("sat", *t))).convert("RGBA"))
        out[t] = (np.where(rgba[..., 3:] > 0, rgba[..., :3], 0), rgba[..., 3] > 0)
    return out


def _mosaic_from(tiles: dict, grid) -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((grid.height, grid.width, 3), np.uint8)
    valid = np.zeros((grid.height, grid.width), bool)
    for t, (rgb, ok) in tiles.items():
        tr, tc, gr, gc = grid.tile_placement(t[1], t[2])
        image[gr, gc], valid[gr, gc] = rgb[tr, tc], ok[tr, tc]
    return image, valid


def test_a_warm_fetch_decodes_nothing_and_equals_the_served_tiles(tile_server, sf_area, tile_cache_dir, decoded):
    url = tile_server.url_template("sat")
    cold = fetch_mosaic(sf_area.grid, url, cache_dir=tile_cache_dir)
    assert len(decoded) == sf_area.grid.n_tiles()  # each served tile decoded once, on arrival
    decoded.clear()
    tile_server.reset_log()

    warm = fetch_mosaic(sf_area.grid, url, cache_dir=tile_cache_dir)
    assert decoded == [] and _requested(tile_server) == []  # read back, neither decoded nor asked for
    image, valid = _mosaic_from(_served(tile_server, sf_area), sf_area.grid)
    for mosaic in (cold, warm):
        np.testing.assert_array_equal(mosaic.image, image)
        np.testing.assert_array_equal(mosaic.valid, valid)
    for path in tile_cache_dir.rglob("*.tile"):
        assert path.read_bytes().startswith(MAGIC_DECODED)


def _rgba_png(alpha: np.ndarray) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(3)
    rgba = np.dstack([rng.integers(0, 256, (*alpha.shape, 3), dtype=np.uint8), alpha])
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("clear", ["none", "some", "all"])
def test_packed_tiles_unpack_to_the_decoded_tile(clear):
    alpha = np.full((256, 256), 255, np.uint8)
    if clear == "some":
        alpha[:37, 100:] = 0
        alpha[200, 3] = 0
    elif clear == "all":
        alpha[:] = 0
    tile = decode_tile(_rgba_png(alpha))
    packed = pack_tile(tile)
    back = unpack_tile(packed)
    np.testing.assert_array_equal(back.rgb, tile.rgb)
    np.testing.assert_array_equal(back.valid, alpha > 0)
    assert back.valid.dtype == bool and back.rgb.dtype == np.uint8
    # a mask is stored only when some pixel is nodata (one bit a pixel)
    assert len(packed) == 3 + 256 * 256 * 3 + (0 if clear == "none" else 256 * 256 // 8)


@pytest.mark.parametrize("damage", ["cut", "grown", "size", "flag"])
def test_unpack_refuses_anything_but_a_packed_tile_of_its_size(damage):
    packed = bytearray(pack_tile(decode_tile(_rgba_png(np.full((256, 256), 255, np.uint8)))))
    if damage == "cut":
        packed = packed[:-1]
    elif damage == "grown":
        packed += b"\0"
    elif damage == "size":
        packed[1] = 2  # declares 512 px (little-endian 256 is 00 01)
    else:
        packed[2] = 7
    with pytest.raises(ValueError):
        unpack_tile(bytes(packed))
    with pytest.raises(ValueError):
        unpack_tile(pack_tile(decode_tile(_rgba_png(np.full((256, 256), 255, np.uint8)))), tile_size=512)


def test_a_flipped_bit_in_the_decoded_pixels_is_detected_and_refetched(tile_server, sf_area, tile_cache_dir):
    url = tile_server.url_template("sat")
    first = fetch_mosaic(sf_area.grid, url, cache_dir=tile_cache_dir)
    key = resolve_provider(url).key
    victim = list(sf_area.grid.tiles())[1]
    path = TileCache(tile_cache_dir).path(key, *victim)
    stored = path.read_bytes()
    damaged = bytearray(stored)
    damaged[-1000] ^= 0x10  # one RGB byte of the decoded pixels: still unpacks, wrong colour
    path.write_bytes(bytes(damaged))
    tile_server.reset_log()

    second = fetch_mosaic(sf_area.grid, url, cache_dir=tile_cache_dir)
    assert _requested(tile_server) == [victim]
    np.testing.assert_array_equal(first.image, second.image)
    assert path.read_bytes() == stored


def test_without_decoded_caching_files_hold_the_bytes_only_and_decoded_files_still_serve(
    tile_server, sf_area, tile_cache_dir, decoded
):
    url = tile_server.url_template("sat")
    key = resolve_provider(url).key
    tiles = list(sf_area.grid.tiles())
    with sociogeo.options.context(cache_decoded=False):
        lean = fetch_mosaic(sf_area.grid, url, cache_dir=tile_cache_dir)
        for t in tiles:
            stored = TileCache(tile_cache_dir).path(key, *t).read_bytes()
            assert stored.startswith(MAGIC) and len(stored) < 256 * 256  # the PNG, not its pixels
        decoded.clear()
        again = fetch_mosaic(sf_area.grid, url, cache_dir=tile_cache_dir)
        assert len(decoded) == len(tiles)  # decoded again on each read
    np.testing.assert_array_equal(lean.image, again.image)

    decoded.clear()
    upgraded = fetch_mosaic(sf_area.grid, url, cache_dir=tile_cache_dir)  # cache_decoded on (the default)
    assert len(decoded) == len(tiles)  # decoded once more, and stored with the pixels
    assert all(TileCache(tile_cache_dir).path(key, *t).read_bytes().startswith(MAGIC_DECODED) for t in tiles)
    decoded.clear()
    with sociogeo.options.context(cache_decoded=False):
        last = fetch_mosaic(sf_area.grid, url, cache_dir=tile_cache_dir)
    assert decoded == []  # pixels already on disk are used whatever the setting
    for mosaic in (upgraded, last):
        np.testing.assert_array_equal(mosaic.image, lean.image)


def test_cache_files_with_pixels_carry_both_digests(tmp_path):
    cache = TileCache(tmp_path)
    png = _rgba_png(np.full((256, 256), 255, np.uint8))
    packed = pack_tile(decode_tile(png))
    stored = cache.put("k", 3, 1, 2, png, decoded=packed).read_bytes()
    assert stored == (MAGIC_DECODED + hashlib.sha256(png).digest() + hashlib.sha256(packed).digest()
                      + len(png).to_bytes(8, "little") + png + packed)
    assert cache.get("k", 3, 1, 2) == png  # without unpack: the tile's bytes, checked
    tile = cache.get("k", 3, 1, 2, decode=decode_tile, unpack=unpack_tile)
    np.testing.assert_array_equal(tile.rgb, decode_tile(png).rgb)


@pytest.mark.parametrize("damage", ["cut in the header", "cut in the pixels", "length past the end", "too big"])
def test_damaged_files_with_pixels_are_misses_and_deleted(tmp_path, monkeypatch, damage):
    cache = TileCache(tmp_path)
    png = _rgba_png(np.full((256, 256), 255, np.uint8))
    path = cache.put("k", 3, 1, 2, png, decoded=pack_tile(decode_tile(png)))
    stored = path.read_bytes()
    if damage == "cut in the header":
        path.write_bytes(stored[:len(MAGIC_DECODED) + 40])
    elif damage == "cut in the pixels":
        path.write_bytes(stored[:-5])
    elif damage == "length past the end":
        at = len(MAGIC_DECODED) + 64
        path.write_bytes(stored[:at] + (10**9).to_bytes(8, "little") + stored[at + 8:])
    else:
        monkeypatch.setattr(cache_module, "MAX_FILE_BYTES", len(stored) - 1)
    assert cache.get("k", 3, 1, 2, decode=decode_tile, unpack=unpack_tile) is None
    assert not path.exists() and cache.discarded == 1


def test_a_tile_cached_by_an_older_version_gains_its_pixels_on_first_read(tmp_path, decoded):
    png = _rgba_png(np.full((256, 256), 255, np.uint8))
    cache = TileCache(tmp_path)
    fetcher = TileFetcher("http://127.0.0.1:9/{z}/{x}/{y}.png", cache_dir=cache, offline=True)
    path = cache.put(fetcher.provider.key, 3, 1, 2, png)  # bytes and digest only, as the last version wrote
    first = fetcher.cached_tile(3, 1, 2)
    assert len(decoded) == 1 and path.read_bytes().startswith(MAGIC_DECODED)
    decoded.clear()
    second = fetcher.cached_tile(3, 1, 2)
    assert decoded == []
    np.testing.assert_array_equal(first.rgb, second.rgb)
    np.testing.assert_array_equal(second.rgb, decode_tile(png).rgb)
