"""The map explorer, driven like a user would but without a browser.

Imagery and base maps come from the loopback tile server (tests/conftest.py); the model is the
scripted VLM + box segmenter inside the real SocioReasoner, answering a known box per query, so
where the polygons land and what their popups say can be checked exactly. Draw events and
polygon clicks go through ipyleaflet's own message handlers, buttons through ``Button.click()``.
"""

from __future__ import annotations

import base64
import io
import subprocess
import sys

import numpy as np
import pytest

from sociogeo.errors import ConfigError, InvalidAreaError, OfflineError
from sociogeo.geo.area import Area
from sociogeo.geo.grid import mercator_to_lonlat
from sociogeo.pipeline.run import RESULT_COLUMNS
from sociogeo.reasoner import SocioReasoner
from sociogeo.testing.scripted import BoxSegmenter, ScriptedVLM

ipyleaflet = pytest.importorskip("ipyleaflet")
widgets = pytest.importorskip("ipywidgets")
pytest.importorskip("leafmap")

from sociogeo.analysis.explorer import Explorer, popup_html  # noqa: E402

# About 1.2 x 0.55 km of downtown San Francisco: 304 x 148 px at zoom 15, two 256-px chips.
BBOX = (-122.4105, 37.7825, -122.3975, 37.7875)
ZOOM = 15
CHIP = 256
MODEL = 252  # smart_resize of a 256-px chip
# the box the scripted model answers for each query, in model pixels
BOXES = {"park": [20, 20, 100, 100], "school": [130, 120, 220, 200]}
THINK = {"park": "green <b>patch</b> & trees", "school": "a yard with a running track"}


def scripted_reasoner(fail: Exception | None = None) -> SocioReasoner:
    """The real SocioReasoner around a VLM that 'sees' BOXES[query] in every chip."""

    def respond(req):
        if fail is not None:
            raise fail
        query = next(q for q in BOXES if q in req.text)
        box = BOXES[query]
        if "Please find" in req.text:  # stage 1
            return f'<think>{THINK[query]}</think><answer>[{{"bbox_2d": {box}}}]</answer>'
        centre = [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]
        return f'<think>checked</think><answer>[{{"bbox_2d": {box}, "points": [{centre}]}}]</answer>'

    return SocioReasoner(ScriptedVLM(respond), BoxSegmenter())


