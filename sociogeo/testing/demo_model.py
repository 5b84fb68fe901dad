"""The demo model shipped with sociogeo: a small Qwen2.5-VL and a small SAM 2 that learned to find
parks on the SYNTHETIC land-cover stand-in of central Helsinki.

It was trained by ``scripts/train_demo_model.py`` through sociogeo's own ``build-dataset`` -> SFT ->
GRPO -> ``evaluate`` path; ``sociogeo/data/demo_model/MODEL_CARD.md`` says how and how well. It is
not the released SocioReasoner and means nothing on real imagery: every output it makes says
:data:`NOTICE`. Both folders load through ``from_pretrained`` like any other model.

Each model folder holds a ``sociogeo.json`` file ``{"model_kind": "demo", "notice": ...}``;
:func:`model_kind` reads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from ..errors import ModelNotFoundError
from ..reasoner.kind import NOTICES, RECORD, read_kind

DEMO_MODEL_DIR = Path(__file__).resolve().parent.parent / "data" / "demo_model"
NOTICE = NOTICES["demo"]
KIND_FILE = RECORD


class DemoModel(NamedTuple):
    """The shipped demo model: its VLM and SAM folders and its record (``scores.json``: held-out
    scores, chip size, zoom, query, the command that trained it).
    """

    vlm: Path
    sam: Path
    info: dict

    @property
    def chip_size(self) -> int:
        """The chip side (pixels) the model was trained on; run it on chips of that size."""
        return int(self.info["chip_size"])

    @property
    def max_new_tokens(self) -> int:
        """A token budget that fits the model's longest answers."""
        return int(self.info["max_new_tokens"])


def demo_model(directory=DEMO_MODEL_DIR) -> DemoModel:
    """The shipped demo model (a :class:`DemoModel`); a ModelNotFoundError if it is not there."""
    directory = Path(directory)
    vlm, sam, scores = directory / "vlm", directory / "sam", directory / "scores.json"
    if not (vlm / "config.json").is_file() or not (sam / "config.json").is_file() or not scores.is_file():
        raise ModelNotFoundError(
            f"the demo model is missing from {directory}; reinstall sociogeo, or rebuild it with "
            "`python scripts/train_demo_model.py --ship`"
        )
    return DemoModel(vlm, sam, json.loads(scores.read_text(encoding="utf-8")))


def model_kind(folder) -> str | None:
    """The ``model_kind`` recorded in a model folder's ``sociogeo.json`` ("demo" for the demo
    model), or None when the folder records none.
    """
    return read_kind(folder)


__all__ = ["DEMO_MODEL_DIR", "NOTICE", "DemoModel", "demo_model", "model_kind"]
