"""Pipeline logic with scripted stand-ins: prompts, stage order, rendering, coordinate chain.

The real models are exercised in test_reasoner_models.py; here a scripted VLM answers known boxes
so every coordinate conversion (model 756 px -> chip 768 px -> area grid -> EPSG:3857 -> lon/lat)
can be checked to the pixel.
"""

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from sociogeo.errors import ConfigError
from sociogeo.geo import modelspace
from sociogeo.geo.grid import PixelGrid
from sociogeo.pipeline.run import RESULT_COLUMNS, segment
from sociogeo.reasoner import SocioReasoner
from sociogeo.reasoner.prompts import stage1_text, stage2_text
from sociogeo.testing.scripted import BoxSegmenter, ScriptedVLM

GRID = PixelGrid(zoom=17, col_off=19101606, row_off=9712048, width=1300, height=900)


def _pair(grid=GRID):
    rng = np.random.default_rng(1)
    sat = rng.integers(0, 255, (3, grid.height, grid.width), dtype=np.uint8)
    mp = rng.integers(0, 255, (3, grid.height, grid.width), dtype=np.uint8)
    return SimpleNamespace(grid=grid, satellite=sat, map=mp, valid=None,
                           attrs={"satellite_provider": "test-sat", "map_provider": "test-map",
                                  "satellite_attribution": "Sat Co", "map_attribution": "Map Co"})


def _digest(image):
    import hashlib

    return hashlib.sha1(image.tobytes()).hexdigest()


def _boxes_in_text(text):
    m = re.search(r"The found bbox\(s\) are: (.*)\.Please add", text, re.S)
    return json.loads(m.group(1)) if m and m.group(1) else []


def entity_vlm(entities_px, grid=GRID, chip=768, overlap=0):
    """A VLM that 'sees' rectangles given in area-grid pixels and answers their part in each chip."""
    model = modelspace.model_size(chip, chip)
    # identify the chip from the stage-1 satellite image: compare with each chip's resized image
    from sociogeo.imagery.chips import iter_chips

    pair = _pair(grid)
    lookup = {}
    for c in iter_chips(pair, size=chip, overlap=overlap):
        lookup[_digest(modelspace.resize_image(c.satellite, model))] = c

    def respond(req):
        if req.text.startswith(stage1_text("X")[:60]) and "Please find" in req.text:
            c = lookup[_digest(req.images[1])]
            items = []
            for (c0, r0, c1, r1) in entities_px:
                x0, x1 = (max(c0, c.window.col_off) - c.window.col_off,
                          min(c1, c.window.col_off + chip) - c.window.col_off)
                y0, y1 = (max(r0, c.window.row_off) - c.window.row_off,
                          min(r1, c.window.row_off + chip) - c.window.row_off)
                if x1 > x0 and y1 > y0:
                    (mx0, my0), (mx1, my1) = modelspace.chip_to_model([[x0, y0], [x1, y1]], (chip, chip))
                    items.append({"bbox_2d": [round(mx0, 3), round(my0, 3), round(mx1, 3), round(my1, 3)]})
            return f"<think>I see {len(items)} thing(s) in {c.chip_id}.</think><answer>{json.dumps(items)}</answer>"
        boxes = _boxes_in_text(req.text)
        items = [{"bbox_2d": b["bbox_2d"],
                  "points": [[(b["bbox_2d"][0] + b["bbox_2d"][2]) / 2, (b["bbox_2d"][1] + b["bbox_2d"][3]) / 2]]}
                 for b in boxes]
        return f"<think>points added</think><answer>{json.dumps(items)}</answer>"

    return ScriptedVLM(respond)


def test_predict_runs_both_stages_with_exact_prompts():
    seen = []

    def respond(req):
        seen.append(req)
        if len(seen) == 1:
            return '<think>a</think><answer>[{"bbox_2d": [100, 100, 200, 300]}]</answer>'
        return '<think>b</think><answer>[{"bbox_2d": [100, 100, 200, 300], "points": [[150, 150]]}]</answer>'

    sam = BoxSegmenter()
    r = SocioReasoner(ScriptedVLM(respond), sam)
    rng = np.random.default_rng(0)
    mp = rng.integers(0, 255, (768, 768, 3), dtype=np.uint8)
    st = rng.integers(0, 255, (768, 768, 3), dtype=np.uint8)
    pred = r.predict(mp, st, "school")
    # stage 1: exact text, map first then satellite, both at 756
    assert seen[0].text == stage1_text("school")
    assert [im.shape for im in seen[0].images] == [(756, 756, 3)] * 2
    np.testing.assert_array_equal(seen[0].images[0], modelspace.resize_image(mp, (756, 756)))
    np.testing.assert_array_equal(seen[0].images[1], modelspace.resize_image(st, (756, 756)))
    # stage 2: the stage-1 answer text goes into the prompt verbatim; images carry the rendering
    assert seen[1].text == stage2_text("school", '[{"bbox_2d": [100, 100, 200, 300]}]')
    assert tuple(seen[1].images[1][100, 150]) != tuple(seen[0].images[1][100, 150])  # blue box edge
    assert pred.stage1_boxes == [(100.0, 100.0, 200.0, 300.0)]
    assert pred.stage1_mask.shape == (756, 756) and pred.stage1_mask[150, 150]
    assert pred.mask.shape == (768, 768)
    # the final mask at chip scale covers the box scaled by 768/756
    ys, xs = np.nonzero(pred.mask)
    assert xs.min() == pytest.approx(100 * 768 / 756, abs=1.5) and ys.max() == pytest.approx(300 * 768 / 756, abs=1.5)
    assert pred.reasoning == "a\n\nb"
    assert sam.embedded == 1  # one embedding for both stages