def rectangle(west, south, east, north) -> dict:
    """A rectangle as Leaflet.draw sends it: a Feature with a closed ring and a style."""
    ring = [[west, south], [west, north], [east, north], [east, south], [west, south]]
    return {"type": "Feature", "properties": {"style": {"color": "#3388ff"}},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


def draw(ex: Explorer, feature: dict, action: str = "created") -> None:
    """Deliver a draw event the way the browser does: a message to the DrawControl."""
    ex.map.draw_control._handle_leaflet_event(None, {"event": f"draw:{action}", "geo_json": feature}, None)


def find(widget, cls, **traits):
    """Every widget of type ``cls`` under ``widget`` (children, accordion pages) with these traits."""
    found = []
    if isinstance(widget, cls) and all(getattr(widget, k) == v for k, v in traits.items()):
        found.append(widget)
    for child in getattr(widget, "children", ()):
        found += find(child, cls, **traits)
    return found


def layers(ex: Explorer, cls):
    return [layer for layer in ex.map.layers if isinstance(layer, cls)]


@pytest.fixture
def make_explorer(tile_server, tile_cache_dir):
    def make(reasoner="scripted", **kwargs):
        options = {"satellite": tile_server.url_template("sat"), "map": tile_server.url_template("map"),
                   "imagery_zoom": ZOOM, "cache_dir": tile_cache_dir, "chip_size": CHIP, "min_area_m2": 0}
        options.update(kwargs)
        if reasoner == "scripted":
            reasoner = scripted_reasoner()
        return Explorer(reasoner, **options)

    return make


@pytest.fixture
def ex(make_explorer):
    explorer = make_explorer()
    draw(explorer, rectangle(*BBOX))
    return explorer


def _click(layer, feature):
    """A click on a polygon, as ipyleaflet's JS sends it (feature, properties, [lat, lng])."""
    from shapely.geometry import shape

    p = shape(feature["geometry"]).representative_point()
    layer._handle_mouse_events(None, {"event": "click", "feature": feature, "properties": feature["properties"],
                                      "id": None, "coordinates": [p.y, p.x]}, None)


# -- import hygiene --------------------------------------------------------------------------------
def test_importing_explorer_loads_no_model_or_map_code():
    code = ("import sys, sociogeo.analysis.explorer\n"
            "print(' '.join(m for m in ('torch', 'transformers', 'leafmap', 'ipyleaflet') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []
    # and the model side never pulls the explorer in (one-way dependency)
    code = "import sys, sociogeo.pipeline.run, sociogeo.reasoner\nprint('sociogeo.analysis.explorer' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the UI ----------------------------------------------------------------------------------------
def test_widget_holds_basemaps_draw_tools_and_controls(make_explorer, tile_server):
    ex = make_explorer(basemaps={"Extra": tile_server.url_template("map")})
    tiles = layers(ex, ipyleaflet.TileLayer)
    urls = [t.url for t in tiles]
    assert urls == [tile_server.url_template("sat"), tile_server.url_template("map"), tile_server.url_template("map")]
    assert all(t.base for t in tiles)  # switchable in the layers control
    assert tiles[0].name.startswith("Satellite") and tiles[1].name.startswith("Street map") and tiles[2].name == "Extra"
    assert any(isinstance(c, ipyleaflet.LayersControl) for c in ex.map.controls)
    dc = ex.map.draw_control
    assert dc.rectangle and dc.polygon and not dc.polyline and not dc.circle and not dc.marker
    assert find(ex.widget, type(ex.map)) == [ex.map]
    (box,) = find(ex.widget, widgets.Combobox)
    assert {"Park and greenspace", "Medical", "park", "school"} <= set(box.options)
    assert len(find(ex.widget, widgets.Button, description="Run")) == 1
    assert len(find(ex.widget, widgets.IntProgress)) == 1
    assert "draw" in ex.status.lower()


def test_unknown_options_fail_at_construction(make_explorer):
    with pytest.raises(ConfigError, match="chip_sise"):
        make_explorer(chip_sise=512)
    with pytest.raises(ConfigError, match="imagery_zoom"):
        make_explorer(imagery_zoom=40)
    with pytest.raises(ConfigError, match="either"):
        make_explorer(vlm="some/model")


# -- the area --------------------------------------------------------------------------------------
def test_drawing_a_rectangle_sets_the_area(ex):
    assert isinstance(ex.area, Area)
    assert ex.area.bounds == pytest.approx(BBOX, abs=1e-9)
    assert ex.area.zoom == ZOOM
    assert ex.map.user_roi is not None  # leafmap's own handler saw the same event
    assert "2 chip(s)" in ex.status and f"zoom {ZOOM}" in ex.status


def test_invalid_drawings_show_a_message_and_leave_no_area(ex):
    point = {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [-122.4, 37.78]}}
    draw(ex, point)
    assert ex.area is None
    assert "rectangle or polygon" in ex.status and "Point" in ex.status

    draw(ex, rectangle(*BBOX))
    assert ex.area is not None
    draw(ex, rectangle(-123.5, 37.0, -121.5, 38.5))  # tens of thousands of km²
    assert ex.area is None
    assert "km²" in ex.status and "limit" in ex.status


def test_deleting_the_drawn_area_clears_it(ex):
    other = rectangle(-122.42, 37.77, -122.41, 37.775)
    draw(ex, other, "deleted")  # not the active area: nothing changes
    assert ex.area is not None
    draw(ex, rectangle(*BBOX), "deleted")
    assert ex.area is None and "deleted" in ex.status


def test_area_setter_outlines_validates_and_fits(make_explorer):
    ex = make_explorer()
    ex.area = BBOX
    assert ex.area.zoom == ZOOM and ex.area.bounds == pytest.approx(BBOX)
    (outline,) = [layer for layer in layers(ex, ipyleaflet.GeoJSON) if layer.name == "Area"]
    from shapely.geometry import shape

    assert shape(outline.data["geometry"]).equals(ex.area.geometry)
    # the view moved to the area, zoomed so that it fits on screen
    assert ex.map.center == pytest.approx([(BBOX[1] + BBOX[3]) / 2, (BBOX[0] + BBOX[2]) / 2])
    grid = Area.from_bbox(BBOX, zoom=int(ex.map.zoom)).grid
    assert max(grid.width, grid.height) <= 500 and max(grid.width, grid.height) > 250
    # a ready Area keeps its own zoom
    ex.area = Area.from_bbox(BBOX, zoom=16)
    assert ex.area.zoom == 16 and len([la for la in layers(ex, ipyleaflet.GeoJSON) if la.name == "Area"]) == 1
    with pytest.raises(InvalidAreaError, match="west"):
        ex.area = (BBOX[2], BBOX[1], BBOX[0], BBOX[3])
    assert "west" in ex.status
    ex.area = None
    assert ex.area is None and not [la for la in layers(ex, ipyleaflet.GeoJSON) if la.name == "Area"]


# -- running ---------------------------------------------------------------------------------------
def _expected_chip_box(grid, box):
    """(west, south, east, north) of a model-pixel box of chip r0_c0, through the chip's scale."""
    scale = CHIP / MODEL
    c0, r0, c1, r1 = (v * scale for v in box)
    x0, y0 = grid.xy(c0, r0)
    x1, y1 = grid.xy(c1, r1)
    (w, e), (n, s) = mercator_to_lonlat([x0, x1], [y0, y1])
    return float(w), float(s), float(e), float(n)


def test_run_draws_polygons_with_popups(ex):
    out = ex.run("park")
    assert list(out.columns) == RESULT_COLUMNS and out.crs == "EPSG:4326"
    assert set(out["chip_id"]) == {"r0_c0", "r0_c1"} and (out["query"] == "park").all()
    # the polygon of chip r0_c0 lies where the model's box maps to on the area's grid
    grid = Area.from_bbox(BBOX, zoom=ZOOM).grid
    px_deg = (grid.lonlat_bounds[2] - grid.lonlat_bounds[0]) / grid.width
    first = out[out["chip_id"] == "r0_c0"].geometry.iloc[0]
    assert np.allclose(first.bounds, _expected_chip_box(grid, BOXES["park"]), atol=2 * px_deg)
    assert out.attrs["zoom"] == ZOOM and out.attrs["vlm"] == "scripted-vlm"
    assert len(ex.results) == len(out)

    (layer,) = [la for la in layers(ex, ipyleaflet.GeoJSON) if la.name.startswith("park")]
    assert layer.name == f"park ({len(out)})"
    assert len(layer.data["features"]) == len(out)
    _click(layer, layer.data["features"][0])
    (popup,) = layers(ex, ipyleaflet.Popup)
    text = popup.child.value
    assert "green &lt;b&gt;patch&lt;/b&gt; &amp; trees" in text and "<b>patch</b>" not in text
    assert "<b>park</b>" in text and "m²" in text
    lat, lon = popup.location
    assert BBOX[0] <= lon <= BBOX[2] and BBOX[1] <= lat <= BBOX[3]

    progress = find(ex.widget, widgets.IntProgress)[0]
    assert progress.value == progress.max == 2  # one step per chip
    assert f"Found {len(out)}" in ex.status

    # stage-1 boxes: one dashed rectangle per box the model proposed, at the right place
    (boxes,) = [la for la in layers(ex, ipyleaflet.GeoJSON) if la.name == "Stage-1 boxes"]
    feats = boxes.data["features"]
    assert {f["properties"]["chip_id"] for f in feats} == {"r0_c0", "r0_c1"}
    from shapely.geometry import shape

    r0 = [shape(f["geometry"]) for f in feats if f["properties"]["chip_id"] == "r0_c0"][0]
    assert np.allclose(r0.bounds, _expected_chip_box(grid, BOXES["park"]), atol=2 * px_deg)
    # boxes never reach into an edge chip's padding: all lie within the area's grid
    w, s, e, n = grid.lonlat_bounds
    for f in feats:
        bw, bs, be, bn = shape(f["geometry"]).bounds
        assert w - 1e-9 <= bw and be <= e + 1e-9 and s - 1e-9 <= bs and bn <= n + 1e-9


def test_progress_advances_chip_by_chip(make_explorer):
    ex = make_explorer(batch_size=1)
    ex.area = BBOX
    progress = find(ex.widget, widgets.IntProgress)[0]
    seen = []
    progress.observe(lambda change: seen.append((change["new"], progress.max)), names="value")
    ex.run("park")
    assert seen[-2:] == [(1, 2), (2, 2)]  # after the first chip, then the second
    assert progress.bar_style == "success"


def test_map_image_overlay_is_a_small_png_of_the_area(ex):
    from PIL import Image

    ex.run("park")
    (overlay,) = layers(ex, ipyleaflet.ImageOverlay)
    assert overlay.url.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(overlay.url.split(",", 1)[1])))
    grid = ex.area.grid
    assert image.size == (grid.width, grid.height)  # already below the 512-px cap
    west, south, east, north = grid.lonlat_bounds
    assert overlay.bounds == [[south, west], [north, east]]
    # it lies under the result layers, so polygons stay clickable
    idx = ex.map.layers.index
    assert idx(overlay) < min(idx(la) for la in layers(ex, ipyleaflet.GeoJSON))


