"""``sociogeo segment``: tiles from the loopback server, real tiny models, a result file in the
format its extension names, a sidecar with the run's metadata, a preview PNG and a summary.

Two VLM set-ups: the real tiny Qwen2.5-VL in process (its random answers usually find nothing, so
that run checks the files of an empty result), and a scripted OpenAI-compatible HTTP server on
127.0.0.1 answering fixed boxes (``--vlm http://...``), so the real tiny SAM produces masks and the
files hold real polygons.
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from http.server import BaseHTTPRequestHandler

import numpy as np
import pytest

from sociogeo.cli import main
from sociogeo.pipeline.results import read_result, sidecar_path
from sociogeo.testing import make_tiny_models

BBOX = ["-122.4105", "37.7825", "-122.3965", "37.7925"]  # the sf_area fixture's box


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny random models, shared by every test file of the session (created once)."""
    return make_tiny_models(tmp_path_factory.getbasetemp() / "tiny-models")


@pytest.fixture
def no_progress(_reset_sociogeo_options):
    """Progress bars also write to stderr; keep it to the lines under test."""
    _reset_sociogeo_options.progress = False


class _ScriptedChat(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat server whose model answers one box over the middle of the
    satellite image (stage 1) and that box with its centre point (stage 2)."""

    def do_GET(self):
        if self.path.rstrip("/") == "/v1/models":
            self._json({"object": "list", "data": [{"id": "scripted", "object": "model"}]})
        else:
            self._json({"error": "not found"}, status=404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        content = body["messages"][0]["content"]
        text = next(part["text"] for part in content if part["type"] == "text")
        satellite = [part for part in content if part["type"] == "image_url"][1]["image_url"]["url"]
        w, h = _png_size(satellite)
        box = [w // 4, h // 4, 3 * w // 4, 3 * h // 4]
        if "Please find" in text:
            answer = f'<think>found one</think><answer>[{{"bbox_2d": {box}}}]</answer>'
        else:
            item = {"bbox_2d": box, "points": [[w // 2, h // 2]]}
            answer = f"<think>added a point</think><answer>[{json.dumps(item)}]</answer>"
        self._json({"object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}]})

    def _json(self, payload, status=200):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def _png_size(data_url: str):
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).size


@pytest.fixture(scope="module")
def chat_server():
    from sociogeo.testing.loopback import serve

    with serve(_ScriptedChat) as server:
        yield f"{server.url}/v1"


def segment_args(tile_server, out, *extra, vlm, sam):
    return ["segment", "--bbox", *BBOX, "--zoom", "15", "--query", "park", "--vlm", str(vlm), "--sam", str(sam),
            "--device", "cpu", "--satellite", tile_server.url_template("sat"), "--map", tile_server.url_template("map"),
            "--chip-size", "256", "--max-new-tokens", "32", "--out", str(out), *extra]


def test_segment_with_tiny_models_writes_gpkg_sidecar_and_preview(tiny, tile_server, sf_area, tmp_path, capsys,
                                                                   no_progress):
    from PIL import Image

    out = tmp_path / "res" / "parks.gpkg"
    status = main(segment_args(tile_server, out, "--cache-dir", str(tmp_path / "cache"), vlm=tiny.vlm, sam=tiny.sam))
    assert status == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["parks.gpkg", "parks.gpkg.json", "parks.gpkg.parts",
                                                             "parks.preview.png"]

    gdf = read_result(out)
    assert list(gdf.columns) == ["query", "area_m2", "chip_id", "reasoning", "geometry"]
    assert gdf.crs.to_epsg() == 4326
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["format"] == "GPKG" and meta["n_entities"] == len(gdf)
    attrs = meta["attrs"]
    assert attrs["vlm"] == str(tiny.vlm) and attrs["sam"].startswith("sam2")
    assert attrs["zoom"] == 15 and attrs["chip_size"] == 256 and attrs["queries"] == ["park"]
    # sociogeo.testing's tiny models record that they are untrained, and stay labelled when named by path
    assert attrs["trained"] is False and attrs["model_kind"] == "untrained"
    assert attrs["parse"] == "strict"  # answers read as the release reads them unless --parse repair
    assert gdf.attrs["vlm"] == str(tiny.vlm)  # read_result restores the attrs
    # the preview is the satellite image on the area's grid (small areas are not downsampled)
    assert Image.open(out.parent / "parks.preview.png").size == (sf_area.grid.width, sf_area.grid.height)
    printed = capsys.readouterr().out
    assert re.search(rf"'park': {len(gdf)} entit", printed)
    assert str(out) in printed and "parks.preview.png" in printed
    assert "\nUNTRAINED MODELS" in printed  # the summary starts with the label


@pytest.mark.parametrize("suffix", [".geojson", ".parquet"])
def test_segment_writes_polygons_from_a_served_vlm(suffix, tiny, chat_server, tile_server, sf_area, tmp_path,
                                                   capsys, no_progress):
    from PIL import Image
    from shapely.geometry import box

    out = tmp_path / f"parks{suffix}"
    status = main(segment_args(tile_server, out, "--min-area-m2", "0", "--batch-size", "2", "--parse", "repair",
                               "--cache-dir", str(tmp_path / "cache"), vlm=chat_server, sam=tiny.sam))
    assert status == 0
    gdf = read_result(out)
    assert len(gdf) > 0, "the tiny SAM gave no mask for the served boxes"
    assert gdf.geometry.is_valid.all()
    assert gdf.geometry.within(box(*sf_area.grid.lonlat_bounds).buffer(1e-9)).all()
    assert (gdf["query"] == "park").all() and (gdf["area_m2"] > 0).all()
    assert gdf["reasoning"].str.contains("found one").all()
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["n_entities"] == len(gdf) and meta["attrs"]["vlm"] == f"scripted @ {chat_server.removesuffix('/v1')}"
    assert meta["attrs"]["parse"] == "repair"
    total = gdf["area_m2"].sum()
    printed = capsys.readouterr().out
    assert f"'park': {len(gdf)} entit" in printed

    # the preview shows the outlines: some pixels differ from the plain satellite image
    preview = np.asarray(Image.open(tmp_path / "parks.preview.png").convert("RGB"))
    from sociogeo.imagery import fetch_pair

    plain = fetch_pair(sf_area, satellite=tile_server.url_template("sat"), map=tile_server.url_template("map"),
                       cache_dir=False)
    satellite = np.moveaxis(plain.satellite.values, 0, -1)
    assert preview.shape == satellite.shape
    assert (preview != satellite).any(axis=-1).mean() > 0.001
    assert total > 0


def test_unknown_extension_fails_before_any_work(tiny, tile_server, tmp_path, capsys, no_progress):
    out = tmp_path / "parks.shp"
    status = main(segment_args(tile_server, out, "--cache-dir", str(tmp_path / "cache"), vlm=tiny.vlm, sam=tiny.sam))
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sociogeo: error:")
    assert ".shp" in err and ".gpkg" in err
    assert tile_server.n_requests == 0
    assert not any(tmp_path.iterdir())


def test_empty_query_is_an_error(tiny, tile_server, tmp_path, capsys, no_progress):
    args = segment_args(tile_server, tmp_path / "x.gpkg", "--cache-dir", str(tmp_path / "cache"), vlm=tiny.vlm,
                        sam=tiny.sam)
    args[args.index("park")] = "  "
    assert main(args) == 2
    assert "--query" in capsys.readouterr().err


def test_python_m_sociogeo_help_lists_the_commands():
    done = subprocess.run([sys.executable, "-m", "sociogeo", "--help"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    for command in ("fetch", "segment", "demo"):
        assert command in done.stdout
    done = subprocess.run([sys.executable, "-m", "sociogeo", "segment", "--help"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and "--query" in done.stdout and ".gpkg" in done.stdout


def test_preview_of_a_big_area_is_downsampled_with_outlines_in_place(tmp_path):
    """A 600 x 400 px area previewed at most 300 px wide: the PNG is 300 x 200 and a polygon
    covering pixels [150, 300) x [100, 200) is outlined at half those coordinates."""
    from types import SimpleNamespace

    import geopandas as gpd
    from PIL import Image
    from shapely.geometry import box

    from sociogeo.analysis.plots import write_result_preview
    from sociogeo.geo.grid import PixelGrid
    from sociogeo.imagery import to_dataarray

    grid = PixelGrid(zoom=15, col_off=5_240_000, row_off=3_160_000, width=600, height=400)
    pair = SimpleNamespace(grid=grid, satellite=to_dataarray(np.full((400, 600, 3), 255, np.uint8), grid,
                                                             name="satellite"))
    (x0, y0), (x1, y1) = grid.xy(150, 200), grid.xy(300, 100)
    gdf = gpd.GeoDataFrame({"query": ["park"]}, geometry=[box(x0, y0, x1, y1)], crs="EPSG:3857").to_crs(4326)
    gdf.attrs.update(trained=True, queries=["park"])

    path = write_result_preview(tmp_path / "p.png", pair, gdf, max_size=300)
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert image.shape == (200, 300, 3)
    drawn = (image != 255).any(axis=-1)
    assert drawn[50 - 1:50 + 2, 110].any() and drawn[100 - 1:100 + 2, 110].any()  # top and bottom edges
    assert drawn[75, 75 - 1:75 + 2].any() and drawn[75, 150 - 1:150 + 2].any()  # left and right edges
    assert not drawn[70:80, 100:125].any()  # inside
    assert not drawn[150:190, 200:290].any()  # far outside
