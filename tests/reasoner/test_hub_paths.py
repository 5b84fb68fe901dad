"""A path-like model argument that does not exist is a missing folder, not a hub lookup; an
unreachable hub model fails in the probe, before any loader retries."""

from __future__ import annotations

import pytest

from sociogeo.errors import ModelNotFoundError
from sociogeo.reasoner.hub import is_hub_id, looks_local


def test_paths_and_hub_ids_are_told_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert is_hub_id("vvangfaye/SocioReasoner-3B") and is_hub_id("Qwen/Qwen2.5-VL-3B-Instruct")
    for local in ("models/vlm", "./vlm", "../vlm", "/abs/vlm", "~/vlm", "a/b/c", tmp_path / "x"):
        assert looks_local(local) and not is_hub_id(local), local
    assert not looks_local("http://127.0.0.1:8000")


def test_a_missing_local_model_folder_is_reported_as_such(tmp_path, monkeypatch):
    from sociogeo.reasoner.model import SocioReasoner

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    monkeypatch.setattr("huggingface_hub.HfApi.model_info",
                        lambda *a, **k: pytest.fail("a local path must not be looked up on the hub"))
    with pytest.raises(ModelNotFoundError, match="models/vlm.*does not exist"):
        SocioReasoner.from_pretrained("models/vlm", "models/sam", device="cpu")


def test_training_an_unreachable_hub_model_fails_in_the_probe(tmp_path, monkeypatch):
    from sociogeo.reasoner.vlm.transformers_backend import TransformersVLM
    from sociogeo.train.config import load_config
    from sociogeo.train.policy import load_policy

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(TransformersVLM, "from_pretrained",
                        classmethod(lambda *a, **k: pytest.fail("the loader must not be reached")))
    cfg = load_config("sft", model="nobody-sociogeo-test/not-a-model", output_dir=str(tmp_path / "out"))
    with pytest.raises(ModelNotFoundError, match="nobody-sociogeo-test/not-a-model.*offline"):
        load_policy(cfg, need_reference=False)