def test_a_second_query_accumulates_and_a_rerun_replaces(ex):
    park = ex.run("park")
    school = ex.run("school")
    assert set(ex.results["query"]) == {"park", "school"}
    assert len(ex.results) == len(park) + len(school)
    assert len(ex.results_for("school")) == len(school)
    assert ex.results.attrs["queries"] == ["park", "school"]
    by_name = {la.name.split(" (")[0]: la for la in layers(ex, ipyleaflet.GeoJSON)}
    assert by_name["park"].style["color"] != by_name["school"].style["color"]
    # the school polygons are the school box, not the park box
    assert not ex.results_for("school").geometry.iloc[0].equals(ex.results_for("park").geometry.iloc[0])

    ex.run("park")  # same query, same area: replaces, does not duplicate
    assert len(ex.results) == len(park) + len(school)
    ex.area = (BBOX[0], BBOX[1], BBOX[0] + 0.004, BBOX[3])  # another area: one chip more
    ex.run("park")
    assert len(ex.results_for("park")) == len(park) + 1
    assert len(by_name["park"].data["features"]) == len(park) + 1  # the layer shows all runs


def test_a_new_area_resets_progress_map_image_and_boxes(ex):
    park = ex.run("park")
    progress = find(ex.widget, widgets.IntProgress)[0]
    assert progress.value == progress.max == 2 and progress.bar_style == "success"
    (boxes,) = [la for la in layers(ex, ipyleaflet.GeoJSON) if la.name == "Stage-1 boxes"]
    assert boxes.data["features"] and len(layers(ex, ipyleaflet.ImageOverlay)) == 1

    other = (BBOX[0], BBOX[1], BBOX[0] + 0.004, BBOX[3])  # one chip
    draw(ex, rectangle(*other))
    assert progress.value == 0 and progress.bar_style == "" and progress.description == ""
    assert layers(ex, ipyleaflet.ImageOverlay) == []  # the old area's map image is gone
    assert boxes.data["features"] == []  # and so are its boxes
    (result,) = [la for la in layers(ex, ipyleaflet.GeoJSON) if la.name.startswith("park")]
    assert len(result.data["features"]) == len(park)  # results stay: ex.results keeps every run

    ex.run("park")
    (overlay,) = layers(ex, ipyleaflet.ImageOverlay)
    west, south, east, north = ex.area.grid.lonlat_bounds
    assert overlay.bounds == [[south, west], [north, east]]
    assert progress.value == progress.max == 1
    assert {f["properties"]["chip_id"] for f in boxes.data["features"]} == {"r0_c0"}

    ex.area = BBOX  # setting the area from Python resets the same way
    assert progress.value == 0 and layers(ex, ipyleaflet.ImageOverlay) == [] and boxes.data["features"] == []


