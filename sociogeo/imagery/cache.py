"""An on-disk tile cache: ``<root>/tiles/<provider key>/<z>/<x>/<y>.tile``.

Writes are atomic (a temporary file in the same directory, then ``os.replace``), so a crash or a
concurrent writer never leaves half a tile under the final name.

A file holds the tile's bytes as the server sent them, with their SHA-256 digest ahead of them
(:data:`MAGIC`, digest, bytes). It may also hold the tile's *decoded* pixels, with their own digest
(:data:`MAGIC_DECODED`: digests of both, the length of the source bytes, the source bytes, the
decoded bytes), so that reading it back costs a file read and a digest instead of an image decode,
as a decoded-array cache does, at the price of more disk (an uncompressed 256 px RGB tile is 192 kB
against 2-40 kB of PNG or JPEG). Every read checks the digests, and then that the pixels unpack (or
the bytes decode, for a file without pixels); a flipped bit anywhere, a truncated or a foreign file
is deleted and reported as a miss, and fetched again. A file from before digests (the bare image)
is used if it decodes and is then rewritten with its digest.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import CacheError

T = TypeVar("T")

#: The first bytes of a cache file holding the tile's bytes only, followed by their SHA-256.
MAGIC = b"sgtile1\n"
#: The first bytes of a cache file also holding decoded pixels: then the SHA-256 of the tile's bytes,
#: that of the decoded bytes, the tile's length (8 bytes, little-endian), the tile, the decoded bytes.
MAGIC_DECODED = b"sgtile2\n"
_DIGEST = 32
_LENGTH = struct.Struct("<Q")
#: The largest cache file read back (a bigger one is foreign, and is not read into memory).
MAX_FILE_BYTES = 64 * 2**20
#: The most pixels a cached image may declare (checked from its header before decoding).
MAX_IMAGE_PIXELS = 4096 * 4096


def check_image(data: bytes) -> bytes:
    """Return ``data`` if it decodes completely as an image, else raise ``ValueError``."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:  # from the header: nothing decoded yet
                raise ValueError(f"the image declares {img.width} x {img.height} px")
            img.load()  # decodes every pixel: a truncated PNG/JPEG fails here, not in open()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for bad bytes
        raise ValueError(f"not a complete image: {exc}") from exc
    return data


