"""Helpers for testing code that uses sociogeo, offline: loopback tile and file (HTTP Range)
servers and tiny models.

Names are resolved lazily so that importing :mod:`sociogeo.testing` stays cheap.
"""

from __future__ import annotations

import importlib

# public name -> module that defines it
_LAZY = {
    "TileServer": "sociogeo.testing.tileserver",
    "FileServer": "sociogeo.testing.fileserver",
    "Fault": "sociogeo.testing.tileserver",
    "RequestRecord": "sociogeo.testing.tileserver",
    "make_tiny_models": "sociogeo.testing.tiny",
    "TinyModels": "sociogeo.testing.tiny",
    "make_tiny_vlm": "sociogeo.testing.tiny_vlm",
    "make_tiny_sam2": "sociogeo.testing.tiny_sam",
    "make_tiny_sam1": "sociogeo.testing.tiny_sam",
    "serve_model": "sociogeo.testing.openai_server",
    "ChatServer": "sociogeo.testing.chat_server",
    "ScriptedVLM": "sociogeo.testing.scripted",
    "BoxSegmenter": "sociogeo.testing.scripted",
    "BlobVLM": "sociogeo.testing.scripted",
    "BrightnessSegmenter": "sociogeo.testing.scripted",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sociogeo.testing' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
