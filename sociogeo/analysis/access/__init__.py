"""Accessibility: how far, along the street network, every origin is from the nearest entity.

Typical question: "which buildings are more than ten minutes' walk from a park?", with the
parks coming from :func:`sociogeo.segment` (or from OpenStreetMap) and the origins being
buildings, a hexagon grid or any points or polygons::

    graph = street_network(area, mode="walk")
    result = nearest(buildings(area), parks, graph)
    coverage(result, thresholds=(5, 10))

Definitions (all distances in metres, all times in minutes):

- **Network.** An osmnx-compatible ``networkx.MultiDiGraph`` (``graph["crs"]``, node ``x``/``y``,
  edge ``length`` in metres). Work happens in the local UTM CRS of the graph's nodes; inputs may
  be in any CRS and outputs come back in the origins' (or entities') CRS. ``mode="walk"`` treats
  every street as two-way; ``"bike"`` and ``"drive"`` respect edge direction (one-way streets),
  searching the reversed graph from the entities towards the origins.
- **Entity access nodes.** Each entity's boundary is densified in UTM so that no segment is
  longer than ``boundary_step_m`` (``shapely.segmentize``); every vertex of the densified
  boundary snaps to its nearest network node (vertices farther than ``max_snap_m`` are
  ignored). Nodes lying inside or on an entity polygon are access nodes too (a path through a
  park is in the park). Point entities use the point itself. A node claimed by several
  entities belongs to the one whose boundary is closest to it.
- **Search.** One multi-source Dijkstra from all access nodes at once, carrying the entity each
  node was reached from, gives every node its travel time, network distance and nearest entity.
  Ties in time go to the shorter distance, then to the entity that comes first. (It runs on
  ``scipy.sparse.csgraph``; the graph is prepared once per graph object and mode and reused by
  every later call: see :func:`clear_cache` for graphs whose edge attributes change in place.)
- **Snapping.** Points snap to the nearest node at street level: nodes whose every edge runs
  through a tunnel (``tunnel`` tag other than ``no``/``building_passage`` on any part of the
  edge, e.g. Helsinki's underground service tunnels and metro corridors) are routed through
  but never snapped to, since a building above them is not reached through them.
- **Origins.** Points, or polygons through their representative point (computed in UTM), snap
  to their nearest node; the snap distance is reported as ``snap_m`` and added to distance and
  time with ``include_snap=True``. An origin inside or on an entity has distance 0. Origins
  farther than ``max_snap_m`` from the network, or whose node cannot reach any entity, get NaN
  (and a warning with their count).
- **Speeds.** walk 4.8 km/h and bike 15 km/h, flat. drive: per edge, the first available of the
  edge's ``speed_kph`` (osmnx ``add_edge_speeds``), its ``maxspeed`` tag (km/h, or ``mph``),
  :data:`HIGHWAY_SPEEDS_KMH` for its ``highway`` type, else 30 km/h. ``speed_kmh=`` sets one
  flat speed for every edge in any mode. For drive the search minimises time, and
  ``distance_m`` is the length of that fastest route. Snap legs use the mode's flat speed
  (drive: ``speed_kmh`` or 30 km/h).
"""

from __future__ import annotations

from .coverage import coverage
from .isochrones import isochrones
from .network import (
    DEFAULT_MAX_SNAP_M,
    DEFAULT_PAD_M,
    DEFAULT_SPEEDS_KMH,
    HIGHWAY_SPEEDS_KMH,
    MODES,
    RESULT_COLUMNS,
    street_network,
)
from .origins import buildings, hex_grid
from .plots import access_layer, access_legend, access_map, plot_access, plot_isochrones
from .prepared import clear_cache
from .search import entity_nodes, nearest

__all__ = ["DEFAULT_MAX_SNAP_M", "DEFAULT_PAD_M", "DEFAULT_SPEEDS_KMH", "HIGHWAY_SPEEDS_KMH", "MODES",
           "RESULT_COLUMNS", "access_layer", "access_legend", "access_map", "buildings", "clear_cache", "coverage",
           "entity_nodes", "hex_grid", "isochrones", "nearest", "plot_access", "plot_isochrones", "street_network"]
