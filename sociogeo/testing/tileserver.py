"""A real XYZ tile server on 127.0.0.1, rendering tiles on the fly from georeferenced rasters.

For tests, notebooks and benchmarks that must not touch the internet but should exercise the real
HTTP path (sockets, pooling, status codes, retries)::

    with TileServer({"sat": "city.tif"}) as server:
        pair = fetch_pair(area, satellite=server.url_template("sat"), ...)

``GET /{layer}/{z}/{x}/{y}.png`` warps the layer's raster (any CRS) into the tile's EPSG:3857
grid with rasterio (nearest neighbour) and answers an RGBA PNG, transparent where the raster has no
data; tiles that do not touch the raster are 404. Faults can be switched on at runtime
(:meth:`TileServer.inject`): status 404/500/429 (with Retry-After), slow responses, truncated
PNGs and "huge" ones (a few kB of PNG declaring 6000 x 5000 pixels, a decompression bomb), for
every tile, a set of tiles, or the first N matching requests.
"""

from __future__ import annotations

import functools
import io
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from ..geo.grid import ORIGIN_SHIFT_M

FAULT_KINDS = ("404", "500", "429", "slow", "truncate", "huge")
_TILE_PATH = re.compile(r"^/(?P<layer>[^/]+)/(?P<z>\d+)/(?P<x>\d+)/(?P<y>\d+)\.png$")


@dataclass(frozen=True)
class RequestRecord:
    """One request the server answered."""

    path: str
    user_agent: str | None
    status: int
    layer: str | None = None
    tile: tuple[int, int, int] | None = None
    time: float = 0.0  # time.monotonic() when the request arrived


@dataclass
class Fault:
    """A fault applied to matching requests: all tiles, ``tiles`` only, and/or the first ``first``."""

    kind: str
    tiles: frozenset | None = None
    first: int | None = None
    layer: str | None = None
    retry_after: int = 1  # seconds, for "429"
    delay_s: float = 1.0  # for "slow"
    hits: int = field(default=0, init=False)

    def claims(self, layer: str, tile: tuple[int, int, int]) -> bool:
        """Whether this request is affected; counts it against ``first``. Call under the lock."""
        if self.layer is not None and layer != self.layer:
            return False
        if self.tiles is not None and tile not in self.tiles:
            return False
        if self.first is not None and self.hits >= self.first:
            return False
        self.hits += 1
        return True


class _Renderer:
    """Renders and caches PNG tiles of one raster."""

    def __init__(self, path, tile_size: int, cache_size: int):
        import rasterio
        from rasterio.warp import transform_bounds

        self.path = Path(path)
        self.tile_size = tile_size
        with rasterio.open(self.path) as src:
            if src.crs is None:
                raise ValueError(f"{self.path} has no CRS; the tile server needs georeferenced rasters")
            if src.count < 3:
                raise ValueError(f"{self.path} has {src.count} band(s); the tile server needs RGB (3 bands)")
            # densified bounds, so curved edges of a UTM raster are inside the box
            self.bounds_3857 = transform_bounds(src.crs, "EPSG:3857", *src.bounds, densify_pts=21)
        self.png = functools.lru_cache(maxsize=cache_size)(self._render)

    def tile_bounds(self, z: int, x: int, y: int) -> tuple[float, float, float, float]:
        size = 2 * ORIGIN_SHIFT_M / 2**z
        left = -ORIGIN_SHIFT_M + x * size
        top = ORIGIN_SHIFT_M - y * size
        return left, top - size, left + size, top

    def _render(self, z: int, x: int, y: int) -> bytes | None:
        """PNG bytes of tile (z, x, y), or None if the raster does not reach it."""
        import rasterio
        from affine import Affine
        from PIL import Image
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT

        left, bottom, right, top = self.tile_bounds(z, x, y)
        bl, bb, br, bt = self.bounds_3857
        if right <= bl or left >= br or top <= bb or bottom >= bt:
            return None
        ts = self.tile_size
        res = (right - left) / ts
        transform = Affine(res, 0.0, left, 0.0, -res, top)
        # one dataset per request: rasterio datasets are not thread-safe, and opening is cheap
        with rasterio.open(self.path) as src, WarpedVRT(
            src, crs="EPSG:3857", transform=transform, width=ts, height=ts,
            resampling=Resampling.nearest, add_alpha=True,
        ) as vrt:
            data = vrt.read([1, 2, 3, vrt.count])  # RGB + the alpha GDAL derives from nodata/masks
        if not data[3].any():
            return None
        rgba = np.ascontiguousarray(np.moveaxis(data.astype(np.uint8), 0, -1))
        buf = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buf, format="PNG", compress_level=1)
        return buf.getvalue()


