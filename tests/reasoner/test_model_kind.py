"""Honest labels (issue 13, class 6): a model folder says what it is, and stays labelled when loaded.

Real tiny models are built by ``sociogeo.testing`` and loaded through the real ``from_pretrained``;
the kind must come from the folders, not from a ``trained=`` flag the caller may forget.
"""

from __future__ import annotations

import json
import shutil

import pytest

from sociogeo import defaults
from sociogeo.reasoner.kind import NOTICES, RECORD, read_kind, reasoner_kind, write_kind

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from sociogeo.testing import make_tiny_models

    root = tmp_path_factory.mktemp("kinds")
    return {"sam2": make_tiny_models(root / "a", sam="sam2"), "sam1": make_tiny_models(root / "b", sam="sam1")}


@pytest.mark.parametrize("sam", ["sam2", "sam1"])
def test_tiny_models_loaded_from_folders_stay_untrained(tiny, sam):
    from sociogeo.reasoner import SocioReasoner
    from sociogeo.reasoner.model import ReasonerSpec

    models = tiny[sam]
    assert read_kind(models.vlm) == "untrained" and read_kind(models.sam) == "untrained"
    reasoner = SocioReasoner.from_pretrained(str(models.vlm), str(models.sam), device="cpu", offline=True)
    assert reasoner.model_kind == "untrained" and reasoner.trained is False
    assert reasoner.model_notice == NOTICES["untrained"] and "untrained" in repr(reasoner)
    # trained=True cannot make a recorded untrained model look trained; the spec reloads it the same
    again = ReasonerSpec(str(models.vlm), str(models.sam), device="cpu", offline=True).load()
    assert again.model_kind == "untrained"


def test_the_shipped_demo_model_says_demo():
    from sociogeo.reasoner import SocioReasoner
    from sociogeo.testing.demo_model import demo_model

    model = demo_model()
    reasoner = SocioReasoner.from_pretrained(model.vlm, model.sam, device="cpu", offline=True)
    assert reasoner.model_kind == "demo" and reasoner.trained
    assert reasoner.model_notice == "demo model trained on a synthetic stand-in of the sample area"
    assert "demo" in repr(reasoner)
    assert SocioReasoner.from_pretrained(model.vlm, model.sam, device="cpu", offline=True,
                                         trained=False).model_kind == "untrained"


def test_kinds_without_records(tiny, tmp_path):
    # a copy of a tiny model without its record is someone's own model, not the release
    vlm = tmp_path / "mine"
    shutil.copytree(tiny["sam2"].vlm, vlm)
    (vlm / RECORD).unlink()
    assert read_kind(vlm) is None
    assert reasoner_kind(str(vlm), "facebook/sam2-hiera-large") == "custom"
    assert reasoner_kind(defaults.VLM, defaults.SAM) == "released"
    assert reasoner_kind("http://127.0.0.1:8000/v1", defaults.SAM) == "custom"
    # the least trustworthy record wins, whichever model holds it
    assert reasoner_kind(str(vlm), str(tiny["sam2"].sam)) == "untrained"
    assert reasoner_kind(defaults.VLM, defaults.SAM, trained=False) == "untrained"


def test_damaged_records_count_as_none(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for text in ("{not json", json.dumps(["demo"]), json.dumps({"model_kind": "excellent"}), "x" * 70_000):
        (folder / RECORD).write_text(text, encoding="utf-8")
        assert read_kind(folder) is None
    assert write_kind(folder, "demo").name == RECORD and read_kind(folder) == "demo"
    with pytest.raises(ValueError, match="model_kind"):
        write_kind(folder, "excellent")
    checkpoint = tmp_path / "sam.pth"
    checkpoint.write_bytes(b"0")
    write_kind(checkpoint, "untrained")
    assert (tmp_path / "sam.pth.sociogeo.json").is_file() and read_kind(checkpoint) == "untrained"