class TileCache:
    """Tiles of any number of providers under one root directory.

    Raises :class:`CacheError` if ``root`` cannot be created or written.
    """

    def __init__(self, root):
        self.root = Path(root).expanduser()
        self.discarded = 0  # corrupt files found and deleted, for diagnostics
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise CacheError(
                f"the tile cache path {self.root} exists but is not a directory; "
                "choose another cache_dir (or set sociogeo.options.cache_dir)"
            ) from None
        except OSError as exc:
            # NotADirectoryError lands here too: a parent of root is a file
            raise CacheError(
                f"cannot create the tile cache directory {self.root} ({exc.strerror}); "
                "choose a writable cache_dir, or pass cache_dir=False to fetch without caching"
            ) from None
        if not self.root.is_dir():
            raise CacheError(f"the tile cache path {self.root} is not a directory; choose another cache_dir")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise CacheError(
                f"the tile cache directory {self.root} is not writable; choose a writable cache_dir, "
                "or pass cache_dir=False to fetch without caching"
            )

    def path(self, key: str, z: int, x: int, y: int) -> Path:
        """Where tile (z, x, y) of provider ``key`` lives (whether or not it exists)."""
        return self.root / "tiles" / key / str(z) / str(x) / f"{y}.tile"

    def __contains__(self, item) -> bool:
        key, z, x, y = item
        return self.path(key, z, x, y).is_file()

    def get(
        self,
        key: str,
        z: int,
        x: int,
        y: int,
        *,
        decode: Callable[[bytes], T] = check_image,
        unpack: Callable[[bytes], T] | None = None,
        pack: Callable[[T], bytes] | None = None,
    ) -> T | None:
        """The cached tile, or ``None`` on a miss.

        A file holding decoded bytes gives ``unpack(decoded)`` when ``unpack`` is given, without
        decoding the tile; otherwise the result is ``decode(tile bytes)``, and with ``pack`` the
        file is then rewritten holding ``pack(result)`` as its decoded bytes, so the next read
        skips the decode. The digests must match, and ``decode``/``unpack`` must not raise;
        otherwise the file is deleted and counts as a miss. The default ``decode`` only checks
        that the bytes are a complete image and returns them.
        """
        path = self.path(key, z, x, y)
        try:
            with open(path, "rb", buffering=0) as f:
                # read() sizes its buffer from fstat; a file bigger than any tile is foreign, not read
                stored = f.read() if os.fstat(f.fileno()).st_size <= MAX_FILE_BYTES else None
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheError(f"cannot read the cached tile {path}: {exc.strerror}") from None
        parts = None if stored is None else _parse(stored)
        if parts is None:
            self._discard(path)  # a flipped bit, a file cut short or grown, a foreign file
            return None
        data, decoded, legacy = parts
        try:
            if decoded is not None and unpack is not None:
                return unpack(decoded)
            value = decode(data)
        except Exception:  # noqa: BLE001 (whatever decode raises, the file is unusable)
            self._discard(path)
            return None
        if pack is not None and decoded is None:
            self.put(key, z, x, y, data, decoded=pack(value))  # the next read skips the decode
        elif legacy:
            self.put(key, z, x, y, data)  # from before digests: from now on it is checked
        return value

    def put(self, key: str, z: int, x: int, y: int, data: bytes, *, decoded: bytes | None = None) -> Path:
        """Store the bytes of tile (z, x, y) with their digest, atomically, and its ``decoded``
        bytes with theirs when given; returns the file's path.

        The caller checks the bytes first (the fetcher decodes every tile before caching it).
        """
        if decoded is None:
            chunks = (MAGIC, hashlib.sha256(data).digest(), data)
        else:
            chunks = (MAGIC_DECODED, hashlib.sha256(data).digest(), hashlib.sha256(decoded).digest(),
                      _LENGTH.pack(len(data)), data, decoded)
        path = self.path(key, z, x, y)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{y}.", suffix=".part", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.writelines(chunks)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise CacheError(
                f"cannot write to the tile cache {self.root} ({exc.strerror or exc}); free some space, "
                "choose another cache_dir, or pass cache_dir=False"
            ) from None
        return path

    def _discard(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise CacheError(f"cannot delete the corrupt cached tile {path}: {exc.strerror}") from None
        self.discarded += 1

    def __repr__(self) -> str:
        return f"TileCache({str(self.root)!r})"


def _parse(stored: bytes) -> tuple[bytes, bytes | None, bool] | None:
    """``(tile bytes, decoded bytes or None, from before digests)`` of a cache file's contents, or
    ``None`` if a digest does not match (or the file is cut short).
    """
    view = memoryview(stored)
    if stored.startswith(MAGIC):
        head = len(MAGIC) + _DIGEST
        data = stored[head:]
        return (data, None, False) if hashlib.sha256(data).digest() == stored[len(MAGIC):head] else None
    if stored.startswith(MAGIC_DECODED):
        head = len(MAGIC_DECODED) + 2 * _DIGEST + _LENGTH.size
        if len(stored) < head:
            return None
        (n,) = _LENGTH.unpack_from(stored, head - _LENGTH.size)
        if n > len(stored) - head:
            return None
        data, decoded = stored[head:head + n], view[head + n:]
        digests = stored[len(MAGIC_DECODED):head - _LENGTH.size]
        if hashlib.sha256(data).digest() + hashlib.sha256(decoded).digest() != digests:
            return None
        return data, decoded, False
    return stored, None, True  # the bare image, as versions before digests wrote it


def open_cache(cache_dir) -> TileCache | None:
    """The cache for a ``cache_dir`` argument: ``None`` -> ``options.cache_dir``, ``False`` -> no cache."""
    if cache_dir is False:
        return None
    if isinstance(cache_dir, TileCache):
        return cache_dir
    if cache_dir is None:
        from ..options import options

        cache_dir = options.cache_dir
        if cache_dir is None:
            return None
    return TileCache(cache_dir)
