"""Import optional dependencies with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import DependencyNotFoundError

# import name -> (pip distribution name, sociogeo extra)
_EXTRAS = {
    "torch": ("torch", "model"),
    "torchvision": ("torchvision", "model"),
    "transformers": ("transformers", "model"),
    "segment_anything": ("segment-anything", "model"),
    "osmnx": ("osmnx", "osm"),
    "pyrosm": ("pyrosm", "osm"),
    "networkx": ("networkx", "osm"),
    "leafmap": ("leafmap", "notebook"),
    "ipyleaflet": ("ipyleaflet", "notebook"),
    "ipywidgets": ("ipywidgets", "notebook"),
    "peft": ("peft", "train"),
    "accelerate": ("accelerate", "train"),
    "datasets": ("datasets", "train"),
    "scipy": ("scipy", "train"),
    # accessibility searches need only the osm extra, which brings scipy
    "scipy.sparse": ("scipy", "osm"),
    "scipy.sparse.csgraph": ("scipy", "osm"),
    "scipy.spatial": ("scipy", "osm"),
    "yaml": ("pyyaml", "train"),
    "torch.utils.tensorboard": ("tensorboard", "train"),
}


def require(name: str, purpose: str | None = None) -> ModuleType:
    """Import ``name`` or raise :class:`DependencyNotFoundError` naming the extra to install."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        package, extra = _EXTRAS.get(name, (name.split(".")[0], "all"))
        raise DependencyNotFoundError(package, extra, purpose) from exc
