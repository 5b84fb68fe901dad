"""OpenStreetMap: vector data (Overpass, .osm or .osm.pbf files), street networks, the local map
renderer in SocioSeg's style, and the socio-semantic taxonomy of OSM tags.

Names resolve lazily, so ``sociogeo.osm.taxonomy`` can be used without loading geopandas.
"""

from __future__ import annotations

import importlib

_LAZY = {name: "sociogeo.osm.data" for name in (
    "ATTRIBUTION", "OSMData", "check_source", "clear_cache", "load_features", "load_network", "load_osm")}
_LAZY.update({"render_map": "sociogeo.osm.render", "render_osm_map": "sociogeo.osm.render"})

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sociogeo.osm' has no attribute {name!r}")
