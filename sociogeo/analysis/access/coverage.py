"""Coverage tables: the share of origins within each travel time, overall or per zone."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import ConfigError
from .isochrones import check_thresholds
from .network import check_frame


# -- coverage ---------------------------------------------------------------------------------
def _label(t: float, unit: str = "min") -> str:
    return f"within_{t:g}_{unit}"


def coverage(result, thresholds: Sequence[float] = (5, 10, 15), *, by: str | None = None, zones=None,
             column: str = "time_min"):
    """Share of origins within each threshold (minutes), overall or per group, as a table.

    ``result`` is a :func:`nearest` result. Without ``by`` or ``zones``: one row ``"all"``.
    ``by``: a column of ``result`` to group by. ``zones``: polygons (any CRS); each origin
    belongs to the first zone containing its point (polygon origins: their representative
    point), and ``by`` then names a column of ``zones`` used as the row label (default: the
    zones' index). Zones without origins appear with 0 origins and NaN shares.

    Columns: ``origins`` (count), ``unreachable`` (count of NaN ``column``),
    ``median_min`` (median over reachable origins), and per threshold ``t``:
    ``within_t_min`` (share of all origins in the row, 0..1; unreachable origins count as not
    within) and ``n_within_t_min`` (count). With ``column="distance_m"`` the thresholds are
    metres and the names end in ``_m`` instead (``within_400_m``, ``median_m``).
    """
    import pandas as pd

    thresholds = check_thresholds(thresholds, "thresholds")
    result = check_frame(result, "result")
    if column not in result.columns:
        raise ConfigError(f"result has no column {column!r}; pass the output of nearest() or set column=")
    values = pd.to_numeric(result[column], errors="coerce").to_numpy(dtype=float)

    if zones is not None:
        groups, labels, name = _zone_groups(result, zones, by)
    elif by is not None:
        if by not in result.columns:
            raise ConfigError(
                f"result has no column {by!r} to group by; available: {', '.join(map(str, result.columns))}"
            )
        groups, labels, name = result[by].to_numpy(), pd.unique(result[by].dropna()), by
    else:
        groups, labels, name = np.full(len(result), "all", dtype=object), ["all"], None

    unit = {"time_min": "min", "distance_m": "m"}.get(column, column)
    labels = [lab for lab in labels if not pd.isna(lab)]
    codes = pd.Categorical(groups, categories=labels).codes  # -1: in no group
    k = len(labels)
    member = codes >= 0
    missing = np.isnan(values)
    reached = member & ~missing
    origins = np.bincount(codes[member], minlength=k)
    table = pd.DataFrame(
        {
            "origins": origins,
            "unreachable": np.bincount(codes[member & missing], minlength=k),
            f"median_{unit}": pd.Series(values[reached]).groupby(codes[reached]).median().reindex(range(k)).to_numpy(),
        },
        index=pd.Index(labels, name=name),
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        for t in thresholds:
            count = np.bincount(codes[reached & (values <= t)], minlength=k)
            table[_label(t, unit)] = np.where(origins > 0, count / np.maximum(origins, 1), np.nan)
            table[f"n_{_label(t, unit)}"] = count
    shares = [_label(t, unit) for t in thresholds]
    counts = [f"n_{_label(t, unit)}" for t in thresholds]
    return table[["origins", "unreachable", f"median_{unit}", *shares, *counts]]


def _zone_groups(result, zones, by):
    """Per origin, the label of the zone holding it (None outside every zone)."""
    import shapely

    zones = check_frame(zones, "zones")
    if by is not None and by not in zones.columns:
        raise ConfigError(f"zones has no column {by!r}; available: {', '.join(map(str, zones.columns))}")
    labels = list(zones[by]) if by is not None else list(zones.index)
    metric_crs = result.to_crs("EPSG:4326").estimate_utm_crs() if len(result) else zones.estimate_utm_crs()
    geoms = result.geometry.to_crs(metric_crs).to_numpy()
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    points = np.full(len(geoms), None, dtype=object)
    points[ok] = shapely.point_on_surface(geoms[ok])
    zone_geoms = zones.geometry.to_crs(metric_crs).to_numpy()
    groups = np.full(len(geoms), None, dtype=object)
    if ok.any():
        pt_idx, zone_idx = shapely.STRtree(zone_geoms).query(points[ok], predicate="intersects")
        order = np.lexsort((zone_idx, pt_idx))  # first zone (lowest position) per origin
        pt_idx, zone_idx = pt_idx[order], zone_idx[order]
        first = np.unique(pt_idx, return_index=True)[1]
        where = np.flatnonzero(ok)[pt_idx[first]]
        groups[where] = [labels[z] for z in zone_idx[first]]
    unique_labels = list(dict.fromkeys(labels))
    return groups, unique_labels, by if by is not None else (zones.index.name or "zone")