def test_malformed_answers_give_empty_masks_and_reasons():
    answers = iter(["no tags at all", '<think>x</think><answer>[{"bbox_2d": [5, 5, 5, 9]}, {"foo": 1}]</answer>'])
    r = SocioReasoner(ScriptedVLM(lambda req: next(answers)), BoxSegmenter())
    img = np.zeros((768, 768, 3), np.uint8)
    pred = r.predict(img, img, "park")
    assert pred.parse == "strict" and pred.repairs == []
    # strict: a box without area is still a SAM prompt (as released), the item without one is not
    assert not pred.mask.any() and pred.stage1_boxes == [] and [i.box for i in pred.stage2_items] == [(5, 5, 5, 9)]
    assert [(stage, d.reason) for stage, d in pred.discarded] == [
        (1, "no <answer>...</answer> in the response; no SAM prompt"), (2, "bbox_2d is not a list of 4 numbers")]


def test_repair_mode_drops_and_records_what_it_changes():
    answers = iter(['<think>a</think><answer>[{"bbox_2d": [300, 200, 100, 100]},]</answer>',
                    '<think>b</think><answer>[{"bbox_2d": [5, 5, 5, 9]}, {"bbox_2d": [700, 700, 800, 800]}]</answer>'])
    vlm = ScriptedVLM(lambda req: next(answers))
    pred = SocioReasoner(vlm, BoxSegmenter(), parse="repair").predict(np.zeros((768, 768, 3), np.uint8),
                                                                   np.zeros((768, 768, 3), np.uint8), "park")
    assert pred.parse == "repair"
    assert pred.stage1_boxes == [(100.0, 100.0, 300.0, 200.0)]  # corners reordered, trailing comma repaired
    assert [i.box for i in pred.stage2_items] == [(700.0, 700.0, 756.0, 756.0)]  # clipped; no-area box dropped
    assert {(s, d.reason) for s, d in pred.repairs} >= {(1, "box corners reordered"), (2, "box clipped to the image")}
    assert (2, "box has no area inside the image") in {(s, d.reason) for s, d in pred.discarded}
    # the same answers read strictly: the stage-1 answer is not JSON, so SAM gets nothing
    answers = iter(['<think>a</think><answer>[{"bbox_2d": [300, 200, 100, 100]},]</answer>', "<answer>[]</answer>"])
    strict = SocioReasoner(ScriptedVLM(lambda req: next(answers)), BoxSegmenter()).predict(
        np.zeros((768, 768, 3), np.uint8), np.zeros((768, 768, 3), np.uint8), "park")
    assert strict.stage1_boxes == [] and not strict.stage1_mask.any()
    assert "answer is not valid JSON" in strict.discarded[0][1].reason
    with pytest.raises(ConfigError, match="parse must be 'strict'"):
        SocioReasoner(vlm, BoxSegmenter(), parse="tolerant")


def test_shared_satellite_is_embedded_once_per_batch():
    sam = BoxSegmenter()
    r = SocioReasoner(ScriptedVLM(lambda req: "<think></think><answer>[]</answer>"), sam)
    img = np.zeros((768, 768, 3), np.uint8)
    other = np.ones((768, 768, 3), np.uint8)
    preds = r.predict_batch([img, img, other], [img, img, other], ["a", "b", "c"])
    assert len(preds) == 3 and sam.embedded == 2


def test_predict_batch_validates_input():
    r = SocioReasoner(ScriptedVLM(lambda req: ""), BoxSegmenter())
    img = np.zeros((768, 768, 3), np.uint8)
    with pytest.raises(ValueError, match="one of each"):
        r.predict_batch([img], [img, img], ["a"])
    with pytest.raises(ValueError, match="non-empty"):
        r.predict(img, img, "  ")
    with pytest.raises(ValueError, match="uint8"):
        r.predict(img.astype(float), img, "a")
    assert r.predict_batch([], [], []) == []


def _expected_lonlat_box(c0, r0, c1, r1, grid=GRID):
    from sociogeo.geo.grid import mercator_to_lonlat

    x0, y1 = grid.xy(c0, r0)
    x1, y0 = grid.xy(c1, r1)
    (w, e), (s, n) = mercator_to_lonlat([x0, x1], [y0, y1])
    return float(w), float(s), float(e), float(n)