class TileServer:
    """Serve ``layers`` (name -> raster path) as XYZ PNG tiles on ``host:port`` (0 = a free port).

    Start with ``with TileServer(...) as server`` or :meth:`start`; stop with :meth:`stop`.
    """

    def __init__(self, layers: dict, *, host: str = "127.0.0.1", port: int = 0, tile_size: int = 256,
                 cache_size: int = 4096):
        if not layers:
            raise ValueError("give at least one layer: {'name': 'path/to/raster.tif'}")
        self.host = host
        self._port = port
        self.tile_size = tile_size
        self.layers = {str(name): _Renderer(path, tile_size, cache_size) for name, path in layers.items()}
        self._faults: list[Fault] = []
        self._log: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set = set()  # open keep-alive sockets, closed by stop()

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> TileServer:
        """Start serving from a background thread (nothing happens if already running); returns the server."""
        if self._httpd is not None:
            return self
        handler = type("Handler", (_Handler,), {"server_ref": self})
        httpd = ThreadingHTTPServer((self.host, self._port), handler)
        httpd.daemon_threads = True  # a slow response must not block stop()
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="sociogeo-tileserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and free the port; later requests are refused."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for sock in connections:
            # wakes handler threads waiting on keep-alive connections, so none keeps serving
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> TileServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is serving (between :meth:`start` and :meth:`stop`)."""
        return self._httpd is not None

    @property
    def port(self) -> int:
        """The port the server listens on; RuntimeError when it is not running."""
        if self._httpd is None:
            raise RuntimeError("the tile server is not running; call start() first")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """The server's base URL, ``http://<host>:<port>``."""
        return f"http://{self.host}:{self.port}"

    def url_template(self, layer: str) -> str:
        """``http://127.0.0.1:<port>/<layer>/{z}/{x}/{y}.png``, for ``resolve_provider``."""
        if layer not in self.layers:
            raise KeyError(f"no layer {layer!r}; layers: {', '.join(self.layers)}")
        return f"{self.url}/{layer}/{{z}}/{{x}}/{{y}}.png"

    # -- faults -----------------------------------------------------------------------------------
    def inject(self, kind: str, *, tiles=None, first: int | None = None, layer: str | None = None,
               retry_after: int = 1, delay_s: float = 1.0) -> Fault:
        """Switch a fault on: ``kind`` is "404", "500", "429", "slow", "truncate" or "huge".

        It applies to every tile, only to ``tiles`` (an iterable of (z, x, y)), and/or only to the
        first ``first`` matching requests; ``layer`` limits it to one layer. "slow" delays the
        answer by ``delay_s`` seconds; "429" sends ``Retry-After: retry_after``.
        """
        kind = str(kind)
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; choose one of {', '.join(FAULT_KINDS)}")
        fault = Fault(kind, frozenset(tuple(t) for t in tiles) if tiles is not None else None,
                      first, layer, retry_after, delay_s)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Switch every injected fault off."""
        with self._lock:
            self._faults.clear()

    # -- log --------------------------------------------------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        """Every request answered since the last :meth:`reset_log`, in arrival order."""
        with self._lock:
            return list(self._log)

    @property
    def n_requests(self) -> int:
        """Number of requests answered since the last :meth:`reset_log`."""
        with self._lock:
            return len(self._log)

    @property
    def counts(self) -> Counter:
        """Requests per status code."""
        with self._lock:
            return Counter(r.status for r in self._log)

    @property
    def user_agents(self) -> set:
        """The distinct User-Agent headers of the logged requests."""
        with self._lock:
            return {r.user_agent for r in self._log}

    def reset_log(self) -> None:
        """Forget the logged requests (:attr:`requests`, :attr:`counts`, ...)."""
        with self._lock:
            self._log.clear()

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)

    def _claim_faults(self, layer: str, tile) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if f.claims(layer, tile)]

    def render(self, layer: str, z: int, x: int, y: int) -> bytes | None:
        """The PNG the server would send for a tile (no faults), or None for 404."""
        return self.layers[layer].png(z, x, y)


@functools.lru_cache(maxsize=1)
def _huge_png() -> bytes:
    """A valid PNG of 6000 x 5000 grey pixels: 90 MB decoded, a few kB sent."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (6000, 5000), 0).save(buffer, format="PNG")
    return buffer.getvalue()


class _Handler(BaseHTTPRequestHandler):
    server_ref: TileServer  # set on the per-server subclass
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection pool is exercised
    timeout = 60  # seconds an idle keep-alive connection may stay open

    def setup(self):
        super().setup()
        # headers and body go out as two writes; with Nagle's algorithm the second waits for the
        # client's delayed ACK (~40 ms per response on a keep-alive connection)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server_ref._lock:
            self.server_ref._connections.add(self.connection)

    def finish(self):
        with self.server_ref._lock:
            self.server_ref._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self):
        arrived = time.monotonic()
        owner = self.server_ref
        ua = self.headers.get("User-Agent")
        match = _TILE_PATH.match(self.path.split("?")[0])
        if not match or match["layer"] not in owner.layers:
            owner._record(RequestRecord(self.path, ua, 404, time=arrived))
            return self._send(404, b"not a tile path: use /{layer}/{z}/{x}/{y}.png", "text/plain")
        layer = match["layer"]
        tile = (int(match["z"]), int(match["x"]), int(match["y"]))

        def record(status):
            owner._record(RequestRecord(self.path, ua, status, layer, tile, arrived))

        truncate = False
        for fault in owner._claim_faults(layer, tile):
            if fault.kind == "slow":
                time.sleep(fault.delay_s)
            elif fault.kind == "truncate":
                truncate = True
            elif fault.kind == "huge":
                record(200)
                return self._send(200, _huge_png(), "image/png")
            else:
                status = int(fault.kind)
                record(status)
                headers = {"Retry-After": str(fault.retry_after)} if status == 429 else {}
                return self._send(status, f"injected fault {status}".encode(), "text/plain", headers)
        z, x, y = tile
        if not (0 <= y < 2**z and 0 <= x < 2**z):
            record(404)
            return self._send(404, b"tile index out of range", "text/plain")
        png = owner.render(layer, z, x, y)
        if png is None:
            record(404)
            return self._send(404, b"no data in this tile", "text/plain")
        if truncate:
            png = png[: len(png) // 2]  # a complete HTTP response carrying half an image
        record(200)
        self._send(200, png, "image/png")

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout fired during a slow response)

    def log_message(self, format, *args):
        pass  # the request log replaces stderr chatter