def _log_text(ex: Explorer) -> str:
    (log,) = find(ex.widget, widgets.Output)
    assert all(o["output_type"] == "stream" for o in log.outputs)  # plain text, never HTML
    return "".join(o.get("text", "") for o in log.outputs)


def test_the_log_lists_each_run_and_the_files_written(make_explorer, tmp_path):
    ex = make_explorer(out=tmp_path / "parks.gpkg", mask_out=tmp_path / "parks.tif")
    ex.area = BBOX
    out = ex.run("park")
    text = _log_text(ex)
    assert "run 'park'" in text
    west, south, east, north = ex.area.bounds
    assert f"{west:.5f}, {south:.5f}, {east:.5f}, {north:.5f}" in text and f"zoom {ZOOM}" in text
    assert "chips: 2 of 2" in text and f"result: {len(out)} polygon(s)" in text
    written = [tmp_path / "parks.gpkg", tmp_path / "parks.gpkg.json", tmp_path / "parks.tif"]
    assert all(p.is_file() and str(p) in text for p in written)

    plain = make_explorer()
    plain.area = BBOX
    plain.run("school")
    path = plain.export(tmp_path / "schools.geojson")
    text = _log_text(plain)
    assert "run 'school'" in text and "files written: none" in text
    assert f"export: {len(plain.results)} polygon(s)" in text and str(path) in text


