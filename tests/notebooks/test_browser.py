"""The quickstart notebook in a real browser: headless Chromium renders the executed notebook's
Explorer widget, with its tiles and result polygons.

The notebook runs offline (loopback tiles, the shipped demo model) with its widget state stored;
nbconvert exports it to HTML; the widget JavaScript comes from a loopback server (npm
``@jupyter-widgets/html-manager`` and the ``jupyter-leaflet`` bundle shipped in ipyleaflet's Python
wheel), never a CDN; Chromium resolves no host but 127.0.0.1. The tile server is started by this
test and handed to the notebook (``SATELLITE``/``MAP``), so it still serves when the browser asks.

The polygons are real model output: the notebook's offline reasoner is the demo model
(``sociogeo/data/demo_model``, trained on the synthetic stand-in of the sample area), which finds
the parks of the sample area; the page must show them, over OpenStreetMap's parks, with the demo
model's label in the map's layers control and status line.

Chromium: Debian's ``chromium`` package. Without it (or without ``npm install --prefix
tests/notebooks/browser``) the test is skipped, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_notebooks import execute, read_parameters

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOT = ARTIFACTS / "quickstart_browser.png"
PAGE_SETTLE_S = 120  # seconds the page may take to load the widgets and every tile


def _load(name: str):
    """A helper module of tests/notebooks/browser/ (not a package) by path."""
    spec = importlib.util.spec_from_file_location(
        f"browser_{name}", ROOT / "tests" / "notebooks" / "browser" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chromium = _load("chromium")
assets = _load("assets")


def _require(found: bool, what: str) -> None:
    """Skip locally, fail in CI, when something the browser test needs is missing."""
    if found:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what}; CI must provide it (.ci/run installs it)")
    pytest.skip(what)


@pytest.fixture(scope="module")
def chromium_binary() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    _require(path is not None, "headless Chromium not found (Debian: apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def widget_javascript():
    _require((assets.HTML_MANAGER_DIST / "embed-amd.js").is_file() and assets.REQUIREJS.is_file(),
             "the widget JavaScript is not installed (npm install --prefix tests/notebooks/browser)")
    _require((assets.NBEXTENSIONS / "jupyter-leaflet" / "index.js").is_file(),
             f"jupyter-leaflet's AMD bundle is missing from {assets.NBEXTENSIONS} (pip install ipyleaflet)")


def export_html(nb, base_url: str) -> str:
    """The executed notebook as HTML whose widget JavaScript all comes from ``base_url``."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", jupyter_widgets_base_url=f"{base_url}/npm/",
                            require_js_url=f"{base_url}/require.js", mathjax_url="")
    html, _ = exporter.from_notebook_node(nb)
    # the html-manager's loader reads its CDN from this attribute; "-only": no other lookup first
    marker = f'<script data-jupyter-widgets-cdn="{base_url}/npm/" data-jupyter-widgets-cdn-only></script>'
    assert html.count("<head>") == 1
    return html.replace("<head>", f"<head>\n{marker}", 1)


# what the page shows, read in the browser: Leaflet's tile images and the result layer's SVG paths
PAGE_STATE = """
(() => {
  const map = document.querySelector('.jupyter-widgets .leaflet-container');
  if (!map) return null;
  const tiles = [...map.querySelectorAll('img.leaflet-tile')].map(img => ({
    src: img.src, complete: img.complete, loaded: img.complete && img.naturalWidth > 0, width: img.naturalWidth,
    rect: img.getBoundingClientRect().toJSON()}));
  const paths = [...map.querySelectorAll('.leaflet-overlay-pane svg path')].map(p => ({
    stroke: (p.getAttribute('stroke') || '').toLowerCase(), rect: p.getBoundingClientRect().toJSON()}));
  return {tiles, paths, map: map.getBoundingClientRect().toJSON(), scroll: [window.scrollX, window.scrollY]};
})()
"""


# the text of the map's layers control (layer names, also when it is collapsed) and of every widget
PAGE_TEXT = """
(() => ({
  layers: [...document.querySelectorAll('.jupyter-widgets .leaflet-control-layers')]
    .map(e => e.textContent).join(' | '),
  widgets: [...document.querySelectorAll('.jupyter-widgets')].map(e => e.textContent).join(' | '),
}))()
"""


