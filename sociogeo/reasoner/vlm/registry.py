"""Which VLM backend a name selects, and loading it: the only place that knows both.

A spec is a ready backend (used as is), an ``http(s)://`` URL (an OpenAI-compatible server such
as vLLM or ``transformers serve``; a list of URLs is a fleet of such servers, requests spread over
them) or a Hugging Face hub id / local folder (Qwen2.5-VL in this process). Further backends can
be added with :func:`register_vlm`; the interface module (:mod:`.base`) never imports an
implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...options import options
from .base import VLMBackend


@dataclass(frozen=True)
class VLMLoader:
    """A backend kind: ``matches(spec)`` says whether a string selects it; ``load(spec, **kw)``
    builds it (keywords: ``device``, ``dtype``, ``cache_dir``, ``offline`` and backend options).
    """

    name: str
    matches: Callable[[str], bool]
    load: Callable[..., VLMBackend]


def _is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def _load_server(spec, *, device=None, dtype=None, cache_dir=None, offline=None, **kwargs):
    from .openai_backend import OpenAIVLM

    # the model lives on the server: device, dtype and the weight cache do not apply here
    return OpenAIVLM(spec, **kwargs)


def _load_transformers(spec, *, device=None, dtype=None, cache_dir=None, offline=None, **kwargs):
    from .transformers_backend import TransformersVLM

    return TransformersVLM.from_pretrained(spec, device=device, dtype=dtype, cache_dir=cache_dir,
                                           local_files_only=offline, **kwargs)


_LOADERS: list[VLMLoader] = [
    VLMLoader("openai", _is_url, _load_server),
    VLMLoader("transformers", lambda spec: True, _load_transformers),
]


def register_vlm(loader: VLMLoader) -> None:
    """Add a backend kind; it is tried before the built-in ones."""
    _LOADERS.insert(0, loader)


def vlm_kind(spec) -> str:
    """The name of the backend kind ``spec`` selects (``"ready"`` for a backend object)."""
    if isinstance(spec, VLMBackend):
        return "ready"
    if isinstance(spec, (list, tuple)):
        return "openai"
    return next(loader.name for loader in _LOADERS if loader.matches(str(spec)))


def load_vlm(spec, *, device=None, dtype=None, cache_dir=None, offline: bool | None = None, **kwargs) -> VLMBackend:
    """A VLM backend for ``spec`` (see the module docstring).

    ``offline=None`` follows ``sociogeo.options.offline`` (and ``HF_HUB_OFFLINE``): then nothing is
    downloaded. Extra keywords go to the backend (e.g. ``batch_size``, ``api_key``).
    """
    if isinstance(spec, VLMBackend):
        return spec
    if offline is None:
        offline = options.offline_requested()
    if isinstance(spec, (list, tuple)):  # a fleet of servers of one model
        return _load_server(list(map(str, spec)), **kwargs)
    text = str(spec)
    loader = next(loader for loader in _LOADERS if loader.matches(text))
    return loader.load(text, device=device, dtype=dtype, cache_dir=cache_dir, offline=bool(offline), **kwargs)


__all__ = ["VLMLoader", "load_vlm", "register_vlm", "vlm_kind"]
