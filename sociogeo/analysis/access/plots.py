"""Maps of accessibility results: a static choropleth and an interactive leafmap layer."""

from __future__ import annotations

import math

import numpy as np

from ..._optional import require
from ...errors import ConfigError
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
    import html

    import geopandas as gpd
    import matplotlib
    from matplotlib.colors import Normalize, to_hex

    ipyleaflet = require("ipyleaflet", purpose="interactive accessibility maps")
    result = check_frame(result, "result")
    if column not in result.columns:
        raise ConfigError(f"result has no column {column!r}; pass the output of nearest() or set column=")
    frame = result
    if "footprint" in result.columns and isinstance(result["footprint"], gpd.GeoSeries):
        frame = result.set_geometry("footprint")
    frame = frame.to_crs("EPSG:4326")
    values = frame[column].astype(float).to_numpy()
    top = vmax if vmax is not None else (float(np.nanmax(values)) if np.isfinite(values).any() else 1.0)
    norm = Normalize(vmin=0.0, vmax=top if top > 0 else 1.0)
    colormap = matplotlib.colormaps[cmap]
    keep = [c for c in (column, "entity", "entity_name", "entity_query", "name") if c in frame.columns]
    features = []
    for geom, value, props in zip(frame.geometry, values, frame[keep].itertuples(index=False)):
        if geom is None or geom.is_empty:
            continue
        colour = to_hex(colormap(norm(value))) if np.isfinite(value) else "#bbbbbb"
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


def _jsonable(value):
    """A value GeoJSON can carry: NaN/NA become None, numpy scalars plain Python."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, (str, int, float, bool)) else str(value)


__all__ = ["access_layer", "plot_access"]
