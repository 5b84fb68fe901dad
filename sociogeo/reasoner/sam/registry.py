"""Which SAM backend a name selects, and loading it: the only place that knows both.

A spec is a ready segmenter (used as is), a SAM v1 checkpoint (a ``.pth``/``.pt`` file, or
``"vit_h"``/``"vit_l"``/``"vit_b"`` downloaded once) or a Hugging Face hub id / local folder of a
SAM 2 model (through transformers). Further backends can be added with :func:`register_sam`;
the interface module (:mod:`.base`) never imports an implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...defaults import SAM1_TYPES
from ...options import options
from .base import Segmenter


@dataclass(frozen=True)
class SamLoader:
    """A backend kind: ``matches(spec)`` says whether a string selects it; ``load(spec, **kw)``
    builds it (keywords: ``device``, ``dtype``, ``cache_dir``, ``offline``).
    """

    name: str
    matches: Callable[[str], bool]
    load: Callable[..., Segmenter]


def _is_sam1(spec: str) -> bool:
    return spec.endswith((".pth", ".pt")) or spec in SAM1_TYPES


def _load_sam1(spec, *, device=None, dtype=None, cache_dir=None, offline=None, **kwargs):
    from .sam1 import Sam1Segmenter

    return Sam1Segmenter.from_checkpoint(spec, device=device, cache_dir=cache_dir, offline=offline, **kwargs)


def _load_sam2(spec, *, device=None, dtype=None, cache_dir=None, offline=None, **kwargs):
    from .sam2_hf import Sam2Segmenter

    return Sam2Segmenter.from_pretrained(spec, device=device, dtype=dtype, cache_dir=cache_dir,
                                         local_files_only=offline, **kwargs)


_LOADERS: list[SamLoader] = [
    SamLoader("sam1", _is_sam1, _load_sam1),
    SamLoader("sam2", lambda spec: True, _load_sam2),
]


def register_sam(loader: SamLoader) -> None:
    """Add a backend kind; it is tried before the built-in ones."""
    _LOADERS.insert(0, loader)


def sam_kind(spec) -> str:
    """The name of the backend kind ``spec`` selects (``"ready"`` for a segmenter object)."""
    if isinstance(spec, Segmenter):
        return "ready"
    return next(loader.name for loader in _LOADERS if loader.matches(str(spec)))


def load_sam(spec, *, device=None, dtype=None, cache_dir=None, offline: bool | None = None, **kwargs) -> Segmenter:
    """A segmenter for ``spec`` (see the module docstring).

    ``offline=None`` follows ``sociogeo.options.offline`` (and ``HF_HUB_OFFLINE``): then nothing is
    downloaded, and missing weights raise :class:`~sociogeo.errors.ModelNotFoundError`.
    """
    if isinstance(spec, Segmenter):
        return spec
    text = str(spec)
    if offline is None:
        offline = options.offline_requested()
    loader = next(loader for loader in _LOADERS if loader.matches(text))
    return loader.load(text, device=device, dtype=dtype, cache_dir=cache_dir, offline=bool(offline), **kwargs)


__all__ = ["SamLoader", "load_sam", "register_sam", "sam_kind"]