HOSTILE = "<img src=x onerror=alert(1)>"


def test_query_and_model_text_are_escaped_wherever_html_shows_them(make_explorer, tile_server):
    def respond(req):
        box = BOXES["park"]
        if "Please find" in req.text:
            return f'<think>{HOSTILE} looks green</think><answer>[{{"bbox_2d": {box}}}]</answer>'
        return f'<think>{HOSTILE}</think><answer>[{{"bbox_2d": {box}, "points": [[60, 60]]}}]</answer>'

    ex = make_explorer(reasoner=SocioReasoner(ScriptedVLM(respond), BoxSegmenter()),
                       basemaps={f"tiles {HOSTILE}": tile_server.url_template("map")})
    ex.area = BBOX
    query = f"park {HOSTILE}"
    out = ex.run(query)
    assert len(out) and HOSTILE in out["reasoning"].iloc[0]  # the data keeps the text as it was
    names = [layer.name for layer in ex.map.layers]
    assert not [n for n in names if "<img" in n]  # Leaflet's layers control shows names as HTML
    assert f"park &lt;img src=x onerror=alert(1)&gt; ({len(out)})" in names
    assert "tiles &lt;img src=x onerror=alert(1)&gt;" in names
    (layer,) = [la for la in layers(ex, ipyleaflet.GeoJSON) if la.name.startswith("park")]
    _click(layer, layer.data["features"][0])
    (popup,) = layers(ex, ipyleaflet.Popup)
    assert "<img" not in popup.child.value and "&lt;img src=x" in popup.child.value
    status = find(ex.widget, widgets.HTML)
    assert status and not [w for w in status if "<img" in w.value]
    assert HOSTILE in ex.status  # the plain-text status keeps it, escaped only in the widget
    assert HOSTILE in _log_text(ex)  # the log is a text stream: shown as text, not parsed


def test_run_button_uses_the_query_box(ex):
    (box,) = find(ex.widget, widgets.Combobox)
    box.value = "school"
    find(ex.widget, widgets.Button, description="Run")[0].click()
    assert set(ex.results["query"]) == {"school"} and len(ex.results) > 0


def test_models_load_lazily_on_first_run(make_explorer):
    reasoner = scripted_reasoner()
    ex = make_explorer(reasoner=None, vlm=reasoner.vlm, sam=reasoner.sam)
    assert ex.reasoner is None
    ex.area = BBOX
    ex.run("park")
    assert isinstance(ex.reasoner, SocioReasoner) and ex.reasoner.vlm is reasoner.vlm
    assert len(reasoner.vlm.calls) > 0


# -- errors ----------------------------------------------------------------------------------------
def test_errors_go_to_the_status_line_and_python_callers_get_them(make_explorer):
    ex = make_explorer()
    run_button = find(ex.widget, widgets.Button, description="Run")[0]
    find(ex.widget, widgets.Combobox)[0].value = "park"
    run_button.click()  # no area: a message, no exception out of the click
    assert "no area" in ex.status
    with pytest.raises(InvalidAreaError, match="no area"):
        ex.run("park")
    ex.area = BBOX
    with pytest.raises(ConfigError, match="query"):
        ex.run("   ")
    assert not run_button.disabled


