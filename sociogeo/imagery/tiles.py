"""Fetch XYZ tiles into a :class:`~sociogeo.geo.grid.PixelGrid`, politely and without silent gaps.

Tiles come from the cache when it holds them, otherwise over one pooled ``requests.Session`` with
``options.max_workers`` threads, an identifying User-Agent, timeouts, and retries with exponential
backoff on timeouts, connection errors, HTTP 429 (honouring ``Retry-After``) and 5xx; a 404 is an
answer, not a hiccup, and is never retried.

A tile that cannot be had is filled with nodata (0), marked invalid in the per-pixel ``valid`` mask,
listed in the result's ``missing`` and announced with a :class:`MissingTilesWarning`. If no tile at
all can be had, :class:`~sociogeo.errors.TileFetchError` is raised instead.

:meth:`TileFetcher.iter_strips` yields a grid strip by strip, so a GeoTIFF writer never holds the
whole mosaic: its memory depends on the grid's width, not its area.
"""

from __future__ import annotations

import io
import itertools
import random
import re
import struct
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .._http import caused_by, retry_after_s
from .._progress import progress
from ..errors import MissingTilesWarning, OfflineError, ProviderError, TileFetchError
from ..geo.grid import PixelGrid
from ..options import options
from .cache import TileCache, open_cache
from .providers import TileProvider, resolve_provider

NODATA = 0
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 120.0  # a server asking us to wait longer than this gets a failure instead
_LISTED = 20  # tiles named in a message before "... and N more"


@dataclass(frozen=True)
class TileFailure:
    """Why tile (z, x, y) could not be had.

    ``kind`` is ``"missing"`` (the server has no such tile, or offline and not cached),
    ``"server"`` (5xx / 429 after all retries), ``"network"`` (timeouts, refused connections) or
    ``"invalid"`` (the response is not a complete image).
    """

    z: int
    x: int
    y: int
    reason: str
    kind: str = "missing"

    @property
    def tile(self) -> str:
        """The tile as ``"z/x/y"``."""
        return f"{self.z}/{self.x}/{self.y}"

    def as_dict(self) -> dict:
        """The failure as a JSON-ready dict with keys z, x, y, reason and kind."""
        return {"z": self.z, "x": self.x, "y": self.y, "reason": self.reason, "kind": self.kind}


@dataclass
class Tile:
    """One decoded tile: ``rgb`` (S x S x 3 uint8) and ``valid`` (S x S bool).

    A tile read from the cache holds read-only views of the file's bytes; copy before writing.
    """

    rgb: np.ndarray
    valid: np.ndarray


@dataclass
class TileMosaic:
    """Tiles pasted onto ``grid``: ``image`` (H x W x 3 uint8) and ``valid`` (H x W bool).

    Pixels of ``missing`` tiles (and of transparent tile pixels) are 0 and invalid.
    """

    image: np.ndarray
    valid: np.ndarray
    grid: PixelGrid
    provider: TileProvider
    missing: list[TileFailure] = field(default_factory=list)

    @property
    def metadata(self) -> dict:
        """Provider, attribution, zoom and the missing tiles with their reasons."""
        return {
            "provider": self.provider.name,
            "attribution": self.provider.attribution,
            "zoom": self.grid.zoom,
            "missing_tiles": [f.as_dict() for f in self.missing],
            "valid_fraction": float(self.valid.mean()) if self.valid.size else 0.0,
        }


