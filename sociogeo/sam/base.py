"""The interface every SAM backend implements.

Like segment-anything's predictor, an image is embedded once (:meth:`Segmenter.embed`) and the
embedding answers many prompts cheaply (:meth:`Segmenter.predict`); the reasoner reuses one
embedding for both stages of a chip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Prompt:
    """One SAM prompt in pixel coordinates of the embedded image.

    ``box`` is (x1, y1, x2, y2); ``points`` are (x, y) positive clicks (label 1). Either may be
    absent, not both.
    """

    box: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, float], ...] = ()

    def __post_init__(self):
        if self.box is None and not self.points:
            raise ValueError("a SAM prompt needs a box or at least one point")


@dataclass
class ImageEmbedding:
    """An embedded image: backend-specific features plus the image's (height, width)."""

    size: tuple[int, int]
    features: Any = field(repr=False)


@runtime_checkable
class Segmenter(Protocol):
    name: str

    def embed(self, images: Sequence[np.ndarray]) -> list[ImageEmbedding]:
        """Embed H x W x 3 uint8 images (batched where the backend can)."""
        ...

    def predict(self, embedding: ImageEmbedding, prompts: Sequence[Prompt]) -> np.ndarray:
        """One mask per prompt, (N, H, W) bool at the embedded image's size.

        Each prompt is run with multimask output and its highest-scoring mask is kept
        (spec section 3.4). No prompts gives an array of shape (0, H, W).
        """
        ...


def union(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OR of (N, H, W) masks; all-zero (H, W) when there are none."""
    if len(masks) == 0:
        return np.zeros(size, dtype=bool)
    return np.any(np.asarray(masks, dtype=bool), axis=0)


def load_sam(spec, **kwargs) -> Segmenter:
    """A backend from ``spec``: an existing segmenter; a SAM v1 checkpoint file (``.pth``/``.pt``);
    or a hub id / local folder of a transformers SAM 2 model."""
    if isinstance(spec, Segmenter):
        return spec
    text = str(spec)
    if text.endswith((".pth", ".pt")) or text in {"vit_h", "vit_l", "vit_b"}:
        from .sam1 import Sam1Segmenter

        return Sam1Segmenter.from_checkpoint(text, **kwargs)
    from .sam2_hf import Sam2Segmenter

    return Sam2Segmenter.from_pretrained(text, **kwargs)
