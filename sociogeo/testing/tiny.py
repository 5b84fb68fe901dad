"""Tiny, randomly initialised models that load through the same code as the real ones."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple


class TinyModels(NamedTuple):
    """Paths of a tiny VLM folder and a tiny SAM (a SAM 2 folder, or a SAM v1 ``.pth``)."""

    vlm: Path
    sam: Path


def make_tiny_models(directory, *, seed: int = 0, sam: str = "sam2") -> TinyModels:
    """Create (offline) a tiny Qwen2.5-VL and a tiny SAM under ``directory``; reuse them if present.

    ``sam`` is ``"sam2"`` (transformers SAM 2 folder) or ``"sam1"`` (segment-anything checkpoint).
    Pass the paths to :meth:`sociogeo.SocioReasoner.from_pretrained`. The models are untrained:
    useful for tests, smoke runs and demos of the pipeline, not for results.
    """
    from .._runtime import loading_progress
    from .tiny_sam import make_tiny_sam1, make_tiny_sam2
    from .tiny_vlm import make_tiny_vlm

    if sam not in ("sam2", "sam1"):
        raise ValueError(f"sam must be 'sam2' or 'sam1', got {sam!r}")
    root = Path(directory)
    vlm_dir = root / "tiny-qwen2.5-vl"
    sam_path = root / ("tiny-sam2" if sam == "sam2" else "tiny-sam1.pth")
    with loading_progress():  # transformers' "Writing model shards" bars follow sociogeo.options.progress
        if not (vlm_dir / "config.json").exists():
            make_tiny_vlm(vlm_dir, seed=seed)
        if sam == "sam2" and not (sam_path / "config.json").exists():
            make_tiny_sam2(sam_path, seed=seed)
        if sam == "sam1" and not sam_path.exists():
            make_tiny_sam1(sam_path, seed=seed)
    return TinyModels(vlm_dir, sam_path)
