"""Any OpenAI-compatible chat-completions server as a VLM backend (vLLM, ``transformers serve``).

Each request becomes one ``POST {base_url}/v1/chat/completions`` whose single user message holds
``[image_url (map), image_url (satellite), text]``, the images as lossless PNG data URLs, so the
server's own chat template and processor see exactly what the in-process backend would.

Decoding follows :class:`~sociogeo.reasoner.vlm.base.GenerationConfig`: greedy is ``temperature 0``;
sampling sends ``temperature``, ``top_p`` and ``top_k`` (an extra field vLLM accepts). Servers
differ on ``top_k``: ``transformers serve`` rejects it and instead takes a ``generation_config``
JSON field. With ``dialect="auto"`` the client starts in the vLLM form and, if the server rejects
``top_k`` or ``repetition_penalty``, switches to the transformers form for good (the decoding settings are the same).

A ``seed`` makes sampling reproducible on servers that honour it; request ``i`` gets
``seed + i`` so identical prompts (e.g. GRPO groups) still draw different samples.

Each request has a total deadline, ``timeout_s``: connecting, waiting, reading the answer and any
retries together, so a server that drips its answer byte by byte cannot hold a run for longer.
HTTP 429, 502, 503 and 504 and connections dropped mid-answer are retried ``retries`` times with
exponential backoff, honouring ``Retry-After`` (a wait past the deadline fails at once). An answer
that is not JSON, is nested too deeply to parse, or is larger than :data:`MAX_RESPONSE_BYTES` is a
:class:`~sociogeo.errors.VLMServerError` like any other failed request.

Failures are collected, not thrown mid-batch: every request runs, then a
:class:`VLMBatchError` lists the failed indices and carries the answers that did come back.

Several servers of one model (a vLLM fleet) form one backend: pass a list of base URLs and the
requests of each batch are spread over them in turn (seeds stay per request, so answers do not
depend on which server gave them).
"""

from __future__ import annotations

import base64
import io
import json
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..._http import caused_by, retry_after_s
from ..._progress import progress
from ...errors import ConfigError, VLMBatchError, VLMServerError
from .base import GenerationConfig, VLMRequest

_DIALECTS = ("auto", "vllm", "transformers")
#: Statuses that mean "busy, ask again": retried with backoff.
RETRY_STATUSES = (429, 502, 503, 504)
#: The largest answer read from a server (a chat completion is a few kB).
MAX_RESPONSE_BYTES = 16 * 2**20
MAX_BACKOFF_S = 30.0


@dataclass
class _Reply:
    """A whole HTTP answer: status, headers and body bytes (read within the deadline)."""

    status_code: int
    headers: dict
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class _Retry(Exception):
    """One attempt failed in a way that may pass (busy server, dropped connection)."""

    def __init__(self, reason: str, wait_s: float | None = None, status: int | None = None):
        super().__init__(reason)
        self.wait_s = wait_s
        self.status = status


