"""A throwaway HTTP server on 127.0.0.1 for tests: ``with serve(Handler) as server: server.url``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def serve(
    handler: type[BaseHTTPRequestHandler], *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[ThreadingHTTPServer]:
    """Serve ``handler`` on ``host`` (a free port by default) from a background thread.

    Yields the server, with ``.url`` (``http://host:port``) added; it is shut down and its port
    freed on exit.
    """
    httpd = ThreadingHTTPServer((host, port), handler)
    httpd.daemon_threads = True  # a slow handler must not block shutdown
    httpd.url = f"http://{host}:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