def decode_tile(data: bytes, tile_size: int = 256) -> Tile:
    """Decode PNG/JPEG/WebP bytes (RGB, RGBA, paletted, greyscale) into a :class:`Tile`.

    Fully transparent pixels become nodata: 0 in ``rgb`` and False in ``valid``.
    Raises ``ValueError`` if the bytes are not a complete image of ``tile_size`` pixels; the size
    is checked from the image's header, so an image declaring a huge size is never decoded.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.size != (tile_size, tile_size):  # from the header, before a pixel is decoded
                raise ValueError(f"tile is {img.size[0]} x {img.size[1]} px, expected {tile_size} x {tile_size}")
            img.load()
            transparent = img.mode in {"RGBA", "LA", "PA", "La", "RGBa"} or "transparency" in img.info
            shape = (tile_size, tile_size)
            if transparent:
                rgba = img if img.mode == "RGBA" else img.convert("RGBA")
                # Pillow packs the RGB and alpha bytes apart in C; numpy then touches only the
                # (usually few) pixels to blank, instead of copying every pixel out of a strided view
                rgb = _pixels(rgba.tobytes("raw", "RGB"), (*shape, 3))
                valid = np.frombuffer(rgba.tobytes("raw", "A"), dtype=np.uint8).reshape(shape) > 0
                clear = np.flatnonzero(~valid)
                if len(clear):
                    rgb.reshape(-1, 3)[clear] = NODATA
            else:
                rgb = _pixels((img if img.mode == "RGB" else img.convert("RGB")).tobytes(), (*shape, 3))
                valid = np.ones(shape, dtype=bool)
    except ValueError:
        raise
    except Exception as exc:  # PIL raises OSError, SyntaxError... for truncated or foreign bytes
        raise ValueError(f"not a complete image ({exc})") from exc
    return Tile(rgb, valid)


_PACKED = struct.Struct("<HB")  # tile size, whether a validity mask follows the RGB bytes


def pack_tile(tile: Tile) -> bytes:
    """A decoded tile as bytes for the cache: its size, its RGB bytes and, if any pixel is nodata,
    its validity mask one bit per pixel (:func:`unpack_tile` reads them back).
    """
    size = tile.rgb.shape[0]
    partial = not tile.valid.all()
    mask = np.packbits(tile.valid).tobytes() if partial else b""
    return _PACKED.pack(size, partial) + np.ascontiguousarray(tile.rgb, dtype=np.uint8).tobytes() + mask


def unpack_tile(data, tile_size: int = 256) -> Tile:
    """The :class:`Tile` that :func:`pack_tile` wrote (read-only arrays over ``data``, no copy).

    Raises ``ValueError`` unless ``data`` is exactly a packed tile of ``tile_size`` pixels.
    """
    view = memoryview(data).cast("B")
    if len(view) < _PACKED.size:
        raise ValueError("packed tile cut short")
    size, partial = _PACKED.unpack_from(view)
    n = size * size
    if size != tile_size or partial not in (0, 1) or len(view) != _PACKED.size + 3 * n + partial * ((n + 7) // 8):
        raise ValueError(f"not a packed {tile_size} px tile")
    rgb = np.frombuffer(view, dtype=np.uint8, count=3 * n, offset=_PACKED.size).reshape(size, size, 3)
    if partial:
        bits = np.frombuffer(view, dtype=np.uint8, offset=_PACKED.size + 3 * n)
        valid = np.unpackbits(bits, count=n).reshape(size, size).view(bool)
    else:
        valid = np.ones((size, size), dtype=bool)
    return Tile(rgb, valid)


def _pixels(data: bytes, shape: tuple) -> np.ndarray:
    """A writable uint8 array of ``shape`` over a copy of ``data`` (one memcpy)."""
    return np.frombuffer(bytearray(data), dtype=np.uint8).reshape(shape)


def make_session(*, user_agent: str | None = None, max_workers: int | None = None):
    """A ``requests.Session`` with a connection pool sized for ``max_workers`` threads.

    Retries are done by :class:`TileFetcher` (to honour Retry-After and never retry 404), so the
    adapter itself does not retry.
    """
    import requests
    from requests.adapters import HTTPAdapter

    workers = max_workers or options.max_workers
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(workers, 1), max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent or options.user_agent
    return session


class TileFetcher:
    """Fetch the tiles of one provider, from the cache or the network.

    ``cache_dir=None`` uses ``options.cache_dir``, ``False`` disables caching; ``offline=None``
    follows ``options.offline``; ``max_workers``, ``timeout_s`` (seconds) and ``retries`` default
    to ``options``; ``backoff_s`` is the first retry's wait in seconds (doubling each retry).
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        provider,
        *,
        cache_dir=None,
        offline: bool | None = None,
        max_workers: int | None = None,
        timeout_s: float | None = None,
        retries: int | None = None,
        backoff_s: float | None = None,
        user_agent: str | None = None,
        session=None,
    ):
        self.provider = resolve_provider(provider)
        self.offline = options.offline if offline is None else bool(offline)
        self.cache: TileCache | None = open_cache(cache_dir)
        if self.offline and self.cache is None:
            raise OfflineError(
                "offline mode reads tiles from the cache, but caching is disabled (cache_dir=False); "
                "pass a cache_dir that holds the tiles, or go online"
            )
        self.max_workers = max(int(max_workers or options.max_workers), 1)
        self.timeout_s = float(options.timeout_s if timeout_s is None else timeout_s)
        self.retries = max(int(options.retries if retries is None else retries), 0)
        if backoff_s is None:
            backoff_s = options.backoff_s
        self.backoff_s = float(backoff_s)
        self._own_session = session is None and not self.offline
        if self._own_session:
            session = make_session(user_agent=user_agent, max_workers=self.max_workers)
        self.session = session
        self._lock = threading.Lock()
        self.stats = Counter()  # requests, downloaded, cache_hits, retries

    # -- one tile -------------------------------------------------------------------------------
    def get_tile(self, z: int, x: int, y: int) -> Tile | TileFailure:
        """Tile (z, x, y) from the cache, else from the server (and then cached, with its decoded
        pixels when ``options.cache_decoded``).
        """
        tile = self.cached_tile(z, x, y)
        return self.fetch_tile(z, x, y) if tile is None else tile

    def cached_tile(self, z: int, x: int, y: int) -> Tile | None:
        """Tile (z, x, y) from the cache, or ``None`` if the cache does not hold it (or holds it
        damaged: then the file is deleted).
        """
        if self.cache is None:
            return None
        pack = pack_tile if options.cache_decoded else None
        tile = self.cache.get(self.provider.key, z, x, y, decode=self._decode, unpack=self._unpack, pack=pack)
        if tile is not None:
            self._count("cache_hits")
        return tile

    def fetch_tile(self, z: int, x: int, y: int) -> Tile | TileFailure:
        """Tile (z, x, y) from the server, without looking in the cache first; cached when had."""
        if self.offline:
            return TileFailure(z, x, y, "not in the cache (offline mode)", "missing")
        result = self._download(z, x, y)
        if isinstance(result, TileFailure):
            return result
        data, tile = result
        if self.cache is not None:
            decoded = pack_tile(tile) if options.cache_decoded else None
            self.cache.put(self.provider.key, z, x, y, data, decoded=decoded)
        return tile

    def _decode(self, data: bytes) -> Tile:
        return decode_tile(data, self.provider.tile_size)

    def _unpack(self, data) -> Tile:
        return unpack_tile(data, self.provider.tile_size)

    def _download(self, z: int, x: int, y: int):
        """``(bytes, Tile)`` or a :class:`TileFailure`, after up to ``retries`` retries."""
        url = self.provider.url(z, x, y)
        failure = None
        for attempt in range(self.retries + 1):
            if attempt:
                self._count("retries")
            self._count("requests")
            outcome, wait, final = self._attempt(url, z, x, y)
            if final:  # a tile, or a failure that asking again will not change
                if not isinstance(outcome, TileFailure):
                    self._count("downloaded")
                return outcome
            failure = outcome
            if attempt < self.retries:
                backoff = min(self.backoff_s * 2**attempt, MAX_BACKOFF_S) * random.uniform(1.0, 1.25)
                time.sleep(max(backoff, wait or 0.0))
        attempts = self.retries + 1
        return TileFailure(
            z, x, y, f"{failure.reason}; gave up after {attempts} attempt{'s' * (attempts > 1)}", failure.kind
        )

    def _attempt(self, url: str, z: int, x: int, y: int):
        """One request: ``(outcome, seconds the server asks to wait, final)``; ``outcome`` is
        ``(bytes, Tile)`` or a :class:`TileFailure`, ``final`` says not to ask again.
        """
        import requests

        try:
            response = self.session.get(url, timeout=self.timeout_s)
        except requests.Timeout:
            return TileFailure(z, x, y, f"timed out after {self.timeout_s:g} s", "network"), None, False
        except requests.ConnectionError as exc:
            if _unresolvable(exc):
                # no name server answers for the host: asking again will not help (offline machine)
                return TileFailure(z, x, y, f"cannot resolve {_host(url)} ({_root_cause(exc)}): no network, "
                                   "or a mistyped host; offline, use a filled tile cache with offline mode "
                                   "(offline=True, --offline)", "network"), None, True
            return TileFailure(z, x, y, f"cannot connect to {_host(url)} ({_root_cause(exc)})", "network"), None, False
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
            # the connection dropped mid-body (a reset): like a 5xx, worth another try
            return TileFailure(z, x, y, f"connection lost while reading ({_root_cause(exc)})", "network"), None, False
        except requests.RequestException as exc:
            return TileFailure(z, x, y, f"request failed: {exc}", "network"), None, True
        status = response.status_code
        if status == 200:
            data = response.content
            try:
                return (data, self._decode(data)), None, True
            except ValueError as exc:
                # a truncated body is usually a dropped connection: worth another try
                return TileFailure(z, x, y, f"invalid image from the server: {exc}", "invalid"), None, False
        if status == 429:
            wait = retry_after_s(response.headers.get("Retry-After"))
            if wait is not None and wait > MAX_RETRY_AFTER_S:
                return TileFailure(z, x, y, f"HTTP 429 (rate limited; the server asks to wait {wait:g} s)",
                                   "server"), wait, True
            return TileFailure(z, x, y, "HTTP 429 (rate limited)", "server"), wait, False
        if status >= 500:
            return TileFailure(z, x, y, f"HTTP {status} ({response.reason or 'server error'})", "server"), None, False
        # 404, 204, 403...: the answer will not change by asking again
        reason = "no tile here" if status in (204, 404) else (response.reason or "refused")
        return TileFailure(z, x, y, f"HTTP {status} ({reason})", "missing" if status in (204, 404) else "server"), \
            None, True

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    # -- a grid ---------------------------------------------------------------------------------
    def read(self, grid: PixelGrid, *, desc: str | None = None) -> TileMosaic:
        """The whole grid as one :class:`TileMosaic` (H x W x 3 uint8 in memory)."""
        (mosaic,) = self.iter_strips(grid, strip_rows=grid.height, desc=desc)
        return mosaic

    def iter_strips(
        self, grid: PixelGrid, *, strip_rows: int | None = None, desc: str | None = None
    ) -> Iterator[TileMosaic]:
        """Yield the grid top down as strips: :class:`TileMosaic` objects on
        ``grid.window(0, row, grid.width, rows)``.

        By default each strip is one row of tiles (the first and last may be shorter), so every
        tile lands in one strip; ``strip_rows`` asks for strips of that many pixel rows instead,
        and tiles straddling two strips are still fetched once. Downloads run ahead of the caller
        by at most ``2 * max_workers`` tiles, so memory holds one strip plus that many tiles,
        whatever the area. After the last strip, missing tiles are announced with a
        :class:`MissingTilesWarning`; if no tile could be had at all, :class:`TileFetchError`
        (or :class:`OfflineError`) is raised, after the first strip already if the server
        cannot be reached.
        """
        self._check_grid(grid)
        strips = _strips(grid, strip_rows)
        needed = [list(strip.tiles()) for strip in strips]
        last_use = {t: i for i, tiles in enumerate(needed) for t in tiles}
        order = list(last_use)  # every tile once, in the order the strips first need them
        window = 2 * self.max_workers
        pool = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="sociogeo-tiles")
        bar = progress(total=len(order), desc=desc or self.provider.name, unit="tile")
        futures: dict = {}  # submitted, not yet consumed
        carried: dict = {}  # consumed results a later strip needs again
        failures: dict[tuple, TileFailure] = {}
        n_submitted = 0
        n_ok = 0

        def top_up(until=None) -> None:
            nonlocal n_submitted
            while n_submitted < len(order) and (len(futures) < window or (until is not None and until not in futures)):
                t = order[n_submitted]
                # a cached tile is a file read here, cheaper than a hand-over to a thread; only
                # downloads go to the pool
                tile = self.cached_tile(*t)
                if tile is None:
                    futures[t] = pool.submit(self.fetch_tile, *t)
                else:
                    futures[t] = Future()
                    futures[t].set_result(tile)
                n_submitted += 1

        try:
            for i, strip in enumerate(strips):
                image = np.zeros((strip.height, strip.width, 3), dtype=np.uint8)
                valid = np.zeros((strip.height, strip.width), dtype=bool)
                missing = []
                for t in needed[i]:
                    if t in carried:
                        result = carried.pop(t) if last_use[t] == i else carried[t]
                    else:
                        top_up(until=t)
                        result = futures.pop(t).result()
                        top_up()
                        bar.update(1)
                        if isinstance(result, TileFailure):
                            failures[t] = result
                        else:
                            n_ok += 1
                        if last_use[t] > i:
                            carried[t] = result
                    if isinstance(result, TileFailure):
                        missing.append(result)
                        continue
                    tr, tc, gr, gc = strip.tile_placement(t[1], t[2])
                    image[gr, gc] = result.rgb[tr, tc]
                    valid[gr, gc] = result.valid[tr, tc]
                if n_ok == 0 and failures and all(f.kind != "missing" for f in failures.values()):
                    raise self._all_failed(list(failures.values()))
                yield TileMosaic(image, valid, strip, self.provider, missing)
            if failures and n_ok == 0:
                raise self._all_failed(list(failures.values()))
            if failures:
                self._warn_missing(list(failures.values()), len(order))
        finally:
            bar.close()
            # don't wait for downloads in flight when the caller gave up or the server is gone
            pool.shutdown(wait=False, cancel_futures=True)

    def _check_grid(self, grid: PixelGrid) -> None:
        self.provider.check_zoom(grid.zoom)
        if grid.tile_size != self.provider.tile_size:
            raise ProviderError(
                f"{self.provider.name} serves {self.provider.tile_size} px tiles but the grid uses "
                f"{grid.tile_size} px tiles; build the grid with tile_size={self.provider.tile_size}"
            )

    def _all_failed(self, failures: list[TileFailure]) -> TileFetchError:
        first = failures[0]
        if self.offline:
            return OfflineError(
                f"offline mode: none of the {len(failures)} tiles needed from {self.provider.name} is in the "
                f"cache {self.cache.root}: {_list_tiles(failures)}. Fetch them once online "
                "(sociogeo.options.offline = False), or point cache_dir at a cache that holds them."
            )
        return TileFetchError(
            f"could not fetch any of the {len(failures)} tiles from {self.provider.name}: "
            f"tile {first.tile}: {first.reason}. Check the network, the provider's URL "
            f"({self.provider.url_template}) and that it covers this area at zoom {first.z}."
        )

    def _warn_missing(self, failures: list[TileFailure], n_tiles: int) -> None:
        reasons = Counter(re.sub(r"; gave up after .*", "", f.reason) for f in failures)
        summary = ", ".join(f"{n} x {r}" for r, n in reasons.most_common())
        if self.offline:
            hint = " Go online once to fetch them into the cache."
        elif any(f.kind != "missing" for f in failures):
            hint = " Fetching again later may fill them (cached tiles are reused)."
        else:
            hint = " The provider has no imagery there."
        warnings.warn(
            f"{len(failures)} of {n_tiles} tiles from {self.provider.name} could not be had ({summary}); "
            f"their pixels are nodata (0) and marked invalid in the valid mask (listed in "
            f"metadata['missing_tiles']): {_list_tiles(failures)}.{hint}",
            MissingTilesWarning,
            stacklevel=3,
        )

    # -- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the HTTP session if this fetcher opened it (a session passed in is left open)."""
        if self._own_session and self.session is not None:
            self.session.close()

    def __enter__(self) -> TileFetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def fetch_mosaic(grid: PixelGrid, provider, *, desc: str | None = None, **fetcher_options) -> TileMosaic:
    """Fetch ``grid`` from ``provider`` into one :class:`TileMosaic` (see :class:`TileFetcher`)."""
    with TileFetcher(provider, **fetcher_options) as fetcher:
        return fetcher.read(grid, desc=desc)


