"""What kind of model a reasoner runs, so every output can say so.

A model folder may hold a small record, ``sociogeo.json``: ``{"model_kind": ..., "notice": ...}``
(for a single-file checkpoint such as a SAM v1 ``.pth``, the record sits beside it as
``<file>.sociogeo.json``). sociogeo writes one into every model it builds that is not a real
model: the tiny random models of :mod:`sociogeo.testing` (``"untrained"``) and the shipped demo
model (``"demo"``). The kinds:

- ``"released"``: the authors' released checkpoint (the default hub id, no record);
- ``"demo"``: the demo model shipped with sociogeo, trained on a synthetic stand-in;
- ``"untrained"``: random weights, outputs mean nothing;
- ``"custom"``: anything else (your own fine-tune, another server).

The record travels with the folder, so a model stays labelled for what it is wherever it is
loaded from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .. import defaults

RECORD = "sociogeo.json"
KINDS = ("released", "demo", "untrained", "custom")
NOTICES = {
    "demo": "demo model trained on a synthetic stand-in of the sample area",
    "untrained": "UNTRAINED models (random weights): the results are not meaningful",
}
_MAX_RECORD_BYTES = 64 * 1024


def record_path(model) -> Path | None:
    """Where the record of ``model`` (a folder or a checkpoint file) is, or None for hub ids and URLs."""
    if not isinstance(model, (str, os.PathLike)):
        return None
    path = Path(model)
    if path.is_dir():
        return path / RECORD
    if path.is_file():
        return path.with_name(path.name + ".sociogeo.json")
    return None


def read_kind(model) -> str | None:
    """The ``model_kind`` recorded for ``model`` (a folder or checkpoint file), or None.

    A record that cannot be read or names no known kind counts as no record.
    """
    path = record_path(model)
    if path is None or not path.is_file() or path.stat().st_size > _MAX_RECORD_BYTES:
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kind = record.get("model_kind") if isinstance(record, dict) else None
    return kind if kind in KINDS else None


def write_kind(model, kind: str, notice: str | None = None) -> Path:
    """Record ``kind`` for ``model`` (a folder or checkpoint file); returns the record's path."""
    if kind not in KINDS:
        raise ValueError(f"model_kind must be one of {', '.join(KINDS)}, got {kind!r}")
    path = record_path(model)
    if path is None:
        raise FileNotFoundError(f"no model folder or checkpoint at {model}")
    record = {"model_kind": kind, "notice": notice if notice is not None else NOTICES.get(kind, "")}
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return path


def reasoner_kind(vlm, sam, trained: bool | None = None) -> str:
    """The kind of a reasoner made of ``vlm`` and ``sam`` (names, paths or backends).

    ``trained=False`` says untrained whatever the folders record; otherwise the least trustworthy
    recorded kind wins (untrained, then demo); without records, the released hub ids are
    "released" and anything else "custom".
    """
    if trained is False:
        return "untrained"
    models = [_where(m) for m in (vlm if isinstance(vlm, (list, tuple)) else [vlm])]
    sam = _where(sam)
    recorded = {read_kind(m) for m in [*models, sam]}
    for kind in ("untrained", "demo"):
        if kind in recorded:
            return kind
    if models == [defaults.VLM] and str(sam) == defaults.SAM:
        return "released"
    return "custom"


def _where(model):
    """A backend's ``name`` (the folder it was loaded from), or ``model`` itself."""
    return model if isinstance(model, (str, os.PathLike)) else getattr(model, "name", model)


__all__ = ["KINDS", "NOTICES", "RECORD", "read_kind", "reasoner_kind", "record_path", "write_kind"]
