"""Accessibility at city scale: nearest, isochrones and coverage on synthetic osmnx-style street graphs,
beside scipy's bare build-plus-search time.

The graphs come from ``sociogeo.testing.streets.street_grid``: an ``n x n`` jittered lattice with 4 % of
the streets dropped, every street an edge each way (400 x 400: 160,000 nodes, ~613,000 edges; 1000 x 1000:
1,000,000 nodes, ~3.8 M edges). Origins are random points, entities random square parks, as a walk
network at 4.8 km/h.

Rows:

- ``scipy build+search``: the least one can do with scipy: read (u, v, length) off the networkx graph,
  map node ids to positions, keep the shortest of parallel edges, build a CSR matrix and run
  ``scipy.sparse.csgraph.dijkstra(min_only=True)`` from the same access nodes ``nearest`` uses.
  ``networkx to_scipy + search`` is the same with ``networkx.to_scipy_sparse_array`` as the build.
- ``nearest``/``isochrones``, ``cold``: the first call on the graph (``access.clear_cache()`` first), so
  it includes preparing the graph (and, for isochrones, its Voronoi cells); ``warm``: a later call.
- ``coverage``: the share of origins within each threshold, overall and per 1 km hexagon.
- with ``--legacy``: the pure-Python preparation + heapq search and the old isochrone geometry
  (``tests/analysis/_legacy_access.py``), for comparison.

Times are the best of ``--repeat`` runs (cold rows: each run starts from an empty cache). The machine may
be shared: the load average is printed before and after.

Usage: ``python benchmarks/bench_access.py [--sides 400 1000] [--legacy]``
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def best_of(repeat: int, run, setup=None) -> tuple[float, object]:
    """Best wall time of ``run()`` over ``repeat`` runs (``setup()`` untimed before each); its last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        if setup is not None:
            setup()
        gc.collect()
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


# -- baselines ---------------------------------------------------------------------------------
def scipy_build_search(graph, starts: np.ndarray) -> np.ndarray:
    """CSR from the graph with numpy (shortest of parallel edges), then one multi-source Dijkstra."""
    import pandas as pd
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import dijkstra

    index = pd.Index(np.fromiter(graph.nodes, dtype=np.int64, count=graph.number_of_nodes()))
    tails, heads, lengths = [], [], []
    for u, v, length in graph.edges(data="length"):
        tails.append(u)
        heads.append(v)
        lengths.append(length)
    u = index.get_indexer(np.array(tails))
    v = index.get_indexer(np.array(heads))
    w = np.array(lengths, dtype=float)
    n = len(index)
    rows, cols, w = np.r_[u, v], np.r_[v, u], np.r_[w, w]  # walking: every street both ways
    order = np.lexsort((w, rows.astype(np.int64) * n + cols))
    key = rows[order].astype(np.int64) * n + cols[order]
    first = order[np.r_[True, key[1:] != key[:-1]]]
    matrix = csr_array((w[first], (rows[first], cols[first])), shape=(n, n))
    return dijkstra(matrix, indices=starts, min_only=True)


def networkx_build_search(graph, starts: np.ndarray) -> np.ndarray:
    """networkx's own converter as the build (it sums parallel edges; the bench graphs have none)."""
    import networkx as nx
    from scipy.sparse.csgraph import dijkstra

    matrix = nx.to_scipy_sparse_array(graph, weight="length", format="csr")
    return dijkstra(matrix, directed=False, indices=starts, min_only=True)


