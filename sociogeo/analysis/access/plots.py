"""Maps of accessibility results: static choropleths and isochrones (with the streets), and an
interactive leafmap map with a colour legend (a map served from this machine when offline).
"""

from __future__ import annotations

import html
import math
import warnings

import numpy as np

from ..._optional import require
from ...errors import ConfigError
from .._leaflet import placeholder_base, tile_layer
from .network import check_frame

# -- plots ------------------------------------------------------------------------------------
_UNITS = {"time_min": "travel time to nearest entity (min)", "distance_m": "network distance to nearest entity (m)",
          "snap_m": "distance to the network (m)"}


def plot_access(result, column: str = "time_min", ax=None, entities=None, *, cmap: str = "viridis_r",
                vmax: float | None = None, figsize=None, title: str | None = None):
    """A choropleth of ``column`` (default travel time) with a colour bar in its units.

    Origins are drawn by their ``footprint`` when they have one (:func:`buildings`), else by
    their geometry; unreachable origins are grey. ``entities`` (any CRS) are outlined in red.
    Draws on ``ax`` when given, else on a new :class:`matplotlib.figure.Figure` (no pyplot
    state). Returns the Figure.
    """
    import geopandas as gpd
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    result = check_frame(result, "result")
    if column not in result.columns:
        raise ConfigError(f"result has no column {column!r}; pass the output of nearest() or set column=")
    if ax is None:
        fig = Figure(figsize=figsize or (8, 7))
        ax = fig.add_subplot()
    fig = ax.figure
    frame = result
    if "footprint" in result.columns and isinstance(result["footprint"], gpd.GeoSeries):
        frame = result.set_geometry("footprint")
    values = frame[column].astype(float)
    reachable = frame[values.notna().to_numpy()]
    unreachable = frame[values.isna().to_numpy()]
    label = _UNITS.get(column, column)
    handles = []
    if len(unreachable):
        unreachable.plot(ax=ax, color="lightgrey", edgecolor="grey", linewidth=0.3, markersize=8)
        handles.append(Patch(facecolor="lightgrey", edgecolor="grey", label=f"unreachable ({len(unreachable)})"))
    if len(reachable):
        reachable.plot(ax=ax, column=column, cmap=cmap, vmin=0, vmax=vmax, legend=True, markersize=8,
                       linewidth=0.2, legend_kwds={"label": label, "shrink": 0.7})
    if entities is not None:
        entities = check_frame(entities, "entities").to_crs(frame.crs)
        entities.plot(ax=ax, facecolor="none", edgecolor="red", linewidth=1.2)
        handles.append(Line2D([], [], color="red", linewidth=1.2, label="entities"))
    if handles:
        ax.legend(handles=handles, loc="lower left", fontsize="small")
    ax.set_title(title or label)
    ax.set_aspect("equal" if not frame.crs.is_geographic else 1 / math.cos(math.radians(_mid_lat(frame))))
    ax.set_axis_off()
    return fig