class OpenAIVLM:
    """A VLM behind an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    ``base_url`` may end with or without ``/v1``; a list of URLs is a fleet of servers of the same
    model, requests spread over them. ``model`` defaults to the first id the (first) server
    lists at ``/v1/models``. ``api_key`` is sent as a bearer token. Up to ``max_concurrency``
    requests run at once; each may take ``timeout_s`` seconds in all, its ``retries`` (first
    backoff ``backoff_s`` seconds, doubling) included. ``dialect`` is ``"auto"``, ``"vllm"`` or
    ``"transformers"`` (see the module docstring).
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        max_concurrency: int = 8,
        timeout_s: float = 600,
        dialect: str = "auto",
        retries: int = 3,
        backoff_s: float = 1.0,
    ):
        urls = [base_url] if isinstance(base_url, (str, bytes)) or not hasattr(base_url, "__iter__") else list(base_url)
        if not urls:
            raise ConfigError("base_url must be a server URL or a non-empty list of them")
        for url in urls:
            if not str(url).startswith(("http://", "https://")):
                raise ConfigError(f"base_url must start with http:// or https://, got {url!r}")
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if dialect not in _DIALECTS:
            raise ConfigError(f"dialect must be one of {_DIALECTS}, got {dialect!r}")
        if not (timeout_s > 0) or retries < 0 or not (backoff_s >= 0):
            raise ConfigError(f"timeout_s must be > 0, retries and backoff_s >= 0; got {timeout_s}, {retries}, "
                              f"{backoff_s}")
        self.base_urls = [str(url).rstrip("/").removesuffix("/v1") for url in urls]
        self.base_url = self.base_urls[0]
        self._turn = 0  # which server the next batch starts at
        self.api_key = api_key
        self.max_concurrency = int(max_concurrency)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.dialect = dialect
        self._model = model
        self._local = threading.local()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """``model @ base_url`` once the model is known, else the base URL (URLs of a fleet joined by ``, ``)."""
        where = ", ".join(self.base_urls)
        return f"{self._model} @ {where}" if self._model else where

    @property
    def model(self) -> str:
        """The served model id (asked from ``/v1/models`` on first use when not given)."""
        if self._model is None:
            models = self.models()
            if not models:
                raise VLMServerError(
                    f"the server at {self.base_url} lists no models; pass model= explicitly",
                    url=self._url("/v1/models"),
                )
            self._model = models[0]
        return self._model

    def models(self) -> list[str]:
        """The model ids the server lists at ``GET /v1/models``."""
        url = self._url("/v1/models")
        response = self._send("GET", url)
        data = self._json(response, url)
        try:
            return [str(entry["id"]) for entry in data["data"]]
        except (KeyError, TypeError) as exc:
            raise VLMServerError(f"malformed /v1/models answer from {url}: {response.text[:200]!r}",
                                 url=url) from exc

    def generate(self, requests: Sequence[VLMRequest], config: GenerationConfig | None = None) -> list[str]:
        """Answer texts, one per request, in order. Raises :class:`VLMBatchError` after all
        requests ran if any failed (its ``results`` keeps the successful answers).
        """
        config = config or GenerationConfig()
        requests = list(requests)
        if not requests:
            return []
        if config.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {config.max_new_tokens}")
        model = self.model
        messages = [_messages(request) for request in requests]
        results: list[str | None] = [None] * len(requests)
        errors: dict[int, VLMServerError] = {}
        workers = min(self.max_concurrency * len(self.base_urls), len(requests))
        with self._lock:
            start, self._turn = self._turn, (self._turn + len(requests)) % len(self.base_urls)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sociogeo-vlm") as pool:
            futures = [
                pool.submit(self._complete, model, messages[i], config, _seed(config, i),
                            self.base_urls[(start + i) % len(self.base_urls)])
                for i in range(len(requests))
            ]
            for i, future in enumerate(progress(futures, total=len(futures), desc="VLM requests")):
                try:
                    results[i] = future.result()
                except VLMServerError as exc:
                    errors[i] = exc
        if errors:
            raise VLMBatchError(results, errors)
        return results  # type: ignore[return-value]

    # --- one request ---------------------------------------------------------------------------

    def _complete(self, model: str, messages: list, config: GenerationConfig, seed: int | None,
                  server: str | None = None) -> str:
        url = (server or self.base_url) + "/v1/chat/completions"
        dialect = self.dialect if self.dialect != "auto" else "vllm"
        deadline = time.monotonic() + self.timeout_s
        response = self._send("POST", url, deadline, json=_body(model, messages, config, seed, dialect))
        if (
            dialect == "vllm"
            and self.dialect in ("auto", "transformers")  # another request may have switched already
            and response.status_code in (400, 422)
            and any(field in response.text for field in ("top_k", "repetition_penalty"))
        ):
            # transformers serve refuses vLLM's extra fields; it takes generation_config instead.
            with self._lock:
                self.dialect = "transformers"
            response = self._send("POST", url, deadline, json=_body(model, messages, config, seed, "transformers"))
        data = self._json(response, url)
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise VLMServerError(
                f"malformed chat completion from {url}: {response.text[:200]!r}", url=url, status=response.status_code
            ) from exc
        if not isinstance(content, str):
            raise VLMServerError(
                f"chat completion from {url} has no text content: {response.text[:200]!r}",
                url=url,
                status=response.status_code,
            )
        return content

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _session(self):
        # One pooled session per worker thread: requests.Session is not guaranteed thread-safe.
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            if self.api_key:
                session.headers["Authorization"] = f"Bearer {self.api_key}"
            self._local.session = session
        return session

    def _send(self, method: str, url: str, deadline: float | None = None, **kwargs) -> _Reply:
        """The server's whole answer, retrying busy answers and dropped connections until ``deadline``
        (``time.monotonic()``; default ``timeout_s`` from now).
        """
        deadline = time.monotonic() + self.timeout_s if deadline is None else deadline
        for attempt in range(self.retries + 1):
            try:
                return self._attempt(method, url, deadline, **kwargs)
            except _Retry as retry:
                if attempt == self.retries:
                    raise VLMServerError(f"{retry} from {url}; gave up after {attempt + 1} attempts",
                                         url=url, status=retry.status) from None
                backoff = min(self.backoff_s * 2**attempt, MAX_BACKOFF_S) * random.uniform(1.0, 1.25)
                wait = max(backoff, retry.wait_s or 0.0)
                if time.monotonic() + wait >= deadline:
                    raise VLMServerError(
                        f"{retry} from {url}; waiting {wait:.3g} s more would pass the {self.timeout_s:g} s "
                        "deadline per request (timeout_s)", url=url, status=retry.status) from None
                time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, method: str, url: str, deadline: float, **kwargs) -> _Reply:
        """One request, read whole before ``deadline``; :class:`_Retry` when worth another try."""
        import requests
        from urllib3.exceptions import HTTPError as Urllib3Error
        from urllib3.exceptions import ReadTimeoutError

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._late(url)
        try:
            response = self._session().request(method, url, timeout=remaining, stream=True, **kwargs)
        except requests.exceptions.Timeout as exc:
            raise self._late(url) from exc
        except requests.exceptions.ConnectionError as exc:
            if not _refused(exc):
                raise _Retry(f"connection lost ({type(exc).__name__})") from exc
            raise self._unreachable(url, exc) from exc
        except requests.exceptions.RequestException as exc:
            raise self._unreachable(url, exc) from exc
        with response:
            try:
                content = _read_body(response, deadline, url)
            except (TimeoutError, ReadTimeoutError, requests.exceptions.Timeout) as exc:
                raise self._late(url) from exc
            except (requests.exceptions.RequestException, Urllib3Error, OSError) as exc:
                raise _Retry(f"connection lost while reading the answer ({type(exc).__name__})") from exc
        status = response.status_code
        if status in RETRY_STATUSES:
            raise _Retry(f"HTTP {status}", retry_after_s(response.headers.get("Retry-After")), status)
        return _Reply(status, dict(response.headers), content)

    def _late(self, url: str) -> VLMServerError:
        return VLMServerError(f"no complete answer from {url} within {self.timeout_s:g} s (timeout_s, the "
                              "deadline per request, retries included)", url=url)

    @staticmethod
    def _unreachable(url: str, exc: Exception) -> VLMServerError:
        return VLMServerError(
            f"cannot reach the VLM server at {url} ({type(exc).__name__}); is it running? "
            f"Start one with e.g. `vllm serve <model>` and pass its URL.",
            url=url,
        )

    @staticmethod
    def _json(response, url: str):
        if response.status_code >= 400:
            raise VLMServerError(
                f"HTTP {response.status_code} from {url}: {response.text[:300]}",
                url=url,
                status=response.status_code,
            )
        try:
            return json.loads(response.content)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply to parse
            raise VLMServerError(
                f"malformed JSON from {url} (HTTP {response.status_code}): {response.text[:200]!r}",
                url=url,
                status=response.status_code,
            ) from exc


def _read_body(response, deadline: float, url: str) -> bytes:
    """The body of a streamed response, read as it arrives; TimeoutError past ``deadline``,
    VLMServerError past :data:`MAX_RESPONSE_BYTES`.
    """
    raw = response.raw
    read = getattr(raw, "read1", None) or raw.read  # read1: whatever arrived, without waiting for more
    chunks, size = [], 0
    while True:
        if time.monotonic() >= deadline:
            raise TimeoutError
        chunk = read(65536, decode_content=True)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise VLMServerError(f"the answer from {url} is larger than {MAX_RESPONSE_BYTES // 2**20} MiB; "
                                 "is this a chat-completions server?", url=url, status=response.status_code)
        chunks.append(chunk)


def _refused(exc: BaseException) -> bool:
    """Whether a connection error means nothing listens there (or the host is unknown): not worth retrying."""
    import socket

    from urllib3.exceptions import NameResolutionError, NewConnectionError

    return caused_by(exc, (ConnectionRefusedError, socket.gaierror, NewConnectionError, NameResolutionError))


def _seed(config: GenerationConfig, index: int) -> int | None:
    return None if config.seed is None else int(config.seed) + index


def _body(model: str, messages: list, config: GenerationConfig, seed: int | None, dialect: str) -> dict:
    """The chat-completions request body for one prompt in a server dialect."""
    body: dict = {"model": model, "messages": messages, "max_tokens": int(config.max_new_tokens)}
    if seed is not None:
        body["seed"] = seed
    if not config.do_sample:
        body["temperature"] = 0.0
        if dialect == "transformers":
            body["generation_config"] = json.dumps(
                {"do_sample": False, "max_new_tokens": int(config.max_new_tokens),
                 "repetition_penalty": float(config.repetition_penalty)}
            )
        else:
            # explicit, so vLLM's "generation_config=auto" cannot bring in the checkpoint's default
            body["repetition_penalty"] = float(config.repetition_penalty)
        return body
    body["temperature"] = float(config.temperature)
    body["top_p"] = float(config.top_p)
    if dialect == "transformers":
        body["generation_config"] = json.dumps(
            {
                "do_sample": True,
                "temperature": float(config.temperature),
                "top_p": float(config.top_p),
                "top_k": int(config.top_k),
                "max_new_tokens": int(config.max_new_tokens),
                "repetition_penalty": float(config.repetition_penalty),
            }
        )
    else:
        # vLLM: -1 disables top-k in every version (0 only in newer ones).
        body["top_k"] = int(config.top_k) if config.top_k > 0 else -1
        body["repetition_penalty"] = float(config.repetition_penalty)
    return body


def _messages(request: VLMRequest) -> list[dict]:
    content: list[dict] = [
        {"type": "image_url", "image_url": {"url": _png_data_url(image)}} for image in request.images
    ]
    content.append({"type": "text", "text": request.text})
    return [{"role": "user", "content": content}]


def _png_data_url(image) -> str:
    """An H x W x 3 uint8 array (or PIL image) as a ``data:image/png;base64,...`` URL (lossless)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ConfigError(f"VLM images must be H x W x 3 uint8 arrays, got shape {array.shape} dtype {array.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


__all__ = ["OpenAIVLM", "VLMBatchError", "VLMServerError"]
