"""sociogeo: urban socio-semantic segmentation from satellite imagery and street maps.

Public names are resolved lazily (PEP 562), so ``import sociogeo`` loads neither torch nor
geopandas nor leafmap; each is imported the first time something needs it.
"""

from __future__ import annotations

import importlib

from ._version import __version__
from .errors import *  # noqa: F401,F403  (light: no third-party imports)
from .errors import __all__ as _error_names
from .options import options, set_progress

# public name -> module that defines it
_LAZY = {
    "Area": "sociogeo.area",
    "PixelGrid": "sociogeo.grid",
    "fetch_pair": "sociogeo.imagery",
    "ImagePair": "sociogeo.imagery",
    "Chip": "sociogeo.chips",
    "vectorize": "sociogeo.vectorize",
    "SocioReasoner": "sociogeo.reasoner",
    "Prediction": "sociogeo.reasoner",
    "segment": "sociogeo.segmentation",
    "Explorer": "sociogeo.explorer",
    "build_dataset": "sociogeo.osm_dataset",
}
_SUBMODULES = {
    "access", "area", "chips", "cli", "demo", "errors", "evaluate", "explorer", "grid", "imagery", "metrics", "modelspace",
    "maprender", "osm", "osm_dataset", "parsing", "results", "plot", "prompts", "providers", "reasoner", "render", "rewards",
    "sam", "segmentation", "socioseg", "taxonomy", "testing", "tiles", "vectorize", "vlm", "train",
}

__all__ = ["__version__", "options", "set_progress", *_LAZY, *_error_names]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"sociogeo.{name}")
    raise AttributeError(f"module 'sociogeo' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
