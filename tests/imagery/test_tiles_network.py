"""Networks that misbehave: a dropped connection is retried like a 5xx; a host that does not
resolve fails at once (an offline machine must not wait out retries)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler

import pytest

from sociogeo.imagery.tiles import TileFailure, TileFetcher
from sociogeo.testing.loopback import serve


def _png() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((256, 256, 3), 90, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_connection_reset_mid_body_is_retried(tmp_path):
    body = _png()
    calls = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            with lock:
                calls.append(self.path)
                first = len(calls) == 1
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if first:  # half the body, then the connection goes away
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with serve(Handler) as server:
        fetcher = TileFetcher(f"{server.url}/{{z}}/{{x}}/{{y}}.png", cache_dir=False, retries=3, backoff_s=0.001)
        tile = fetcher.get_tile(3, 1, 1)
    assert not isinstance(tile, TileFailure), tile
    assert len(calls) == 2 and fetcher.stats["retries"] == 1


def test_a_host_that_does_not_resolve_fails_without_retries():
    # .invalid is reserved (RFC 2606): it never resolves, online or not
    fetcher = TileFetcher("http://tiles.sociogeo-test.invalid/{z}/{x}/{y}.png", cache_dir=False, retries=4,
                          backoff_s=30.0)  # a retry would sleep for 30 s: the test would hang
    failure = fetcher.get_tile(3, 1, 1)
    assert isinstance(failure, TileFailure) and failure.kind == "network"
    assert "cannot resolve tiles.sociogeo-test.invalid" in failure.reason and "--offline" in failure.reason
    assert fetcher.stats["requests"] == 1 and fetcher.stats["retries"] == 0


def test_an_unresolvable_area_read_stops_at_the_first_window(sf_area):
    from sociogeo.errors import TileFetchError
    from sociogeo.imagery.source import ImagerySource
    from sociogeo.imagery.windows import open_windows

    source = ImagerySource(satellite="http://tiles.sociogeo-test.invalid/{z}/{x}/{y}.png",
                           map="http://tiles.sociogeo-test.invalid/{z}/{x}/{y}.png", cache_dir=False)
    with open_windows(source, sf_area.grid) as reader, pytest.raises(TileFetchError, match="cannot resolve"):
        reader.read(sf_area.grid.window(0, 0, 128, 128))
