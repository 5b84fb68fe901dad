"""An on-disk tile cache: ``<root>/tiles/<provider key>/<z>/<x>/<y>.tile``.

Writes are atomic (a temporary file in the same directory, then ``os.replace``), so a crash or a
concurrent writer never leaves half a tile under the final name. Each file holds a SHA-256 digest
of the tile's bytes ahead of them (:data:`MAGIC`, digest, bytes); a read checks the digest and then
that the bytes decode, so a flipped bit, a truncated or a foreign file is deleted and reported as
a miss, and fetched again. A file from before digests (the bare image) is used if it decodes and
is then rewritten with its digest.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import CacheError

T = TypeVar("T")

#: The first bytes of every cache file (format version 1), followed by the SHA-256 of the tile.
MAGIC = b"sgtile1\n"
_DIGEST = 32
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

    def get(self, key: str, z: int, x: int, y: int, *, decode: Callable[[bytes], T] = check_image) -> T | None:
        """The cached tile passed through ``decode``, or ``None`` on a miss.

        The file's digest must match its bytes, and ``decode`` must not raise for them; otherwise
        the file is deleted and counts as a miss. The default ``decode`` only checks that the bytes
        are a complete image and returns them.
        """
        path = self.path(key, z, x, y)
        try:
            stored = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheError(f"cannot read the cached tile {path}: {exc.strerror}") from None
        legacy = not stored.startswith(MAGIC)
        data = stored if legacy else stored[len(MAGIC) + _DIGEST:]
        if not legacy and hashlib.sha256(data).digest() != stored[len(MAGIC):len(MAGIC) + _DIGEST]:
            self._discard(path)  # a flipped bit, or a file cut short
            return None
        try:
            value = decode(data)
        except Exception:  # noqa: BLE001 (whatever decode raises, the file is unusable)
            self._discard(path)
            return None
        if legacy:
            self.put(key, z, x, y, data)  # from before digests: from now on it is checked
        return value

    def put(self, key: str, z: int, x: int, y: int, data: bytes) -> Path:
        """Store the bytes of tile (z, x, y) with their digest, atomically; returns the file's path.

        The caller checks the bytes first (the fetcher decodes every tile before caching it).
        """
        path = self.path(key, z, x, y)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{y}.", suffix=".part", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(MAGIC + hashlib.sha256(data).digest())
                    f.write(data)
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
