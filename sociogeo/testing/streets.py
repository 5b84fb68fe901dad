"""Synthetic osmnx-style street networks, origins and entities for accessibility tests and benchmarks.

:func:`street_grid` builds a jittered square lattice around a point in Helsinki as an osmnx-like
``networkx.MultiDiGraph`` (``crs`` EPSG:4326, node ``x``/``y`` in degrees, edge ``length`` in
metres, ``highway``/``maxspeed``/``oneway``/``tunnel`` tags), at any size: a 400 x 400 lattice has
160,000 nodes and, with 4 % of the streets dropped, about 613,000 edges, like a large city's walk
network. Nothing here is real data.
"""

from __future__ import annotations

import math

import numpy as np

#: (lon, lat) of the lattice's south-west corner
ORIGIN_LONLAT = (24.80, 60.10)
_M_PER_DEG_LAT = 110_574.0
_HIGHWAYS = np.array(["residential", "tertiary", "secondary", "primary", "service", "living_street"])
_MAXSPEEDS = np.array(["30", "40", "50", "20 mph", "FI:urban", "60"])


def _to_lonlat(x_m, y_m):
    lon0, lat0 = ORIGIN_LONLAT
    m_per_deg_lon = 111_320.0 * math.cos(math.radians(lat0))
    return lon0 + np.asarray(x_m) / m_per_deg_lon, lat0 + np.asarray(y_m) / _M_PER_DEG_LAT


def street_grid(
    n_side: int,
    *,
    spacing_m: float = 100.0,
    jitter: float = 0.3,
    drop: float = 0.04,
    one_way: float = 0.0,
    parallel: float = 0.0,
    round_m: float | None = None,
    seed: int = 0,
):
    """A jittered ``n_side`` x ``n_side`` street lattice as an osmnx-style ``networkx.MultiDiGraph``.

    Nodes (ids 0..n_side**2 - 1, row by row) sit ``spacing_m`` metres apart, each moved by up to
    ``jitter * spacing_m``. Every street joins two lattice neighbours; a fraction ``drop`` of them
    is left out, ``one_way`` of the rest run one way only (drive graphs), and ``parallel`` of them
    get a second, longer or slower parallel edge. Lengths are the straight-line metres (rounded to
    ``round_m`` when given, which makes many routes tie). Edges carry ``highway``, ``maxspeed``
    (some unusable, like ``"FI:urban"``), ``oneway`` and, on about 1 %, ``tunnel="yes"``.
    """
    import networkx as nx

    rng = np.random.default_rng(seed)
    n = n_side * n_side
    col, row = np.meshgrid(np.arange(n_side), np.arange(n_side))
    x_m = col.ravel() * spacing_m + rng.uniform(-jitter, jitter, n) * spacing_m
    y_m = row.ravel() * spacing_m + rng.uniform(-jitter, jitter, n) * spacing_m
    ids = np.arange(n).reshape(n_side, n_side)
    u = np.concatenate([ids[:, :-1].ravel(), ids[:-1, :].ravel()])
    v = np.concatenate([ids[:, 1:].ravel(), ids[1:, :].ravel()])
    keep = rng.random(len(u)) >= drop
    u, v = u[keep], v[keep]
    length = np.hypot(x_m[u] - x_m[v], y_m[u] - y_m[v])
    if round_m:
        length = np.round(length / round_m) * round_m
    kind = rng.integers(0, len(_HIGHWAYS), len(u))
    speed = rng.integers(0, len(_MAXSPEEDS) + 2, len(u))  # the last two: no maxspeed tag
    tunnel = rng.random(len(u)) < 0.01
    oneway = rng.random(len(u)) < one_way
    flip = rng.random(len(u)) < 0.5  # which way a one-way street runs
    extra = rng.random(len(u)) < parallel

    lon, lat = _to_lonlat(x_m, y_m)
    graph = nx.MultiDiGraph(crs="EPSG:4326")
    graph.add_nodes_from((int(i), {"x": float(a), "y": float(b)}) for i, a, b in zip(range(n), lon, lat))

    def attributes(i: int, is_oneway: bool, reverse: bool) -> dict:
        data = {"osmid": i, "highway": str(_HIGHWAYS[kind[i]]), "oneway": is_oneway, "reversed": reverse,
                "length": float(length[i])}
        if speed[i] < len(_MAXSPEEDS):
            data["maxspeed"] = str(_MAXSPEEDS[speed[i]])
        if tunnel[i]:
            data["tunnel"] = "yes"
        return data

    edges = []
    for i, (a, b) in enumerate(zip(u.tolist(), v.tolist())):
        if flip[i] and oneway[i]:
            a, b = b, a
        edges.append((a, b, attributes(i, bool(oneway[i]), False)))
        if not oneway[i]:
            edges.append((b, a, attributes(i, False, True)))
        if extra[i]:
            second = attributes(i, True, False)
            second["length"] = float(length[i]) * (1.0 + rng.integers(0, 2))  # equal or longer
            second["highway"] = "service"
            second.pop("maxspeed", None)
            edges.append((a, b, second))
    graph.add_edges_from(edges)
    return graph


def random_origins(n: int, *, n_side: int, spacing_m: float = 100.0, seed: int = 1):
    """``n`` random points over the lattice of :func:`street_grid` as a GeoDataFrame (EPSG:4326)."""
    import geopandas as gpd

    rng = np.random.default_rng(seed)
    size = (n_side - 1) * spacing_m
    lon, lat = _to_lonlat(rng.uniform(0, size, n), rng.uniform(0, size, n))
    return gpd.GeoDataFrame({"origin": np.arange(n)}, geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")


def random_parks(n: int, *, n_side: int, spacing_m: float = 100.0, seed: int = 2):
    """``n`` square "parks" of 40-250 m sides over the lattice, as a GeoDataFrame (EPSG:4326) with a ``name``."""
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng(seed)
    size = (n_side - 1) * spacing_m
    side = rng.uniform(40.0, 250.0, n)
    x0 = rng.uniform(0, size - side)
    y0 = rng.uniform(0, size - side)
    corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    xs = x0[:, None] + corners[None, :, 0] * side[:, None]
    ys = y0[:, None] + corners[None, :, 1] * side[:, None]
    lon, lat = _to_lonlat(xs, ys)
    polygons = shapely.polygons(np.stack([lon, lat], axis=-1))
    return gpd.GeoDataFrame({"name": [f"park {i}" for i in range(n)]}, geometry=polygons, crs="EPSG:4326")
