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
    "Area": "sociogeo.geo.area",
    "PixelGrid": "sociogeo.geo.grid",
    "ImagerySource": "sociogeo.imagery.source",
    "RasterSource": "sociogeo.imagery.raster",
    "fetch_pair": "sociogeo.imagery.pair",
    "ImagePair": "sociogeo.imagery.pair",
    "Chip": "sociogeo.imagery.chips",
    "SocioReasoner": "sociogeo.reasoner.model",
    "Prediction": "sociogeo.reasoner.model",
    "segment": "sociogeo.pipeline.run",
    "vectorize": "sociogeo.pipeline.vectorize",
    "Explorer": "sociogeo.analysis.explorer",
    "build_dataset": "sociogeo.datasets.osm_build",
}
# the data flow, one subpackage per step (training beside it), plus shortcuts users already write
_SUBMODULES = {
    "geo": "sociogeo.geo", "imagery": "sociogeo.imagery", "osm": "sociogeo.osm", "reasoner": "sociogeo.reasoner",
    "pipeline": "sociogeo.pipeline", "analysis": "sociogeo.analysis", "datasets": "sociogeo.datasets",
    "train": "sociogeo.train", "cli": "sociogeo.cli", "testing": "sociogeo.testing", "errors": "sociogeo.errors",
    "defaults": "sociogeo.defaults", "access": "sociogeo.analysis.access",
}

__all__ = ["__version__", "options", "set_progress", *_LAZY, *_error_names]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    raise AttributeError(f"module 'sociogeo' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
