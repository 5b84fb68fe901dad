"""Run ``transformers serve`` on a local model folder as a real OpenAI-compatible server process.

Used by tests, notebooks and benchmarks to exercise :class:`~sociogeo.reasoner.vlm.openai_backend.OpenAIVLM`
against an actual HTTP server on the loopback interface, offline (``HF_HUB_OFFLINE=1``)::

    with serve_model(make_tiny_vlm(tmp)) as url:
        OpenAIVLM(url).generate(requests)

``transformers serve`` (transformers >= 5) needs ``fastapi``, ``uvicorn`` and ``openai``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import DependencyNotFoundError, SociogeoError

_SERVE_PACKAGES = ("fastapi", "uvicorn", "openai")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextmanager
def serve_model(
    model_dir,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    startup_timeout_s: float = 180.0,
):
    """Start ``transformers serve <model_dir>`` on ``host:port`` and yield its base URL
    (``http://host:port/v1``); the process is stopped on exit. Raises
    :class:`~sociogeo.errors.DependencyNotFoundError` when the server's packages are missing and
    :class:`~sociogeo.errors.SociogeoError` (with the server's log) when it does not come up.
    """
    import importlib.util

    for package in _SERVE_PACKAGES:
        if importlib.util.find_spec(package) is None:
            raise DependencyNotFoundError(package, "test", purpose="`transformers serve`")
    port = port or free_port(host)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false")
    command = [
        sys.executable, "-m", "transformers.cli.transformers", "serve", os.fspath(Path(model_dir)),
        "--host", host, "--port", str(port), "--device", device, "--dtype", dtype,
    ]
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(process, host, port, startup_timeout_s, log)
            yield f"http://{host}:{port}/v1"
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=20)


def _wait_ready(process, host: str, port: int, timeout_s: float, log) -> None:
    import requests

    url = f"http://{host}:{port}/v1/models"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SociogeoError(f"`transformers serve` exited with code {process.returncode}:\n{_tail(log)}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.exceptions.RequestException:
            pass
        time.sleep(0.2)
    raise SociogeoError(f"`transformers serve` did not answer at {url} within {timeout_s:g} s:\n{_tail(log)}")


def _tail(log, chars: int = 3000) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-chars:]


__all__ = ["free_port", "serve_model"]