def iter_mosaic_strips(
    grid: PixelGrid, provider, *, strip_rows: int | None = None, desc: str | None = None, **fetcher_options
) -> Iterator[TileMosaic]:
    """Fetch ``grid`` strip by strip (see :meth:`TileFetcher.iter_strips`)."""
    with TileFetcher(provider, **fetcher_options) as fetcher:
        yield from fetcher.iter_strips(grid, strip_rows=strip_rows, desc=desc)


# -- helpers ----------------------------------------------------------------------------------
def _strips(grid: PixelGrid, strip_rows: int | None) -> list[PixelGrid]:
    """Row strips of ``grid``: ``strip_rows`` pixel rows each, or one row of tiles each (None)."""
    if strip_rows is None:
        ts = grid.tile_size
        first = ts - grid.row_off % ts  # rows until the next tile boundary
        bounds = [0, *range(first, grid.height, ts), grid.height]
    else:
        bounds = [*range(0, grid.height, max(int(strip_rows), 1)), grid.height]
    bounds = sorted({min(b, grid.height) for b in bounds})
    return [grid.window(0, a, grid.width, b - a) for a, b in itertools.pairwise(bounds)]


def _list_tiles(failures: list[TileFailure]) -> str:
    names = [f.tile for f in failures[:_LISTED]]
    more = len(failures) - len(names)
    return ", ".join(names) + (f" ... and {more} more" if more > 0 else "")


def _host(url: str) -> str:
    return re.sub(r"^\w+://", "", url).split("/")[0]


def _root_cause(exc: Exception) -> str:
    """The short reason inside requests' nested connection errors, e.g. '[Errno 111] Connection refused'."""
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text)
    if match:
        return match.group(0).strip()
    return type(exc).__name__


def _unresolvable(exc: BaseException) -> bool:
    """Whether a connection error is a failed host-name lookup (anywhere in its chain of causes)."""
    import socket

    return caused_by(exc, (socket.gaierror,), ("NameResolutionError",))