def plot_isochrones(zones, graph=None, *, entities=None, ax=None, cmap: str = "YlGn_r", figsize=None,
                    title: str | None = None, street_colour: str = "#303030"):
    """The regions of :func:`isochrones`, the nearest darkest, over the streets of ``graph``.

    ``zones`` is the GeoDataFrame :func:`isochrones` returns (columns ``minutes`` and
    ``geometry``); ``graph`` (optional) the street network it was computed on, drawn as thin
    dark lines (one matplotlib ``LineCollection`` with gid ``"streets"``, each street once although
    a walk graph holds it in both directions); ``entities`` (any CRS) are outlined in red. Draws on
    ``ax`` when given, else on a new :class:`matplotlib.figure.Figure`; returns the Figure.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    zones = check_frame(zones, "zones")
    if "minutes" not in zones.columns:
        raise ConfigError("zones has no 'minutes' column; pass the output of isochrones()")
    zones = zones.sort_values("minutes").reset_index(drop=True)
    if ax is None:
        fig = Figure(figsize=figsize or (7, 7))
        ax = fig.add_subplot()
    fig = ax.figure
    colours = _zone_colours(cmap, len(zones))
    for i in reversed(range(len(zones))):  # the farthest first: nearer regions are drawn on top
        if not zones.geometry.iloc[i].is_empty:
            zones.iloc[[i]].plot(ax=ax, color=colours[i], zorder=1)
    handles = [Patch(color=c, label=f"{m:g} min") for m, c in zip(zones["minutes"], colours)]
    if graph is not None:
        ax.add_collection(_street_lines(graph, zones.crs, colour=street_colour))
        handles.append(Line2D([], [], color=street_colour, linewidth=0.6, label="streets"))
    if entities is not None:
        entities = check_frame(entities, "entities").to_crs(zones.crs)
        entities.plot(ax=ax, facecolor="none", edgecolor=_ENTITY_COLOUR, linewidth=1.2, zorder=3)
        handles.append(Line2D([], [], color=_ENTITY_COLOUR, linewidth=1.2, label="entities"))
    if len(zones) and not zones.geometry.is_empty.all():
        west, south, east, north = zones.total_bounds
        ax.set_xlim(west, east)
        ax.set_ylim(south, north)
    ax.legend(handles=handles, loc="lower left", fontsize="small")
    ax.set_title(title or "Travel time to the nearest entity")
    ax.set_aspect("equal" if not zones.crs.is_geographic else 1 / math.cos(math.radians(_mid_lat(zones))))
    ax.set_axis_off()
    return fig


def _zone_colours(cmap: str, n: int) -> list:
    """``n`` colours from ``cmap``, the first the darkest; kept away from its dark end so that the
    streets drawn over them stay readable, and from its palest end (the white page).
    """
    import matplotlib

    return [matplotlib.colormaps[cmap](v) for v in np.linspace(0.4, 0.9, n)] if n else []


def _street_lines(graph, crs, *, colour: str = "#303030", linewidth: float = 0.4):
    """The edges of an osmnx-style ``graph`` as one ``LineCollection`` in ``crs`` (gid "streets").

    Each edge's ``geometry`` when it has one, else the straight line between its nodes; an edge
    present in both directions is drawn once.
    """
    import geopandas as gpd
    import shapely
    from matplotlib.collections import LineCollection

    if "crs" not in graph.graph:
        raise ConfigError("the graph has no 'crs' attribute; pass a graph from street_network() or osmnx")
    lines, seen = [], set()
    for u, v, key, data in graph.edges(keys=True, data=True):
        edge = (min(u, v), max(u, v), key)
        if edge in seen:
            continue
        seen.add(edge)
        geometry = data.get("geometry")
        if geometry is None:
            a, b = graph.nodes[u], graph.nodes[v]
            geometry = shapely.LineString([(a["x"], a["y"]), (b["x"], b["y"])])
        lines.append(geometry)
    projected = gpd.GeoSeries(lines, crs=graph.graph["crs"]).to_crs(crs)
    segments = [shapely.get_coordinates(line) for line in projected]
    collection = LineCollection(segments, colors=colour, linewidths=linewidth, zorder=2, label="streets")
    collection.set_gid("streets")
    return collection


def _mid_lat(frame) -> float:
    b = frame.total_bounds
    return float((b[1] + b[3]) / 2) if np.all(np.isfinite(b)) else 0.0


def access_layer(result, column: str = "time_min", *, cmap: str = "viridis_r", vmax: float | None = None,
                 name: str | None = None, opacity: float = 0.7):
    """An ``ipyleaflet.GeoJSON`` layer colouring origins by ``column`` (for a leafmap Map).

    Colours follow ``cmap`` from 0 to ``vmax`` (default: the largest value); unreachable
    origins are grey. Buildings are drawn by their ``footprint``. Each feature's properties hold
    ``column``, ``entity`` and its name/query when present (shown by leafmap's popups). Text
    properties and the layer's name are HTML-escaped: leafmap's popups and Leaflet's layer control
    insert them as HTML, and OSM names are anyone's text.
    """
    from matplotlib.colors import to_hex

    ipyleaflet = require("ipyleaflet", purpose=_MAP_PURPOSE)
    frame = _lonlat_frame(result, column)
    values = frame[column].astype(float).to_numpy()
    norm, colormap = _colour_scale(values, cmap, vmax)
    keep = [c for c in (column, "entity", "entity_name", "entity_query", "name") if c in frame.columns]
    features = []
    for geom, value, props in zip(frame.geometry, values, frame[keep].itertuples(index=False)):
        if geom is None or geom.is_empty:
            continue
        colour = to_hex(colormap(norm(value))) if np.isfinite(value) else _UNREACHABLE
        properties = {k: _jsonable(v) for k, v in zip(keep, props)}
        properties = {k: html.escape(v) if isinstance(v, str) else v for k, v in properties.items()}
        properties["colour"] = colour
        features.append({"type": "Feature", "geometry": geom.__geo_interface__, "properties": properties})
    data = {"type": "FeatureCollection", "features": features}

    def style(feature):
        c = feature["properties"]["colour"]
        return {"color": c, "fillColor": c, "fillOpacity": opacity, "weight": 1}

    return ipyleaflet.GeoJSON(
        data=data, style_callback=style, point_style={"radius": 4}, hover_style={"weight": 3},
        name=html.escape(str(name or _UNITS.get(column, column))),
    )


def access_legend(result, column: str = "time_min", *, cmap: str = "viridis_r", vmax: float | None = None,
                  title: str | None = None, steps: int = 6, position: str = "bottomright"):
    """An ``ipyleaflet.LegendControl`` for :func:`access_layer`'s colours: ``steps`` values from 0
    to ``vmax`` (default: the largest value) in ``column``'s units, and grey for unreachable
    origins when there are any. Use the same ``cmap`` and ``vmax`` as the layer.
    """
    from matplotlib.colors import to_hex
    from matplotlib.ticker import MaxNLocator

    ipyleaflet = require("ipyleaflet", purpose=_MAP_PURPOSE)
    values = _lonlat_frame(result, column)[column].astype(float).to_numpy()
    norm, colormap = _colour_scale(values, cmap, vmax)
    top = float(norm.vmax)
    ticks = [float(t) for t in MaxNLocator(nbins=max(1, steps - 1)).tick_values(0.0, top) if 0.0 <= t <= top]
    if ticks[-1] < top:  # the scale's end is always shown; a round tick too close to it gives way
        if len(ticks) > 1 and top - ticks[-1] < 0.5 * (ticks[1] - ticks[0]):
            ticks.pop()
        ticks.append(top)
    unit = _SHORT_UNITS.get(column, "")
    labels = [f"{t:.3g}{unit}" for t in ticks]
    if np.nanmax(values, initial=-np.inf) > top:  # colours stop at vmax: larger values share its colour
        labels[-1] = f"≥ {labels[-1]}"
    legend = {label: to_hex(colormap(norm(t))) for label, t in zip(labels, ticks)}
    if np.isnan(values).any():
        legend["unreachable"] = _UNREACHABLE
    # the control writes its title into the page as HTML
    return ipyleaflet.LegendControl(legend, title=html.escape(title or _UNITS.get(column, column)),
                                    position=position)


def access_map(result, column: str = "time_min", *, entities=None, basemap=None, offline: bool | None = None,
               cmap: str = "viridis_r", vmax: float | None = None, name: str | None = None, zoom: int | None = None):
    """An interactive leafmap Map of ``result``: :func:`access_layer`, its :func:`access_legend`,
    and ``entities`` (any CRS) outlined on top, centred on the origins.

    ``basemap`` is an xyzservices name, provider or ``{z}/{x}/{y}`` URL template (default:
    :data:`sociogeo.defaults.MAP`, OpenStreetMap). ``offline`` (default
    ``sociogeo.options.offline``) keeps the map off the internet: the basemap must then be served
    from this machine (e.g. ``offline_world().map``, the loopback server of
    :mod:`sociogeo.testing.helsinki`), and without one the map has no base tiles at all.
    """
    import shapely

    from ... import defaults
    from ...options import options

    ipyleaflet = require("ipyleaflet", purpose=_MAP_PURPOSE)
    leafmap = require("leafmap.leafmap", purpose=_MAP_PURPOSE)
    offline = options.offline_requested() if offline is None else bool(offline)
    base = _basemap_layer(ipyleaflet, basemap if basemap is not None or offline else defaults.MAP, offline)
    frame = _lonlat_frame(result, column)
    west, south, east, north = frame.total_bounds
    centre = [float(south + north) / 2, float(west + east) / 2]
    if zoom is None:  # the origins span about 700 pixels
        span = max(east - west, (north - south) / max(math.cos(math.radians(centre[0])), 0.01), 1e-9)
        zoom = int(max(1, min(18, math.floor(math.log2(700 * 360 / (256 * span))))))
    start = base if base is not None else placeholder_base(ipyleaflet)
    base_name = start.name
    with warnings.catch_warnings():
        # leafmap hands its own options on to ipyleaflet, which traitlets flags on every Map
        warnings.filterwarnings("ignore", "Passing unrecognized arguments", DeprecationWarning)
        m = leafmap.Map(center=centre, zoom=zoom, basemap=start, draw_control=False, toolbar_control=False,
                        search_control=not offline, layers_control=True)
    start.name = base_name  # leafmap renames layer 0
    if base is None:  # no local tiles: no base layer at all rather than a remote one
        for layer in [la for la in m.layers if isinstance(la, ipyleaflet.TileLayer)]:
            m.remove(layer)
    layer_name = name or _UNITS.get(column, column)
    m.add(access_layer(result, column, cmap=cmap, vmax=vmax, name=layer_name))
    m.add(access_legend(result, column, cmap=cmap, vmax=vmax, title=layer_name))
    if entities is not None:
        entities = check_frame(entities, "entities").to_crs("EPSG:4326")
        shapes = [shapely.geometry.mapping(g) for g in entities.geometry if g is not None and not g.is_empty]
        data = {"type": "FeatureCollection",
                "features": [{"type": "Feature", "properties": {}, "geometry": g} for g in shapes]}
        m.add(ipyleaflet.GeoJSON(data=data, name="entities",
                                 style={"color": _ENTITY_COLOUR, "weight": 2, "fill": False}))
    return m


_MAP_PURPOSE = "interactive accessibility maps"
_ENTITY_COLOUR = "#c62828"
_SHORT_UNITS = {"time_min": " min", "distance_m": " m", "snap_m": " m"}
_UNREACHABLE = "#bbbbbb"


def _lonlat_frame(result, column: str):
    """``result`` checked, drawn by its footprints when it has them, in EPSG:4326."""
    import geopandas as gpd

    result = check_frame(result, "result")
    if column not in result.columns:
        raise ConfigError(f"result has no column {column!r}; pass the output of nearest() or set column=")
    frame = result
    if "footprint" in result.columns and isinstance(result["footprint"], gpd.GeoSeries):
        frame = result.set_geometry("footprint")
    return frame.to_crs("EPSG:4326")


def _colour_scale(values, cmap: str, vmax):
    """The Normalize (0 to ``vmax``, default the largest finite value) and colormap of a layer."""
    import matplotlib
    from matplotlib.colors import Normalize

    top = vmax if vmax is not None else (float(np.nanmax(values)) if np.isfinite(values).any() else 1.0)
    return Normalize(vmin=0.0, vmax=top if top > 0 else 1.0), matplotlib.colormaps[cmap]


def _basemap_layer(ipyleaflet, spec, offline: bool):
    """A base TileLayer for ``spec``; offline, only one served from this machine (None without one)."""
    from ...imagery.providers import resolve_provider

    if spec is None:
        return None
    provider = resolve_provider(spec)
    if offline and not provider.served_here:
        raise ConfigError(
            f"offline, the basemap must come from this machine, but {provider.name!r} is served by {provider.host}; "
            "pass basemap= a local tile server's URL template (e.g. offline_world().map), or basemap=None "
            "for a map without base tiles"
        )
    return tile_layer(ipyleaflet, provider, name=provider.name)


def _jsonable(value):
    """A value GeoJSON can carry: NaN/NA become None, numpy scalars plain Python."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, (str, int, float, bool)) else str(value)


__all__ = ["access_layer", "access_legend", "access_map", "plot_access", "plot_isochrones"]
