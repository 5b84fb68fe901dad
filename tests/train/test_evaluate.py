import csv
import json
import re

import numpy as np
import pytest

from sociogeo.datasets.socioseg import Sample
from sociogeo.errors import ConfigError
from sociogeo.reasoner import SocioReasoner
from sociogeo.reasoner.vlm.base import GenerationConfig
from sociogeo.testing.scripted import BoxSegmenter, ScriptedVLM
from sociogeo.train.evaluate import F1_DEFINITION, evaluate, evaluate_seeds

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
    # the paper's protocol by default: the release's sampling, seeded, the seed recorded
    assert ev.generation == GenerationConfig.released(seed=0) and ev.seed == 0 and ev.parse == "strict"
    assert "Decoding: the release's sampling: temperature 1.0, top-p 0.8, top-k 100, repetition penalty 1.0" in table
    assert "seed 0 (the paper's protocol)" in table and F1_DEFINITION in table
    assert "Levels: 5 not recorded." in table  # these samples carry no level source
    assert [r["seed"] for r in rows] == ["0"] * 5
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
    # the paper's protocol by default, and what the numbers mean
    assert "the release's sampling" in out and "seed 0 (the paper's protocol)" in out
    assert "F1 is sociogeo's definition" in out and "3 guessed from the query" in out
    assert [r["seed"] for r in rows] == ["0", "0", "0"]


def _samples(seed=0):
    rng = np.random.default_rng(seed)
    return [Sample(f"id{i}", q, rng.integers(0, 255, (S, S, 3), dtype=np.uint8),
                   rng.integers(0, 255, (S, S, 3), dtype=np.uint8), m, lvl, "dataset")
            for i, (q, lvl, m, _) in enumerate(CASES)]


def test_decoding_is_the_papers_unless_asked_and_reaches_the_model():
    reasoner = _reasoner()
    ev = evaluate(reasoner, _samples(), seed=7)
    assert set(reasoner.vlm.configs) == {GenerationConfig.released(seed=7)}
    assert ev.seed == 7 and "seed 7 (the paper's protocol)" in ev.table()
    assert "Levels: 5 from the dataset's level column." in ev.table()
    greedy = evaluate(_reasoner(), _samples(), greedy=True)
    assert greedy.generation == GenerationConfig.greedy() and greedy.seed is None
    assert "greedy decoding" in greedy.table() and "(not the paper's protocol)" in greedy.table()
    assert {r["seed"] for r in greedy.records} == {""}
    own = GenerationConfig(do_sample=True, top_p=0.9, seed=1)
    assert evaluate(_reasoner(), _samples(), generation=own).generation == own
    with pytest.raises(ConfigError, match="not both"):
        evaluate(_reasoner(), _samples(), generation=own, greedy=True)


class SeedDependentVLM:
    """Answers a box whose width depends on the decoding seed, so runs differ by seed."""

    name = "seed-vlm"

    def __init__(self):
        self.configs = []

    def generate(self, requests, config=None):
        self.configs.append(config)
        width = 10 + 10 * (config.seed % 3)  # seed 0: 10 px, 1: 20 px, 2: 30 px
        items = [{"bbox_2d": [0, 0, width, 10]}]
        return [f"<think>s</think><answer>{json.dumps(items)}</answer>"] * len(requests)


