"""Tiles are verified before they are used: cached tiles carry a SHA-256 digest checked on every
read (a flipped bit is refetched), and an image's size is checked from its header before decoding."""

from __future__ import annotations

import io

import numpy as np
import pytest

from sociogeo.imagery.cache import MAGIC, TileCache, check_image
from sociogeo.imagery.providers import resolve_provider
from sociogeo.imagery.tiles import decode_tile, fetch_mosaic


def _requested(server) -> list:
    return [r.tile for r in server.requests if r.tile is not None]


def _silent_flip(data: bytes) -> bytes:
    """``data`` with one bit flipped where decoding still succeeds but the pixels change."""
    reference = decode_tile(data).rgb
    for pos in range(len(data) // 2, len(data)):
        flipped = bytearray(data)
        flipped[pos] ^= 0x01
        try:
            if (decode_tile(bytes(flipped)).rgb != reference).any():
                return bytes(flipped)
        except ValueError:
            continue
    raise AssertionError("no undetectable flip found")


def test_a_flipped_bit_in_a_cached_tile_is_detected_and_refetched(tile_server, sf_area, tile_cache_dir):
    url = tile_server.url_template("sat")
    first = fetch_mosaic(sf_area.grid, url, cache_dir=tile_cache_dir)
    cache = TileCache(tile_cache_dir)
    key = resolve_provider(url).key
    victim = list(sf_area.grid.tiles())[0]
    path = cache.path(key, *victim)
    stored = path.read_bytes()
    source = cache.get(key, *victim)  # the tile's bytes as served (the file also holds its pixels)
    start, end = stored.index(source), stored.index(source) + len(source)
    path.write_bytes(stored[:start] + _silent_flip(source) + stored[end:])  # decodes fine, wrong pixels
    tile_server.reset_log()

    second = fetch_mosaic(sf_area.grid, url, cache_dir=tile_cache_dir)
    assert _requested(tile_server) == [victim]  # only the damaged tile came again
    np.testing.assert_array_equal(first.image, second.image)
    assert path.read_bytes() == stored  # and is cached whole again


def test_cache_files_carry_the_digest_of_their_bytes(tmp_path):
    import hashlib

    cache = TileCache(tmp_path)
    png = _png(64)
    stored = cache.put("k", 3, 1, 2, png).read_bytes()
    assert stored == MAGIC + hashlib.sha256(png).digest() + png
    assert cache.get("k", 3, 1, 2) == png


def test_a_cache_file_from_before_digests_is_used_and_upgraded(tmp_path):
    cache = TileCache(tmp_path)
    png = _png(64)
    path = cache.path("k", 3, 1, 2)
    path.parent.mkdir(parents=True)
    path.write_bytes(png)  # the bare image, as older versions wrote it
    assert cache.get("k", 3, 1, 2) == png
    assert path.read_bytes().startswith(MAGIC)  # rewritten with its digest
    assert cache.get("k", 3, 1, 2) == png and cache.discarded == 0


def _png(size: int, *, height: int | None = None) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, height or size), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def decoded(monkeypatch):
    """Counts images whose pixels were decoded (PIL's load, still run for real)."""
    from PIL import ImageFile

    calls = []
    real = ImageFile.ImageFile.load

    def load(self):
        calls.append(self.size)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return calls


def test_an_oversized_tile_is_refused_from_its_header_without_decoding(decoded):
    big = _png(6000, height=5000)  # 90 MB of pixels in a few kB of PNG
    assert len(big) < 1_000_000
    with pytest.raises(ValueError, match="6000 x 5000"):
        decode_tile(big)
    assert decoded == []  # refused before a pixel was decoded
    decode_tile(_png(256))
    assert decoded and set(decoded) == {(256, 256)}


def test_the_cache_check_refuses_huge_images_without_decoding(decoded):
    with pytest.raises(ValueError, match="declares 6000 x 5000"):
        check_image(_png(6000, height=5000))
    assert decoded == []


def test_an_oversized_tile_from_the_server_is_missing_not_decoded(tile_server, sf_area, tile_cache_dir, decoded):
    """A server answering a decompression bomb for a tile: the tile is invalid, never decoded nor cached."""
    from sociogeo.errors import MissingTilesWarning

    victim = list(sf_area.grid.tiles())[0]
    tile_server.inject("huge", tiles=[victim])
    url = tile_server.url_template("sat")
    with pytest.warns(MissingTilesWarning, match="6000 x 5000"):
        mosaic = fetch_mosaic(sf_area.grid, url, cache_dir=tile_cache_dir)
    assert [(f.z, f.x, f.y, f.kind) for f in mosaic.missing] == [(*victim, "invalid")]
    assert (6000, 5000) not in decoded
    assert (resolve_provider(url).key, *victim) not in TileCache(tile_cache_dir)