def test_unexpected_errors_show_type_and_log_the_traceback(make_explorer):
    ex = make_explorer(reasoner=scripted_reasoner(fail=RuntimeError("model exploded")))
    ex.area = BBOX
    find(ex.widget, widgets.Combobox)[0].value = "park"
    find(ex.widget, widgets.Button, description="Run")[0].click()
    assert "RuntimeError" in ex.status and "model exploded" in ex.status
    (log,) = find(ex.widget, widgets.Output)
    assert any("Traceback" in o.get("text", "") and "model exploded" in o.get("text", "") for o in log.outputs)
    with pytest.raises(RuntimeError, match="model exploded"):
        ex.run("park")
    assert len(ex.results) == 0


def test_offline_without_cached_tiles_says_so(make_explorer, tile_server):
    ex = make_explorer(offline=True)
    ex.area = BBOX
    with pytest.raises(OfflineError):
        ex.run("park")
    assert "offline" in ex.status.lower()
    assert tile_server.n_requests == 0


def _urls_sent(ex: Explorer) -> set:
    """Every http(s) URL in the widget state a browser is sent."""
    import json
    import re

    from ipywidgets.embed import dependency_state

    return set(re.findall(r"https?://[^\s\"']+", json.dumps(dependency_state([ex.widget], drop_defaults=False))))


def test_offline_the_browser_is_sent_to_no_tile_server_elsewhere(make_explorer, tile_server):
    """Offline with the map rendered from OSM data (whose view would show OSM's own tiles) and a
    named satellite provider: neither remote layer, nor the search box, reaches the browser."""
    from sociogeo.testing.helsinki import helsinki_pbf

    local = tile_server.url_template("sat")
    ex = make_explorer(offline=True, satellite=local, map="osm", osm_source=helsinki_pbf())
    assert [la.url for la in layers(ex, ipyleaflet.TileLayer)] == [local]
    assert ex.hidden_layers == ["Street map (OpenStreetMap.Mapnik) (tile.openstreetmap.org)"]
    assert not [c for c in ex.map.controls if isinstance(c, ipyleaflet.SearchControl)]
    assert ex.status.startswith("Offline: not showing Street map (OpenStreetMap.Mapnik)")
    assert _urls_sent(ex) == {local}  # no remote tiles, no geocoder
    with pytest.raises(ConfigError, match="split view needs both tile layers from this machine"):
        ex.split_view = True
    assert not ex.split_view

    bare = make_explorer(offline=True, satellite="Esri.WorldImagery", map="osm", osm_source=helsinki_pbf())
    assert layers(bare, ipyleaflet.TileLayer) == []  # nothing that may be shown: no base tiles at all
    assert len(bare.hidden_layers) == 2 and _urls_sent(bare) == set()
    bare.area = BBOX  # drawing areas still works on the bare map
    assert bare.area is not None

    online = make_explorer(offline=False, satellite="Esri.WorldImagery", map="osm", osm_source=helsinki_pbf())
    assert online.hidden_layers == [] and len(layers(online, ipyleaflet.TileLayer)) == 2
    assert [c for c in online.map.controls if isinstance(c, ipyleaflet.SearchControl)]
    assert any("tile.openstreetmap.org" in u for u in _urls_sent(online))  # the check sees remote URLs


# -- split view and export -------------------------------------------------------------------------
def test_split_view_toggles_map_and_satellite(make_explorer):
    ex = make_explorer()
    toggle = find(ex.widget, widgets.ToggleButton, description="Split view")[0]
    toggle.value = True
    (split,) = [c for c in ex.map.controls if isinstance(c, ipyleaflet.SplitMapControl)]
    sat, street = layers(ex, ipyleaflet.TileLayer)[:2]
    assert split.left_layer is street and split.right_layer is sat
    assert ex.split_view
    ex.split_view = False
    assert not [c for c in ex.map.controls if isinstance(c, ipyleaflet.SplitMapControl)]
    assert toggle.value is False


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson", ".parquet"])
def test_export_round_trips(ex, tmp_path, suffix):
    import geopandas as gpd

    ex.run("park")
    ex.run("school")
    path = ex.export(tmp_path / f"out{suffix}")
    back = gpd.read_parquet(path) if suffix == ".parquet" else gpd.read_file(path)
    assert back.crs.to_epsg() == 4326
    expected = ex.results
    assert list(back["query"]) == list(expected["query"])
    assert np.allclose(back["area_m2"], expected["area_m2"])
    assert list(back["reasoning"]) == list(expected["reasoning"])
    for a, b in zip(back.geometry, expected.geometry):
        assert a.equals_exact(b, tolerance=1e-9)
    assert str(path) in ex.status