def test_several_seeds_give_every_run_their_mean_and_spread(tmp_path):
    truth = _rect(0, 10, 0, 20)  # 200 px: IoU 0.5, 1.0 and 2/3 for the three widths
    rng = np.random.default_rng(3)
    samples = [Sample(f"s{i}", "park", rng.integers(0, 255, (S, S, 3), dtype=np.uint8),
                      rng.integers(0, 255, (S, S, 3), dtype=np.uint8), truth, "class", "query") for i in range(2)]
    vlm = SeedDependentVLM()
    result = evaluate_seeds(SocioReasoner(vlm, BoxSegmenter()), samples, seeds=3, csv_path=tmp_path / "s.csv")
    assert result.seeds == [0, 1, 2]
    assert {c.seed for c in vlm.configs} == {0, 1, 2} and all(c.is_released for c in vlm.configs)
    ious = [0.5, 1.0, 2 / 3]
    summary = result.summary()
    assert summary.loc["all", "giou_mean"] == pytest.approx(np.mean(ious))
    assert summary.loc["all", "giou_std"] == pytest.approx(np.std(ious, ddof=1))
    assert summary.loc["class", "giou_min"] == pytest.approx(0.5) and summary.loc["class", "giou_max"] == 1.0
    assert np.isnan(summary.loc["name", "giou_mean"]) and np.isnan(summary.loc["name", "giou_std"])  # no sample
    single = evaluate_seeds(SocioReasoner(SeedDependentVLM(), BoxSegmenter()), samples, seeds=[3]).summary()
    assert single.loc["all", "giou_std"] == 0.0 and single.loc["all", "giou_mean"] == pytest.approx(0.5)
    table = result.table()
    for line in ("seed 0 (n=2)", "seed 2 (n=2)", "mean of 3", "std of 3", "seeds 0, 1, 2 (the paper's protocol)",
                 "2 guessed from the query", F1_DEFINITION):
        assert line in table, line
    assert f"{100 * np.mean(ious):.1f}" in table
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert [r["seed"] for r in rows] == ["0", "0", "1", "1", "2", "2"]
    listed = evaluate_seeds(SocioReasoner(SeedDependentVLM(), BoxSegmenter()), samples, seeds=[5, 9])
    assert listed.seeds == [5, 9]
    with pytest.raises(ConfigError, match="pass a sequence"):
        evaluate_seeds(SocioReasoner(vlm, BoxSegmenter()), iter(samples), seeds=2)
    with pytest.raises(ConfigError, match="seeds must differ"):
        evaluate_seeds(SocioReasoner(vlm, BoxSegmenter()), samples, seeds=[1, 1])


def test_evaluate_command_seeds_greedy_and_flags(tmp_path, capsys):
    """`sociogeo evaluate --seeds 2`, `--greedy`, `--parse repair`, `--level-column` with real tiny models."""
    pytest.importorskip("torch")
    from sociogeo.cli import main
    from sociogeo.datasets.socioseg import write_raw
    from sociogeo.testing import make_tiny_models

    rng = np.random.default_rng(4)
    samples = [Sample(f"t{i}", q, rng.integers(0, 255, (112, 112, 3), dtype=np.uint8),
                      rng.integers(0, 255, (112, 112, 3), dtype=np.uint8),
                      _rect(10, 40, 10, 50)[:56, :56].repeat(2, 0).repeat(2, 1), level)
               for i, (q, level) in enumerate([("park", "name"), ("Kaisaniemi", None)])]
    write_raw(samples, tmp_path / "data", "test")
    models = make_tiny_models(tmp_path / "models")
    common = ["--quiet", "evaluate", "--data", str(tmp_path / "data"), "--vlm", str(models.vlm), "--sam",
              str(models.sam), "--offline", "--max-new-tokens", "8"]
    assert main([*common, "--seeds", "2", "--seed", "10", "--parse", "repair", "--csv", str(tmp_path / "a.csv")]) == 0
    out = capsys.readouterr().out
    assert "seed 10 (n=2)" in out and "seed 11 (n=2)" in out and "mean of 2" in out and "std of 2" in out
    assert "seeds 10, 11 (the paper's protocol)" in out and "parse='repair'" in out
    assert "1 from the dataset's level column; 1 guessed from the query" in out
    rows = list(csv.DictReader(open(tmp_path / "a.csv")))
    assert [(r["seed"], r["level"], r["level_source"]) for r in rows] == [
        ("10", "name", "dataset"), ("10", "name", "query"), ("11", "name", "dataset"), ("11", "name", "query")]
    assert main([*common, "--greedy", "--level-column", "none", "--csv", str(tmp_path / "b.csv")]) == 0
    out = capsys.readouterr().out
    assert "greedy decoding" in out and "(not the paper's protocol)" in out
    assert "2 guessed from the query" in out
    with pytest.raises(SystemExit):
        main([*common, "--greedy", "--seeds", "2"])
    with pytest.raises(SystemExit):
        main([*common, "--seeds", "0"])
