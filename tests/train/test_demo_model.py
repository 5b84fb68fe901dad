"""The shipped demo model (``sociogeo/data/demo_model``) and the recipe that trains it
(``scripts/train_demo_model.py``): the model reproduces its recorded held-out score, and a shortened
recipe on the same data makes an untrained model localise parks better than it did.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("pyrosm")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_demo_model.py"


@pytest.fixture(scope="module")
def recipe():
    if not SCRIPT.is_file():
        pytest.skip("scripts/ is not part of an installed package; run from a source checkout")
    spec = importlib.util.spec_from_file_location("train_demo_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def held_out(recipe, tmp_path_factory):
    folder = recipe.build_split(tmp_path_factory.mktemp("demo-data"), "held_out")
    return recipe.park_samples(folder)


def test_shipped_folder_is_a_demo_model_with_a_card():
    from sociogeo.testing.demo_model import NOTICE, demo_model, model_kind

    model = demo_model()
    assert model_kind(model.vlm) == "demo" and model_kind(model.sam) == "demo"
    card = (model.vlm.parent / "MODEL_CARD.md").read_text(encoding="utf-8").lower()
    assert "not the released" in card and NOTICE in card
    assert model.info["model_kind"] == "demo" and model.info["chip_size"] == 224
    assert list(model.vlm.glob("*.safetensors")) and list(model.sam.glob("*.safetensors"))
    size = sum(p.stat().st_size for p in model.vlm.parent.rglob("*") if p.is_file())
    assert size < 20e6  # a few MB, shipped inside the package


@pytest.mark.slow
def test_shipped_model_reproduces_its_held_out_score(recipe, held_out):
    from sociogeo.testing.demo_model import demo_model

    model = demo_model()
    recorded = model.info["held_out"]["after SFT + GRPO (demo model)"]
    scores = recipe.evaluate_model(model.vlm, model.sam, held_out)
    assert scores["n"] == recorded["n"]
    assert scores["giou"] == pytest.approx(recorded["giou"], abs=0.02)
    assert scores["ciou"] == pytest.approx(recorded["ciou"], abs=0.02)


@pytest.mark.slow
def test_shortened_recipe_improves_held_out_iou(recipe, tmp_path):
    """SFT (a few dozen steps) then GRPO (one step) from a random start, with the shipped SAM."""
    result = recipe.run_recipe(tmp_path, recipe.Settings.ci())
    rows = result["rows"]
    start, trained = rows["untrained start (same SAM)"], rows[result["final_row"]]
    assert trained["giou"] > start["giou"] + 0.05
    assert trained["ciou"] > start["ciou"]
    assert (tmp_path / "sft" / "final" / "config.json").is_file()
    json.dumps(rows)  # the table is plain data