def test_export_button_and_bad_extension(ex, tmp_path, monkeypatch):
    import geopandas as gpd

    with pytest.raises(ConfigError, match=r"\.gpkg"):
        ex.export(tmp_path / "out.shp")
    monkeypatch.chdir(tmp_path)
    ex.run("park")
    find(ex.widget, widgets.Button, description="Export")[0].click()
    (written,) = list(tmp_path.glob("sociogeo_results_*.gpkg"))
    assert str(written) in ex.status
    assert len(gpd.read_file(written)) == len(ex.results)


# -- popup text ------------------------------------------------------------------------------------
def test_popup_html_escapes_and_truncates():
    long = "word " * 1000 + "<script>alert(1)</script>"
    text = popup_html({"query": "a <park>", "area_m2": 1234.5, "chip_id": "r0_c0", "reasoning": long}, max_chars=200)
    assert "<script>" not in text and "&lt;park&gt;" in text and "1,234 m²" in text
    body = text.split('pre-wrap; margin-top: 4px">', 1)[1]
    assert len(body) < 320 and "truncated" in body
    short = popup_html({"query": "park", "reasoning": "all of it"})
    assert "all of it" in short and "truncated" not in short
    assert "UNTRAINED" in popup_html({"query": "park", "reasoning": "", "warning": "UNTRAINED models"})


# -- inside a real kernel --------------------------------------------------------------------------
def test_in_a_kernel_the_widget_displays_and_run_still_raises(fixture_raster, map_raster):
    """In a kernel, ipywidgets' Output swallows exceptions raised inside it; run() must not."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from pathlib import Path

    setup = f"""
from sociogeo.analysis.explorer import Explorer
from sociogeo.testing import TileServer
from tests.analysis.test_explorer import scripted_reasoner
server = TileServer({{"sat": {str(fixture_raster)!r}, "map": {str(map_raster)!r}}}).start()
ex = Explorer(scripted_reasoner(), satellite=server.url_template("sat"), map=server.url_template("map"),
              imagery_zoom={ZOOM}, cache_dir=False, chip_size={CHIP})
ex
"""
    check = f"""
try:
    ex.run("park")
except Exception as exc:
    print("raised", type(exc).__name__)
ex.area = {BBOX!r}
print("rows", len(ex.run("park")))
server.stop()
"""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(setup), nbformat.v4.new_code_cell(check)])
    root = Path(__file__).resolve().parents[2]
    nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(root)}}
    ).execute()
    shown = nb.cells[0].outputs[-1]
    assert "application/vnd.jupyter.widget-view+json" in shown["data"]
    printed = "".join(o.get("text", "") for o in nb.cells[1].outputs if o["output_type"] == "stream")
    assert "raised InvalidAreaError" in printed
    assert "rows 2" in printed


def test_demo_model_results_say_so_after_the_run_and_after_export(make_explorer, tmp_path):
    from sociogeo.reasoner.kind import NOTICES

    reasoner = scripted_reasoner()
    reasoner.model_kind = "demo"  # as SocioReasoner.from_pretrained sets it for the shipped demo model
    explorer = make_explorer(reasoner)
    draw(explorer, rectangle(*BBOX))
    found = explorer.run("park")
    assert len(found) and found.attrs["model_kind"] == "demo"
    assert NOTICES["demo"] in explorer.status
    (layer,) = [layer for layer in layers(explorer, ipyleaflet.GeoJSON) if layer.name.startswith("park")]
    assert layer.name.endswith("demo model")
    path = explorer.export(tmp_path / "parks.gpkg")
    assert str(path) in explorer.status and NOTICES["demo"] in explorer.status  # the export keeps the label
