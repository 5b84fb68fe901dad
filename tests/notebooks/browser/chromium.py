"""Headless Chromium driven over the DevTools protocol, with the standard library only.

``--remote-debugging-pipe`` makes Chromium read protocol messages (JSON, each ended by a NUL byte)
from file descriptor 3 and write answers and events to descriptor 4, so no websocket client (and no
extra dependency) is needed. Only loopback hosts resolve (``--host-resolver-rules``), so a page
cannot reach the internet even by accident; every request it makes is recorded in
:attr:`Chromium.requests` so a test can check that.

    with Chromium("/usr/bin/chromium", profile_dir) as browser:
        browser.open("http://127.0.0.1:8000/page.html")
        browser.wait_for("document.querySelector('.leaflet-tile-loaded') !== null", timeout_s=60)
        browser.screenshot("page.png")
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import signal
import threading
import time
from pathlib import Path

#: Flags the browser test always uses (no GPU, no sandbox in containers, nothing phoning home).
BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    # every host name except loopback fails to resolve: no request can leave the machine
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--remote-debugging-pipe",
)


class BrowserError(RuntimeError):
    """The browser answered a protocol call with an error, or did not answer in time."""


class Chromium:
    """One headless Chromium with one page (a ``width`` x ``height`` CSS-pixel viewport).

    ``console`` collects console messages and uncaught exceptions of the page as text,
    ``requests`` every URL the page requested, ``failed`` the URLs whose loading failed. The
    browser's own output goes to ``profile_dir/chromium.log``.
    """

    def __init__(self, binary, profile_dir, *, width: int = 1280, height: int = 1000, extra_flags=()):
        self.binary = str(binary)
        self.profile_dir = Path(profile_dir)
        self.width, self.height = width, height
        self.extra_flags = tuple(extra_flags)
        self.console: list[str] = []
        self.requests: list[str] = []
        self.failed: list[str] = []
        self._pid: int | None = None
        self._to_browser: int | None = None
        self._from_browser: int | None = None
        self._next_id = 0
        self._answers: dict[int, dict] = {}
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._session: str | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> Chromium:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        # pipe ends above descriptor 10, so that dup2 onto 3 and 4 cannot clobber one of them
        cmd_read, cmd_write = (_high(fd) for fd in os.pipe())
        out_read, out_write = (_high(fd) for fd in os.pipe())
        log = os.open(self.profile_dir / "chromium.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        argv = [self.binary, *BASE_FLAGS, *self.extra_flags, f"--user-data-dir={self.profile_dir / 'profile'}",
                f"--window-size={self.width},{self.height}", "about:blank"]
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, log, 1),
            (os.POSIX_SPAWN_DUP2, log, 2),
            (os.POSIX_SPAWN_DUP2, cmd_read, 3),
            (os.POSIX_SPAWN_DUP2, out_write, 4),
        ]
        try:
            # its own process group, so that stop() can end the browser's helper processes too
            self._pid = os.posix_spawn(self.binary, argv, dict(os.environ), file_actions=actions, setpgroup=0)
        finally:
            for fd in (cmd_read, out_write, log):
                os.close(fd)
        self._to_browser, self._from_browser = cmd_write, out_read
        self._reader = threading.Thread(target=self._read, name="chromium-devtools", daemon=True)
        self._reader.start()

        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self._session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                  session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        return self

    def stop(self) -> None:
        if self._pid is None:
            return
        try:
            self.call("Browser.close", session=False, timeout_s=10)
        except (BrowserError, OSError):
            pass
        deadline = time.monotonic() + 10
        while os.waitpid(self._pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.killpg(self._pid, signal.SIGKILL)  # the process group created for this browser only
                os.waitpid(self._pid, 0)
                break
            time.sleep(0.1)
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self._pid = None

    def __enter__(self) -> Chromium:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- protocol ---------------------------------------------------------------------------------
    def call(self, method: str, params: dict | None = None, *, session: bool = True, timeout_s: float = 30.0) -> dict:
        """Send one DevTools command (to the page's session unless ``session=False``); its result."""
        with self._cond:
            self._next_id += 1
            message_id = self._next_id
        message = {"id": message_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while message_id not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0 or (self._reader is not None and not self._reader.is_alive()):
                    raise BrowserError(
                        f"no answer to {method} within {timeout_s:g} s; see {self.profile_dir}/chromium.log"
                    )
                self._cond.wait(min(left, 0.5))
            answer = self._answers.pop(message_id)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._cond.notify_all()
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                self._dispatch(json.loads(raw))

    def _dispatch(self, message: dict) -> None:
        if "id" in message:
            with self._cond:
                self._answers[message["id"]] = message
                self._cond.notify_all()
            return
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Network.loadingFailed":
            self.failed.append(f"{params.get('errorText')} ({params.get('requestId')})")
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append(f"console.{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.console.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            self.console.append(f"log.{entry.get('level')}: {entry.get('text')} {entry.get('url', '')}".rstrip())

    # -- page -------------------------------------------------------------------------------------
    def open(self, url: str) -> None:
        """Navigate the page to ``url`` (returns once navigation has started)."""
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"cannot open {url}: {result['errorText']}")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-serialisable values only)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(
                f"JavaScript error: {result['exceptionDetails'].get('exception', {}).get('description')}"
            )
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout_s: float = 60.0, interval_s: float = 0.25):
        """Evaluate ``expression`` until it is truthy and return that value; None on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() >= deadline:
                return value or None
            time.sleep(interval_s)

    def screenshot(self, path, *, clip: dict | None = None) -> Path:
        """A PNG of the viewport, or of ``clip`` (``x``, ``y``, ``width``, ``height`` in CSS pixels of
        the document, i.e. including the scroll offset); returns its path."""
        params = {"format": "png", "captureBeyondViewport": clip is not None}
        if clip is not None:
            params["clip"] = {**clip, "scale": 1}
        data = self.call("Page.captureScreenshot", params, timeout_s=60)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


def _high(fd: int) -> int:
    """``fd`` moved to a descriptor number of at least 10 (close-on-exec)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved
