"""Scripted stand-ins for unit-testing pipeline logic (never a substitute for the real models).

:class:`ScriptedVLM` answers each request with a function of it; :class:`BoxSegmenter` turns a
box prompt into exactly that box's pixels. Together they make the pipeline's coordinate chain
checkable to the pixel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..reasoner.sam.base import ImageEmbedding, Prompt
from ..reasoner.vlm.base import GenerationConfig, VLMRequest


class ScriptedVLM:
    """A VLM backend whose answer to each request is ``respond(request)``; records every call."""

    name = "scripted-vlm"

    def __init__(self, respond: Callable[[VLMRequest], str]):
        self.respond = respond
        self.calls: list[list[VLMRequest]] = []
        self.configs: list[GenerationConfig | None] = []

    def generate(self, requests: Sequence[VLMRequest], config: GenerationConfig | None = None) -> list[str]:
        """``respond(request)`` for each request, in order; the batch and ``config`` are recorded."""
        self.calls.append(list(requests))
        self.configs.append(config)
        return [self.respond(r) for r in requests]


class BoxSegmenter:
    """A segmenter whose mask for a prompt is the pixels whose centres lie in its box
    (or a disc of ``radius`` pixels around each point when there is no box).
    """

    name = "box-segmenter"

    def __init__(self, radius: float = 3.0):
        self.radius = radius
        self.embedded = 0

    def embed(self, images: Sequence[np.ndarray]) -> list[ImageEmbedding]:
        """Featureless embeddings that only remember each H x W x 3 image's (height, width); counts the images."""
        self.embedded += len(images)
        return [ImageEmbedding(size=tuple(np.asarray(im).shape[:2]), features=None) for im in images]

    def predict(self, embedding: ImageEmbedding, prompts: Sequence[Prompt]) -> np.ndarray:
        """(N, H, W) bool: each prompt's box, or discs around its points when it has no box."""
        h, w = embedding.size
        rows, cols = np.mgrid[0:h, 0:w] + 0.5
        out = np.zeros((len(prompts), h, w), bool)
        for i, p in enumerate(prompts):
            if p.box is not None:
                x1, y1, x2, y2 = p.box
                out[i] = (cols >= x1) & (cols <= x2) & (rows >= y1) & (rows <= y2)
            else:
                for x, y in p.points:
                    out[i] |= (cols - x) ** 2 + (rows - y) ** 2 <= self.radius**2
        return out
