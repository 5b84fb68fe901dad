"""An OpenAI-compatible chat server on 127.0.0.1 whose "model" answers one fixed box per image.

Untrained tiny models answer gibberish and find nothing, which leaves a browser test with no
polygons to look for. This server stands in for a served VLM (as vLLM or ``transformers serve``
would be), reached through sociogeo's own OpenAI client: ``VLM = server.url`` in a notebook. Stage 1
answers ``BOX`` (model pixels), stage 2 the same box with its centre as a point; SAM (the real tiny
one) then segments it. It answers ``GET /v1/models`` and ``POST /v1/chat/completions`` only.
"""

from __future__ import annotations

import json
import threading
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler

from sociogeo.testing.loopback import serve

MODEL = "scripted-box"
BOX = [70, 70, 180, 180]  # x1, y1, x2, y2 in the model's pixels (252 x 252 for a 256-pixel chip)
THINK = "scripted answer for the browser test: one box in the middle of the chip"


def answer(prompt: str) -> str:
    """The answer to a stage-1 or stage-2 prompt (told apart by the stage-2 wording)."""
    if "have been rendered on these two images" in prompt:
        centre = [(BOX[0] + BOX[2]) // 2, (BOX[1] + BOX[3]) // 2]
        items = [{"bbox_2d": BOX, "points": [centre]}]
    else:
        items = [{"bbox_2d": BOX}]
    return f"<think>{THINK}</think><answer>{json.dumps(items)}</answer>"


class ScriptedChatServer:
    """``with ScriptedChatServer() as server: ... server.url`` (``http://127.0.0.1:<port>``)."""

    def __init__(self):
        self.completions = 0
        self._lock = threading.Lock()
        self._stack = ExitStack()
        self.url = ""  # http://127.0.0.1:<port>, once entered

    def __enter__(self) -> ScriptedChatServer:
        handler = type("Handler", (_Handler,), {"chat": self})
        self.url = self._stack.enter_context(serve(handler)).url
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _count(self) -> None:
        with self._lock:
            self.completions += 1


class _Handler(BaseHTTPRequestHandler):
    chat: ScriptedChatServer

    def do_GET(self):
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self):
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        content = body["messages"][-1]["content"]
        prompt = content if isinstance(content, str) else " ".join(
            part.get("text", "") for part in content if part.get("type") == "text")
        self.chat._count()
        self._json(200, {"id": "scripted", "object": "chat.completion", "model": MODEL, "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer(prompt)}}]})

    def _json(self, status: int, data: dict) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass
