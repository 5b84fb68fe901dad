"""A static file server on 127.0.0.1 that honours HTTP Range requests and counts what it sends.

For tests of cloud-optimised GeoTIFFs read over HTTP (GDAL's ``/vsicurl/``)::

    with FileServer({"city.tif": path}) as server:
        reader = RasterReader(RasterSource(server.url("city.tif")))
        ...
        server.bytes_sent, server.requests  # how much GDAL actually read

``GET`` and ``HEAD`` are answered; ``Range: bytes=a-b`` gives ``206 Partial Content`` with just
those bytes (suffix and open ranges too), anything else the whole file. Files are read from disk
per request, so they may be large.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from .loopback import serve

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class FileRequest:
    """One request: method, file name, the byte range asked for (None: whole file), status,
    bytes of body sent.
    """

    method: str
    name: str
    range: tuple[int, int] | None
    status: int
    sent: int


class FileServer:
    """Serve ``files`` (name -> path) over HTTP on a free loopback port (see the module docstring)."""

    def __init__(self, files: dict):
        self.files = {str(name): Path(path) for name, path in files.items()}
        self.log: list[FileRequest] = []
        self._lock = threading.Lock()
        self._context = None
        self.base_url = None

    def url(self, name: str) -> str:
        """The http:// URL of a served file."""
        return f"{self.base_url}/{name}"

    @property
    def requests(self) -> int:
        """Requests answered so far."""
        return len(self.log)

    @property
    def bytes_sent(self) -> int:
        """Body bytes sent so far, all files together."""
        return sum(r.sent for r in self.log)

    def reset_log(self) -> None:
        """Forget the requests answered so far."""
        with self._lock:
            self.log.clear()

    def _record(self, entry: FileRequest) -> None:
        with self._lock:
            self.log.append(entry)

    def __enter__(self) -> FileServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: tests read server.log instead
                pass

            def do_HEAD(self):  # noqa: N802 (http.server's naming)
                self._answer(body=False)

            def do_GET(self):  # noqa: N802
                self._answer(body=True)

            def _answer(self, *, body: bool):
                name = self.path.lstrip("/").split("?")[0]
                path = server.files.get(name)
                if path is None or not path.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    server._record(FileRequest(self.command, name, None, 404, 0))
                    return
                size = path.stat().st_size
                span = _parse_range(self.headers.get("Range"), size)
                if span == "invalid":
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    server._record(FileRequest(self.command, name, None, 416, 0))
                    return
                start, end = span if span is not None else (0, size - 1)
                length = end - start + 1
                self.send_response(206 if span is not None else 200)
                self.send_header("Content-Type", "image/tiff")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(length))
                if span is not None:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                sent = 0
                if body:
                    with path.open("rb") as fh:
                        fh.seek(start)
                        data = fh.read(length)
                    self.wfile.write(data)
                    sent = len(data)
                server._record(FileRequest(self.command, name, span, 206 if span is not None else 200, sent))

        self._context = serve(Handler)
        httpd = self._context.__enter__()
        self.base_url = httpd.url
        return self

    def __exit__(self, *exc) -> None:
        self._context.__exit__(*exc)


def _parse_range(header, size: int):
    """``(start, end)`` inclusive for a single ``bytes=`` range, None for no/unsupported header,
    ``"invalid"`` for an unsatisfiable one.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # several ranges at once: answer with the whole file, as servers may
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start = int(first)
        end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or start > end:
        return "invalid"
    return start, end


__all__ = ["FileRequest", "FileServer"]
