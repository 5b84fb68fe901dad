"""The interface every SAM backend implements.

Like segment-anything's predictor, an image is embedded once (:meth:`Segmenter.embed`) and the
embedding answers many prompts cheaply (:meth:`Segmenter.predict`); the reasoner reuses one
embedding for both stages of a chip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ...errors import ConfigError
from ...imagery.arrays import as_rgb


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
    """A SAM backend: embeds images once, then turns box and point prompts into masks."""

    name: str

    def embed(self, images: Sequence[np.ndarray]) -> list[ImageEmbedding]:
        """Embed H x W x 3 uint8 images (batched where the backend can)."""
        ...

    def predict(self, embedding: ImageEmbedding, prompts: Sequence[Prompt]) -> np.ndarray:
        """One mask per prompt, (N, H, W) bool at the embedded image's size.

        Each prompt is run with multimask output and its highest-scoring mask is kept
        (docs/interface.md, stage 1). No prompts gives an array of shape (0, H, W).
        """
        ...


def union(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OR of (N, H, W) masks; all-zero (H, W) when there are none."""
    if len(masks) == 0:
        return np.zeros(size, dtype=bool)
    return np.any(np.asarray(masks, dtype=bool), axis=0)


# Prompts per decoder call: the decoder copies the image embedding once per prompt
# (256 x 64 x 64 floats, 4 MB at full size), so this bounds memory for long prompt lists.
MAX_PROMPTS_PER_CALL = 64


def check_images(images) -> list[np.ndarray]:
    """``images`` as a list of H x W x 3 uint8 arrays (:func:`~sociogeo.imagery.arrays.as_rgb`)."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise ConfigError("embed() takes a sequence of images; wrap a single image in a list: [image]")
    return [as_rgb(image, f"SAM input {i}") for i, image in enumerate(images)]


def prompt_groups(prompts: Sequence[Prompt], max_per_call: int = MAX_PROMPTS_PER_CALL) -> list[list[int]]:
    """Indexes of ``prompts`` grouped by layout (box or not, number of points), in first-seen order.

    Prompts of one layout stack into one decoder call without padding, so each mask equals the
    one a call with that prompt alone gives (padding tokens would change the attention). Groups
    longer than ``max_per_call`` are split.
    """
    groups: dict[tuple[bool, int], list[int]] = {}
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, Prompt):
            raise ConfigError(
                f"prompt {index} is a {type(prompt).__name__}; pass sociogeo.reasoner.sam.Prompt(box=..., points=...)"
            )
        groups.setdefault((prompt.box is not None, len(prompt.points)), []).append(index)
    return [
        indexes[start : start + max_per_call]
        for indexes in groups.values()
        for start in range(0, len(indexes), max_per_call)
    ]
