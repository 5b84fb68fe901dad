"""A loopback HTTP server for a notebook page exported to HTML and the widget JavaScript it needs.

The Jupyter widget manager for static pages (npm ``@jupyter-widgets/html-manager``, installed with
``npm install --prefix tests/notebooks/browser``) loads each widget package with require.js from a CDN base URL
as ``<base><package>@<version>/dist/<file>``. This server answers such URLs locally:

- ``/npm/@jupyter-widgets/html-manager@<any>/dist/<file>`` from the npm package,
- ``/npm/<package>@<any>/dist/<file>`` from the AMD bundle that ships inside the package's Python
  wheel (``<sys.prefix>/share/jupyter/nbextensions/<package>/``: ``jupyter-leaflet`` from
  ipyleaflet's ``jupyter_leaflet``, ``jupyter-vue``/``jupyter-vuetify`` that leafmap pulls in),
- ``/require.js`` from the npm package ``requirejs``,
- ``/page.html``: :attr:`AssetServer.page`.

Every request is logged in :attr:`AssetServer.requests` as (path, status).
"""

from __future__ import annotations

import mimetypes
import re
import sys
import threading
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from sociogeo.testing.loopback import serve

BROWSER_DIR = Path(__file__).resolve().parent
NODE_MODULES = BROWSER_DIR / "node_modules"
HTML_MANAGER_DIST = NODE_MODULES / "@jupyter-widgets" / "html-manager" / "dist"
REQUIREJS = NODE_MODULES / "requirejs" / "require.js"
NBEXTENSIONS = Path(sys.prefix) / "share" / "jupyter" / "nbextensions"

_FONTS = (".woff", ".woff2", ".ttf", ".eot", ".svg")
# /npm/<package>@<version>/dist/<file>; a scoped package is "@scope/name"
_CDN_PATH = re.compile(r"^/npm/(?P<package>(?:@[^/@]+/)?[^/@]+)@[^/]*/dist/(?P<file>[^?#]+)")


def resolve(path: str) -> Path | None:
    """The local file answering the URL path ``path``, or None."""
    if path == "/require.js":
        return REQUIREJS
    match = _CDN_PATH.match(path)
    if match is None:
        # the html-manager's icon fonts, which its CSS asks for relative to the page
        name = path.split("?")[0].rsplit("/", 1)[-1]
        font = HTML_MANAGER_DIST / name
        return font if name.endswith(_FONTS) and font.is_file() else None
    package, name = match.group("package"), match.group("file")
    base = HTML_MANAGER_DIST if package == "@jupyter-widgets/html-manager" else NBEXTENSIONS / package
    if not name.endswith((".js", ".css", ".map", ".png", *_FONTS)):
        name += ".js"  # require.js asks for module ids without the extension
    candidate = (base / name).resolve()
    if not candidate.is_relative_to(base.resolve()) or not candidate.is_file():
        return None
    return candidate


class AssetServer:
    """Serve the widget JavaScript and :attr:`page` (HTML text) on ``http://127.0.0.1:<port>``."""

    def __init__(self):
        self.page = ""
        self.requests: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._stack = ExitStack()
        self.url = ""  # http://127.0.0.1:<port>, once entered

    def __enter__(self) -> AssetServer:
        handler = type("Handler", (_Handler,), {"assets": self})
        self.url = self._stack.enter_context(serve(handler)).url
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _log(self, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((path, status))


class _Handler(BaseHTTPRequestHandler):
    assets: AssetServer

    def do_GET(self):
        if self.path.split("?")[0] == "/page.html":
            self._send(200, self.assets.page.encode("utf-8"), "text/html; charset=utf-8")
            return
        path = resolve(self.path)
        if path is None:
            self._send(404, b"not found", "text/plain")
            return
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self._send(200, path.read_bytes(), kind)

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.assets._log(self.path, status)
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep the test output clean
        pass