def _demo_model_parks(workdir: Path, bbox, osm_source):
    """The quickstart's exported parks, checked: found by the demo model (and labelled so), and
    mostly on OpenStreetMap's parks (leisure=park and the like, from the offline extract).
    """
    import geopandas as gpd

    from sociogeo.testing.demo_model import NOTICE
    from sociogeo.testing.helsinki import osm_parks, share_on

    polygons = gpd.read_file(workdir / "parks.gpkg")
    assert len(polygons) > 0, "the demo model found no park in the quickstart's area"
    attrs = json.loads((workdir / "parks.gpkg.json").read_text())["attrs"]
    assert attrs["model_kind"] == "demo" and attrs["model_notice"] == NOTICE
    share = share_on(polygons, osm_parks(bbox, osm_source))
    assert share > 0.3, f"the demo model's parks miss OpenStreetMap's (only {share:.0%} of their area is on them)"
    return polygons


def _settled(browser, tile_base: str, colour: str, n_polygons: int):
    """Wait until the map shows loaded loopback tiles (none pending) and ``n_polygons`` result paths."""
    condition = f"""
(() => {{
  const s = {PAGE_STATE};
  if (!s) return null;
  const ours = s.tiles.filter(t => t.src.startsWith({tile_base!r}));
  // tiles outside the synthetic rasters are 404: complete but not loaded
  const done = ours.some(t => t.loaded) && ours.every(t => t.complete);
  const polygons = s.paths.filter(p => p.stroke === {colour!r}).length;
  return done && polygons >= {n_polygons} ? s : null;
}})()
"""
    return browser.wait_for(condition, timeout_s=PAGE_SETTLE_S)


