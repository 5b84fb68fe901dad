import csv
import json
import re

import numpy as np
import pytest

from sociogeo.datasets.socioseg import Sample
from sociogeo.reasoner import SocioReasoner
from sociogeo.testing.scripted import BoxSegmenter, ScriptedVLM
from sociogeo.train.evaluate import evaluate

S = 56  # the model's space equals the image size, so boxes are pixels


def _rect(r0, r1, c0, c1):
    m = np.zeros((S, S), bool)
    m[r0:r1, c0:c1] = True
    return m


CASES = [  # (query, level, gt mask, predicted boxes)
    ("q1", "class", _rect(0, 10, 0, 10), [[0, 0, 10, 10]]),
    ("q2", "class", _rect(0, 10, 0, 20), [[0, 0, 10, 10]]),
    ("q3", "name", _rect(20, 30, 20, 30) | _rect(40, 50, 40, 50), [[20, 20, 30, 30]]),
    ("q4", "function", np.zeros((S, S), bool), []),
    ("q5", "function", _rect(0, 10, 0, 10), [[30, 30, 40, 40]]),
]


def _reasoner():
    boxes = {q: b for q, _, _, b in CASES}

    def respond(req):
        q = re.search(r"find '(.*?)'|for \"(.*?)\"", req.text)
        q = q.group(1) or q.group(2)
        items = [{"bbox_2d": b} for b in boxes[q]]
        if "Please find" not in req.text:
            items = [{"bbox_2d": b, "points": [[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]]} for b in boxes[q]]
        return f"<think>{q}</think><answer>{json.dumps(items)}</answer>"

    return SocioReasoner(ScriptedVLM(respond), BoxSegmenter())


def test_scores_are_hand_checked(tmp_path):
    rng = np.random.default_rng(0)
    samples = [Sample(f"id{i}", q, rng.integers(0, 255, (S, S, 3), dtype=np.uint8),
                      rng.integers(0, 255, (S, S, 3), dtype=np.uint8), m, lvl)
               for i, (q, lvl, m, _) in enumerate(CASES)]
    ev = evaluate(_reasoner(), samples, batch_size=2, csv_path=tmp_path / "r.csv")
    s = ev.scores
    assert s["all"].giou == pytest.approx((1 + 0.5 + 0.5 + 1 + 0) / 5)
    assert s["all"].ciou == pytest.approx(300 / 700)
    assert (s["all"].tp, s["all"].fp, s["all"].fn) == (3, 1, 2)
    assert s["all"].f1 == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert s["class"].giou == pytest.approx(0.75) and s["class"].ciou == pytest.approx(200 / 300) and s["class"].f1 == 1
    assert s["name"].giou == pytest.approx(0.5) and s["name"].f1 == pytest.approx(2 / 3)
    assert s["function"].ciou == 0 and s["function"].f1 == 0
    # per-sample CSV, written as the run goes
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert [r["id"] for r in rows] == [f"id{i}" for i in range(5)]
    assert [float(r["iou"]) for r in rows] == pytest.approx([1, 0.5, 0.5, 1, 0])
    assert rows[2]["fn"] == "1" and rows[4]["fp"] == "1"
    table = ev.table()
    assert "SocioReasoner (paper)" in table and "47.9" in table and "(n=5)" in table
    assert "60.0" in table  # our overall gIoU in %
    frame = ev.to_frame()
    assert len(frame) == 5 and frame["iou"].mean() == pytest.approx(0.6)


def test_limit_and_iterables():
    rng = np.random.default_rng(1)
    samples = (Sample(f"id{i}", q, rng.integers(0, 255, (S, S, 3), dtype=np.uint8),
                      rng.integers(0, 255, (S, S, 3), dtype=np.uint8), m, lvl)
               for i, (q, lvl, m, _) in enumerate(CASES))
    ev = evaluate(_reasoner(), samples, limit=2)
    assert len(ev.records) == 2 and ev.scores["all"].n == 2


def test_evaluate_command_with_tiny_models(tmp_path, capsys):
    """`sociogeo evaluate` end to end: real tiny models, a raw SocioSeg folder, CSV + Table 1."""
    pytest.importorskip("torch")
    from sociogeo.cli import main
    from sociogeo.datasets.socioseg import write_raw
    from sociogeo.testing import make_tiny_models

    rng = np.random.default_rng(2)
    samples = [Sample(f"t{i}", q, rng.integers(0, 255, (112, 112, 3), dtype=np.uint8),
                      rng.integers(0, 255, (112, 112, 3), dtype=np.uint8),
                      _rect(10, 40, 10, 50)[:56, :56].repeat(2, 0).repeat(2, 1))
               for i, q in enumerate(["park", "Educational", "Kaisaniemi"])]
    write_raw(samples, tmp_path / "data", "test")
    models = make_tiny_models(tmp_path / "models")
    csv_path = tmp_path / "out" / "eval.csv"
    code = main(["--quiet", "evaluate", "--data", str(tmp_path / "data"), "--split", "test", "--vlm", str(models.vlm),
                 "--sam", str(models.sam), "--csv", str(csv_path), "--offline", "--max-new-tokens", "16"])
    assert code == 0
    rows = list(csv.DictReader(open(csv_path)))
    assert [r["id"] for r in rows] == ["t0", "t1", "t2"]
    assert [r["level"] for r in rows] == ["class", "function", "name"]
    out = capsys.readouterr().out
    assert "SocioReasoner (paper)" in out and "(n=3)" in out and "tiny-qwen2.5-vl" in out
