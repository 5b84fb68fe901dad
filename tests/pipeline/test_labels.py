"""Honest labels through a run (issue 13, class 6): a result made by untrained or demo models, or on
a synthetic satellite layer, says so in its attrs, its summary, its preview and its map layers.

Pipeline logic with a scripted VLM; the SAM is a real tiny model loaded from the folder
``sociogeo.testing`` wrote, and the tiles come from a real loopback tile server.
"""

from __future__ import annotations

import numpy as np
import pytest

from sociogeo.pipeline.results import SYNTHETIC_TITLE, UNTRAINED_TITLE, result_labels, summary_lines

pytest.importorskip("torch")
pytest.importorskip("transformers")

CHIP = 256


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory):
    from sociogeo.testing.tiny_sam import make_tiny_sam2

    return make_tiny_sam2(tmp_path_factory.mktemp("labels") / "sam")


def _box_vlm():
    from sociogeo.testing import ScriptedVLM

    def respond(request):
        h, w = np.asarray(request.images[1]).shape[:2]
        box = [w // 4, h // 4, 3 * w // 4, 3 * h // 4]
        return f'<think>a box</think><answer>[{{"bbox_2d": {box}, "points": [[{w // 2}, {h // 2}]]}}]</answer>'

    return ScriptedVLM(respond)


def test_an_untrained_sam_folder_on_synthetic_tiles_labels_everything(tiny_sam, tile_server, sf_area, tmp_path,
                                                                       monkeypatch):
    from sociogeo.analysis import plots
    from sociogeo.imagery import ImagerySource
    from sociogeo.options import options
    from sociogeo.pipeline.run import segment
    from sociogeo.reasoner import SocioReasoner
    from sociogeo.testing.helsinki import synthetic_provider

    options.progress = False
    # no trained= anywhere: the SAM folder's record says untrained
    reasoner = SocioReasoner.from_pretrained(_box_vlm(), str(tiny_sam), device="cpu", offline=True)
    source = ImagerySource(satellite=synthetic_provider(tile_server.url_template("sat")),
                           map=tile_server.url_template("map"), cache_dir=False)
    gdf = segment(sf_area, "park", reasoner=reasoner, imagery=source, chip_size=CHIP, batch_size=4)
    assert gdf.attrs["model_kind"] == "untrained" and gdf.attrs["trained"] is False
    assert gdf.attrs["synthetic_satellite"] is True and "synthetic stand-in" in gdf.attrs["attribution"]
    assert result_labels(gdf.attrs) == [UNTRAINED_TITLE, SYNTHETIC_TITLE]
    lines = summary_lines(gdf)
    assert lines[0].startswith(UNTRAINED_TITLE) and lines[1].startswith(SYNTHETIC_TITLE)

    titles = []
    original = plots.save_preview
    monkeypatch.setattr(plots, "save_preview", lambda *a, **k: titles.append(k["title"]) or original(*a, **k))
    plots.write_result_preview(tmp_path / "p.png", source, gdf, grid=sf_area.grid)
    assert titles[0].splitlines()[:2] == [UNTRAINED_TITLE, SYNTHETIC_TITLE]
    assert titles[0].splitlines()[2].startswith("park: ")

    # the same run on the tiles as a plain URL (no synthetic mark) carries only the model's label
    plain = segment(sf_area, "park", reasoner=reasoner, satellite=tile_server.url_template("sat"),
                    map=tile_server.url_template("map"), cache_dir=False, chip_size=CHIP, batch_size=4)
    assert plain.attrs["synthetic_satellite"] is False and result_labels(plain.attrs) == [UNTRAINED_TITLE]


def test_synthetic_tags_travel_with_geotiffs(tmp_path, sf_area, tile_server):
    from sociogeo.imagery import ImagePair, ImagerySource
    from sociogeo.imagery.pair import fetch_pair
    from sociogeo.imagery.raster import RasterSource
    from sociogeo.testing.helsinki import synthetic_provider

    source = ImagerySource(satellite=synthetic_provider(tile_server.url_template("sat")),
                           map=tile_server.url_template("map"), cache_dir=False)
    pair = fetch_pair(sf_area, imagery=source)
    assert pair.attrs["satellite_synthetic"] is True
    paths = pair.to_geotiff(tmp_path / "pair")
    assert ImagePair.from_geotiff(tmp_path / "pair").attrs["satellite_synthetic"] is True
    assert RasterSource(paths["satellite"]).synthetic is True
    assert RasterSource(paths["map"]).synthetic is False


def test_explorer_layer_names_say_synthetic(tile_server):
    pytest.importorskip("leafmap")
    from sociogeo.analysis.explorer import Explorer
    from sociogeo.testing.helsinki import synthetic_provider

    explorer = Explorer(satellite=synthetic_provider(tile_server.url_template("sat")),
                        map=tile_server.url_template("map"), offline=True)
    names = [layer.name for layer in explorer.map.layers]
    assert any(n.startswith("Satellite (") and n.endswith("synthetic stand-in") for n in names)
    plain = Explorer(satellite=tile_server.url_template("sat"), map=tile_server.url_template("map"), offline=True)
    assert not any("synthetic" in layer.name for layer in plain.map.layers)


def test_notices_are_shortened_to_whole_sentences():
    from sociogeo._text import one_line

    text = "The weights are not cached.  Run `hf download x` first. " + "Details: " + "y" * 300 + "."
    assert one_line(text, 80) == "The weights are not cached. Run `hf download x` first."
    assert one_line("One very long sentence " + "z" * 200 + ".", 40).endswith("z.")  # never cut inside
    assert one_line("short\nline", 80) == "short line"