def test_quickstart_renders_tiles_and_polygons_in_chromium(chromium_binary, widget_javascript, tmp_path):
    from PIL import Image

    from sociogeo.analysis.explorer import QUERY_COLOURS
    from sociogeo.testing.demo_model import NOTICE
    from sociogeo.testing.helsinki import offline_world

    workdir = tmp_path / "sociogeo-work"
    colour = QUERY_COLOURS[0].lower()  # the first query's colour on the explorer's map
    with offline_world(workdir / "offline") as world:  # the demo model's world: zoom-17 stand-in tiles
        tile_base = world.server.url
        nb = execute("01_quickstart", tmp_path / "cwd", OFFLINE=True, WORKDIR=str(workdir),
                     SATELLITE=world.satellite_url, MAP=world.map)
        assert "widgets" in nb.metadata, "nbclient stored no widget state"
        polygons = _demo_model_parks(workdir, read_parameters(nb)["AREA"], world.osm_source)

        world.server.reset_log()
        with assets.AssetServer() as server, chromium.Chromium(chromium_binary, tmp_path / "chromium",
                                                                 width=1280, height=1000) as browser:
            server.page = export_html(nb, server.url)
            browser.open(f"{server.url}/page.html")
            state = _settled(browser, tile_base, colour, len(polygons))
            if state is None:
                seen = browser.evaluate(PAGE_STATE)
                summary = seen and {"tiles": len(seen["tiles"]), "loaded": sum(t["loaded"] for t in seen["tiles"]),
                                    "strokes": sorted({p["stroke"] for p in seen["paths"]})}
                report = "\n".join(browser.console[-30:])
                pytest.fail(
                    f"the map did not settle within {PAGE_SETTLE_S} s; on the page: {summary}; console:\n{report}"
                )
            # screenshot of the map (document coordinates: the viewport's plus the scroll offset)
            browser.evaluate("document.querySelector('.jupyter-widgets .leaflet-container').scrollIntoView()")
            state = _settled(browser, tile_base, colour, len(polygons))
            assert state is not None, "the map changed after scrolling it into view"
            box = state["map"]
            x0, y0 = box["x"] + state["scroll"][0], box["y"] + state["scroll"][1]
            browser.screenshot(SCREENSHOT, clip={"x": x0, "y": y0, "width": box["width"], "height": box["height"]})
            requests = list(browser.requests)
            page_text = browser.evaluate(PAGE_TEXT)
        tile_log = world.server.requests
        render = world.server.render  # the PNG the server sends for a tile

    # the tiles: Leaflet's images come from the loopback tile server, fetched by the browser itself
    ours = [t for t in state["tiles"] if t["src"].startswith(tile_base) and t["loaded"]]
    assert ours and all(t["width"] == 256 for t in ours)
    browser_hits = [r for r in tile_log if r.user_agent and "HeadlessChrome" in r.user_agent and r.status == 200]
    assert browser_hits, {r.user_agent for r in tile_log}
    assert {r.layer for r in browser_hits} <= {"sat", "map"}
    # every request of the page stayed on this machine: no CDN, no internet tiles
    remote = [u for u in requests if not u.startswith(("http://127.0.0.1:", "data:", "about:", "blob:"))]
    assert remote == []
    # the widget code came from the local copies (html-manager from npm, jupyter-leaflet from the wheel)
    served = {path for path, status in server.requests if status == 200}
    assert any("/html-manager@" in p and p.endswith("embed-amd.js") for p in served)
    assert any(p.startswith("/npm/jupyter-leaflet@") for p in served)

    # the polygons: one SVG path per result row, in the query's colour
    result_paths = [p for p in state["paths"] if p["stroke"] == colour]
    assert len(result_paths) == len(polygons) > 0
    # the page says whose polygons they are: the layers control names the demo model, the status
    # line gives its notice, and the satellite base layer is named a synthetic stand-in
    assert f"park ({len(polygons)}) \u2014 demo model" in page_text["layers"], page_text
    assert NOTICE in page_text["widgets"], page_text

    # and in the pixels: where tiles loaded, the map shows them (not Leaflet's empty grey background),
    # and the outlines' colour is where the result paths are
    image = np.asarray(Image.open(SCREENSHOT).convert("RGB")).astype(int)
    assert image.shape[:2] == (round(box["height"]), round(box["width"]))
    tiled = _opaque(image.shape[:2], ours, box, render)
    assert tiled.mean() > 0.3, "the loaded tiles cover little of the map"
    leaflet_grey = np.abs(image - 221).max(axis=2) <= 2
    assert (leaflet_grey & tiled).sum() < 0.02 * tiled.sum(), "where tiles have imagery, the map shows none"
    target = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    near = np.abs(image - target).max(axis=2) <= 30
    inside = _region(image.shape[:2], [p["rect"] for p in result_paths], box, margin=2)
    assert (near & inside).sum() >= 10, "no outline colour where the polygons are"
    assert (near & ~inside).sum() <= 0.01 * near.sum(), "the outline colour appears away from the polygons"


def _opaque(shape, tiles, box, render) -> np.ndarray:
    """H x W bool: where the ``tiles`` (on a screenshot of ``box``) have opaque pixels; tiles are
    transparent outside the synthetic rasters."""
    from PIL import Image

    out = np.zeros(shape, bool)
    for tile in tiles:
        layer, z, x, y = re.search(r"/([^/]+)/(\d+)/(\d+)/(\d+)\.png$", tile["src"]).groups()
        alpha = np.asarray(Image.open(io.BytesIO(render(layer, int(z), int(x), int(y)))).convert("RGBA"))[..., 3] > 0
        top, left = round(tile["rect"]["y"] - box["y"]), round(tile["rect"]["x"] - box["x"])
        rows = slice(max(top, 0), min(top + alpha.shape[0], shape[0]))
        cols = slice(max(left, 0), min(left + alpha.shape[1], shape[1]))
        if rows.start < rows.stop and cols.start < cols.stop:
            out[rows, cols] |= alpha[rows.start - top:rows.stop - top, cols.start - left:cols.stop - left]
    return out


def _region(shape, rects, box, *, margin: int = 0) -> np.ndarray:
    """H x W bool: the union of page rectangles (CSS pixels, like ``box``) on a screenshot of ``box``."""
    out = np.zeros(shape, bool)
    for r in rects:
        top, left = round(r["y"] - box["y"]) - margin, round(r["x"] - box["x"]) - margin
        bottom, right = top + round(r["height"]) + 2 * margin, left + round(r["width"]) + 2 * margin
        out[max(top, 0):max(bottom, 0), max(left, 0):max(right, 0)] = True
    return out
