"""A misbehaving OpenAI-compatible chat server on 127.0.0.1, for testing clients against real sockets.

It answers ``GET /v1/models`` with one model and ``POST /v1/chat/completions`` by echoing the
request's text upper-cased, unless a fault is queued (:meth:`ChatServer.inject`) for the next
requests::

    with ChatServer() as server:
        server.inject("429", retry_after=1, first=2)   # the next two requests are rate limited
        OpenAIVLM(server.url, model=server.model).generate(requests)

Faults (:data:`CHAT_FAULTS`): ``"429"`` and ``"503"`` (with ``Retry-After`` when given), ``"500"``,
``"drip"`` (a valid answer sent one byte every ``delay_s`` seconds, so each socket read is quick but
the whole body is slow), ``"reset"`` (the connection dropped halfway through the body),
``"malformed"`` (not JSON), ``"nested"`` (JSON nested ``depth`` levels deep) and ``"text"`` (a
normal answer whose content is ``text``, e.g. with lone surrogates).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from .loopback import serve

CHAT_FAULTS = ("429", "503", "500", "drip", "reset", "malformed", "nested", "text")


@dataclass
class ChatFault:
    """A fault for the next ``first`` chat requests (every request when None)."""

    kind: str
    first: int | None = None
    retry_after: str | None = None
    delay_s: float = 0.2
    depth: int = 100_000
    text: str = ""
    hits: int = 0
    sent: int = 0  # "drip": bytes of the body sent so far (of ``size``)
    size: int = 0


class ChatServer:
    """The server (see the module docstring). ``url`` is ``http://127.0.0.1:PORT``; ``times``
    the ``time.monotonic()`` of every chat request, in arrival order.
    """

    model = "chat-server-model"

    def __init__(self):
        self.faults: list[ChatFault] = []
        self.times: list[float] = []
        self._lock = threading.Lock()
        self._context = None
        self.url = ""

    def inject(self, kind: str, *, first: int | None = None, retry_after=None, delay_s: float = 0.2,
               depth: int = 100_000, text: str = "") -> None:
        """Queue a fault of ``kind`` (one of :data:`CHAT_FAULTS`) for the next ``first`` chat requests."""
        if kind not in CHAT_FAULTS:
            raise ValueError(f"kind must be one of {CHAT_FAULTS}, got {kind!r}")
        with self._lock:
            self.faults.append(ChatFault(kind, first, None if retry_after is None else str(retry_after), delay_s,
                                         depth, text))

    def claim(self) -> ChatFault | None:
        """The fault for the request arriving now (and record its time)."""
        with self._lock:
            self.times.append(time.monotonic())
            for fault in self.faults:
                if fault.first is None or fault.hits < fault.first:
                    fault.hits += 1
                    return fault
            return None

    def __enter__(self) -> ChatServer:
        self._context = serve(_handler(self))
        self.url = self._context.__enter__().url
        return self

    def __exit__(self, *exc) -> None:
        self._context.__exit__(*exc)


def _answer(content: str) -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}).encode()


def _handler(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    return type("ChatHandler", (_ChatHandler,), {"chat": server})


class _ChatHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    chat: ChatServer

    def log_message(self, *args):
        pass

    def _reply(self, status: int, payload: bytes, headers: dict | None = None) -> None:
        self._headers(payload, status, headers)
        self.wfile.write(payload)

    def do_GET(self):
        if self.path.rstrip("/") == "/v1/models":
            self._reply(200, json.dumps({"object": "list", "data": [{"id": self.chat.model}]}).encode())
        else:
            self._reply(404, b'{"error": "not found"}')

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][0]["content"][-1]["text"]
        fault = self.chat.claim()
        if fault is None:
            self._reply(200, _answer(text.upper()))
        elif fault.kind in ("429", "503", "500"):
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._reply(int(fault.kind), b'{"error": "try again later"}', headers)
        else:
            getattr(self, f"_{fault.kind}")(fault, text)

    def _malformed(self, fault: ChatFault, text: str) -> None:
        self._reply(200, b'{"choices": [{"message": {"content": "cut')

    def _nested(self, fault: ChatFault, text: str) -> None:
        self._reply(200, b"[" * fault.depth + b"]" * fault.depth)

    def _text(self, fault: ChatFault, text: str) -> None:
        self._reply(200, _answer(fault.text))

    def _headers(self, payload: bytes, status: int = 200, headers: dict | None = None) -> None:
        """The status line and headers of an answer carrying ``payload`` (sent apart, or not at all)."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def _drip(self, fault: ChatFault, text: str) -> None:
        payload = _answer(text.upper())
        fault.size = len(payload)
        self._headers(payload)
        try:
            for i in range(len(payload)):
                self.wfile.write(payload[i:i + 1])
                self.wfile.flush()
                fault.sent = i + 1
                time.sleep(fault.delay_s)
        except OSError:
            pass  # the client gave up

    def _reset(self, fault: ChatFault, text: str) -> None:
        payload = _answer(text.upper())
        self._headers(payload)
        self.wfile.write(payload[: len(payload) // 2])
        self.wfile.flush()
        # linger 0: close() sends a TCP reset instead of a clean end
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()


__all__ = ["CHAT_FAULTS", "ChatFault", "ChatServer"]