# -- one graph size ----------------------------------------------------------------------------
def measure(side: int, args) -> list[tuple[str, float, str]]:
    from sociogeo import access
    from sociogeo.analysis.access import prepared, search
    from sociogeo.testing.streets import random_origins, random_parks, street_grid

    start = time.perf_counter()
    graph = street_grid(side, seed=side)
    origins = random_origins(args.origins, n_side=side)
    parks = random_parks(args.entities, n_side=side)
    built_s = time.perf_counter() - start
    n_nodes, n_edges = graph.number_of_nodes(), graph.number_of_edges()
    print(f"\n{side} x {side}: {n_nodes:,} nodes, {n_edges:,} edges (generated in {built_s:.0f} s)", flush=True)
    rows: list[tuple[str, float, str]] = []

    def row(label: str, seconds: float, note: str = "", unit: str = "s") -> None:
        rows.append((label, seconds, note))
        print(f"  {label:<42} {seconds:8.3f} {unit}  {note}", flush=True)

    net = prepared.prepare(graph, "walk", None)
    _, metric, ok = search.entity_frame(parks, net)
    sources, _ = search.access_nodes(metric, ok, net, 25.0, access.DEFAULT_MAX_SNAP_M)
    starts = np.fromiter(sources, dtype=np.int64, count=len(sources))
    reference, _, _ = search.search(net, sources)
    access.clear_cache()
    del net

    seconds, metres = best_of(args.repeat, lambda: scipy_build_search(graph, starts))
    # the baseline searches metres, sociogeo minutes at 80 m/min: the same routes
    np.testing.assert_allclose(metres / 80.0, reference, rtol=1e-12)
    row("scipy build+search (numpy CSR)", seconds, f"{len(starts):,} access nodes")
    if args.networkx:
        seconds, _ = best_of(args.repeat, lambda: networkx_build_search(graph, starts))
        row("networkx to_scipy + search", seconds)

    clear = access.clear_cache
    minutes_list = tuple(args.minutes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # origins in unconnected corners of the lattice
        seconds, result = best_of(args.repeat, lambda: access.nearest(origins, parks, graph), clear)
        row("nearest, cold", seconds, f"{len(origins):,} origins, {len(parks)} parks")
        seconds, _ = best_of(args.repeat, lambda: prepared.prepare(graph, "walk", None), clear)
        row("  of which: prepare the graph", seconds)
        net = prepared.prepare(graph, "walk", None)
        seconds, (minutes, _, _) = best_of(args.repeat, lambda: search.search(net, sources))
        assert np.array_equal(minutes, reference)
        row("  of which: search (minutes, metres, labels)", seconds)
        seconds, _ = best_of(args.repeat, lambda: access.nearest(origins, parks, graph))
        row("nearest, warm", seconds)
        seconds, _ = best_of(args.repeat, lambda: access.isochrones(parks, graph, minutes_list), clear)
        row("isochrones, cold", seconds, f"minutes {minutes_list}")
        seconds, _ = best_of(args.repeat, lambda: access.isochrones(parks, graph, minutes_list))
        row("isochrones, warm", seconds)
        seconds, _ = best_of(args.repeat, lambda: access.coverage(result, minutes_list))
        row("coverage, overall", seconds)
        hexes = access.hex_grid(origins, 1000.0)
        seconds, _ = best_of(args.repeat, lambda: access.coverage(result, minutes_list, zones=hexes))
        row("coverage, per 1 km hexagon", seconds, f"{len(hexes):,} hexagons")
    if args.legacy:
        legacy_rows(graph, sources, minutes_list, row)
    try:
        import psutil

        row("(resident memory now, GB)", psutil.Process().memory_info().rss / 2**30, unit="GB")
    except ImportError:
        pass
    return [(f"{n_nodes:,} nodes", *r) for r in rows]


def legacy_rows(graph, sources, minutes, row) -> None:
    """The old pure-Python preparation, heapq search and isochrone geometry, timed once each."""
    sys.path.insert(0, str(ROOT / "tests" / "analysis"))
    import _legacy_access as legacy

    start = time.perf_counter()
    _, xy, _, adjacency, _ = legacy.prepare(graph, "walk", None)
    row("legacy: pure-Python prepare", time.perf_counter() - start)
    start = time.perf_counter()
    times, _, _ = legacy.dijkstra(adjacency, sources)
    row("legacy: heapq search", time.perf_counter() - start)
    start = time.perf_counter()
    legacy.isochrone_polygons(xy, np.where(times <= max(minutes), times, np.inf), minutes)
    row("legacy: isochrone geometry (union_all)", time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[400, 1000], help="lattice sides (nodes = side²)")
    parser.add_argument("--origins", type=int, default=50_000)
    parser.add_argument("--entities", type=int, default=200)
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 10, 15])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--legacy", action="store_true", help="also time the old pure-Python implementation")
    parser.add_argument("--networkx", action="store_true", help="also time networkx.to_scipy_sparse_array + search")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))

    import sociogeo

    sociogeo.options.progress = False
    load_before = os.getloadavg()
    table = []
    for side in args.sides:
        table += measure(side, args)
        gc.collect()
    load_after = os.getloadavg()

    print(f"\nWalk network, best of {args.repeat} (cold rows: empty cache before each run); "
          f"{os.cpu_count()} CPUs, load average {load_before[0]:.1f} before, {load_after[0]:.1f} after\n")
    header = f"{'graph':<18} {'measurement':<44} {'seconds':>8} {'x scipy':>8}  note"
    print(header)
    print("-" * len(header))
    baseline = {}
    for graph, label, seconds, note in table:
        if label.startswith("scipy build+search"):
            baseline[graph] = seconds
        ratio = seconds / baseline[graph] if graph in baseline and not label.startswith("(") else float("nan")
        value = f"{seconds:8.2f}" if label.startswith("(") else f"{seconds:8.3f}"
        ratio_text = "" if np.isnan(ratio) else f"{ratio:8.2f}"
        print(f"{graph:<18} {label:<44} {value} {ratio_text:>8}  {note}")


if __name__ == "__main__":
    main()