@pytest.mark.parametrize("batch_size", [1, 8])
def test_coordinate_chain_lands_polygons_within_a_pixel(batch_size):
    # one entity inside chip r0_c0, one straddling the border between r0_c0 and r0_c1 (x=768)
    entities = [(100, 120, 300, 260), (700, 400, 900, 600)]
    vlm = entity_vlm(entities)
    r = SocioReasoner(vlm, BoxSegmenter())
    seen = []
    out = segment(_pair(), "school", reasoner=r, batch_size=batch_size, min_area_m2=0,
                  callback=lambda chip, q, pred: seen.append((chip.chip_id, q, len(pred.stage1_boxes))))
    assert sorted(seen) == [
        ("r0_c0", "school", 2), ("r0_c1", "school", 1), ("r1_c0", "school", 0), ("r1_c1", "school", 0)
    ]
    assert list(out.columns) == RESULT_COLUMNS and out.crs == "EPSG:4326"
    assert len(out) == 2
    assert out.attrs["zoom"] == 17 and out.attrs["satellite"] == "test-sat" and out.attrs["map"] == "test-map"
    assert out.attrs["attribution"] == "Sat Co; Map Co"
    px_deg = (GRID.lonlat_bounds[2] - GRID.lonlat_bounds[0]) / GRID.width
    out = out.sort_values("area_m2").reset_index(drop=True)
    for (row, ent) in zip(out.itertuples(), entities):
        got = row.geometry.bounds
        exp = _expected_lonlat_box(*ent)
        assert np.allclose(got, exp, atol=px_deg * 1.0), (got, exp)
    straddler = out.iloc[1]
    assert straddler.chip_id == "r0_c0,r0_c1"  # one polygon from two chips
    assert "[r0_c0]" in straddler.reasoning and "[r0_c1]" in straddler.reasoning
    assert out.iloc[0].chip_id == "r0_c0"
    assert out.geometry.is_valid.all()


def test_overlap_and_multiple_queries():
    from sociogeo.reasoner.vlm.base import GenerationConfig

    entities = [(700, 400, 900, 600)]
    vlm = entity_vlm(entities, chip=512, overlap=64)
    r = SocioReasoner(vlm, BoxSegmenter())
    released = GenerationConfig.released(seed=3)
    out = segment(_pair(), ["school", "park"], reasoner=r, chip_size=512, overlap=64, min_area_m2=0,
                  generation=released)
    assert vlm.configs and all(c == released for c in vlm.configs)
    assert sorted(out["query"]) == ["park", "school"]
    assert len(out) == 2


def test_empty_result_has_columns_and_crs():
    r = SocioReasoner(ScriptedVLM(lambda req: "<think>nothing</think><answer>[]</answer>"), BoxSegmenter())
    out = segment(_pair(), "hospital", reasoner=r)
    assert len(out) == 0 and list(out.columns) == RESULT_COLUMNS and out.crs == "EPSG:4326"


def test_resume_skips_finished_chips(tmp_path):
    entities = [(700, 400, 900, 600)]
    vlm = entity_vlm(entities)
    r = SocioReasoner(vlm, BoxSegmenter())
    first = segment(_pair(), "school", reasoner=r, resume_dir=tmp_path, min_area_m2=0)
    calls = len(vlm.calls)
    again = segment(_pair(), "school", reasoner=r, resume_dir=tmp_path, min_area_m2=0)
    assert len(vlm.calls) == calls  # nothing recomputed
    assert again.geometry.iloc[0].equals(first.geometry.iloc[0])
    assert again.reasoning.iloc[0] == first.reasoning.iloc[0]
    # a corrupt part file is set aside and its chips are recomputed, with a warning
    victim = sorted(tmp_path.glob("part-*.parquet"))[0]
    victim.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable result part"):
        third = segment(_pair(), "school", reasoner=r, resume_dir=tmp_path, min_area_m2=0)
    assert len(vlm.calls) > calls and third.geometry.iloc[0].equals(first.geometry.iloc[0])
    assert (tmp_path / (victim.name + ".unreadable")).is_file()
    # a different run refuses the directory
    from sociogeo.errors import ConfigError

    with pytest.raises(ConfigError, match="different run"):
        segment(_pair(), "school", reasoner=r, resume_dir=tmp_path, chip_size=512)


def test_results_say_how_answers_were_read(tmp_path):
    r = SocioReasoner(ScriptedVLM(lambda req: "<think>nothing</think><answer>[]</answer>"), BoxSegmenter())
    assert segment(_pair(), "hospital", reasoner=r).attrs["parse"] == "strict"
    repair = SocioReasoner(ScriptedVLM(lambda req: "<think>nothing</think><answer>[]</answer>"), BoxSegmenter(),
                           parse="repair")
    assert segment(_pair(), "hospital", reasoner=repair, resume_dir=tmp_path).attrs["parse"] == "repair"
    assert json.loads((tmp_path / "manifest.json").read_text())["parse"] == "repair"
    with pytest.raises(ConfigError, match="different run"):  # a resume folder never mixes the two modes
        segment(_pair(), "hospital", reasoner=r, resume_dir=tmp_path)
    with pytest.raises(ConfigError, match="differs from the given reasoner"):
        segment(_pair(), "hospital", reasoner=r, parse="repair")
    assert "parse='repair'" in repr(repair) and "parse" not in repr(r)
