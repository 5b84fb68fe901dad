"""Scripted stand-ins for unit-testing pipeline logic (never a substitute for the real models).

:class:`ScriptedVLM` answers each request with a function of it; :class:`BoxSegmenter` turns a
box prompt into exactly that box's pixels. Together they make the pipeline's coordinate chain
checkable to the pixel. :class:`BlobVLM` and :class:`BrightnessSegmenter` look at the pixels
(bright or dark blobs), so their answers change when the imagery does: they check that streamed,
distributed and in-memory runs see the same images. All of them pickle, so Ray actors can run them.
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


def _bright(image: np.ndarray, level: float) -> np.ndarray:
    return np.asarray(image, dtype=np.float32).mean(axis=-1) > level


class BlobVLM:
    """A VLM stand-in that looks at the image: stage 1 answers the boxes of the blobs of the image
    brighter than ``level`` (darker with ``dark=True``) in the ``layer`` it reads (1 satellite, 0
    map); stage 2 answers the boxes it was shown, each with its centre as a point. ``delay_s``
    seconds of sleep per request make runs last long enough to interrupt.
    """

    name = "blob-vlm"

    def __init__(self, level: float, *, layer: int = 1, dark: bool = False, delay_s: float = 0.0):
        self.level, self.layer, self.dark, self.delay_s = level, layer, dark, delay_s

    def generate(self, requests: Sequence[VLMRequest], config: GenerationConfig | None = None) -> list[str]:
        """One answer per request (see the class docstring)."""
        import time

        if self.delay_s:
            time.sleep(self.delay_s * len(requests))
        return [self.respond(r) for r in requests]

    def respond(self, request: VLMRequest) -> str:
        """The answer to one request."""
        import json
        import re

        from scipy import ndimage

        if "Please add some points" in request.text:
            shown = re.search(r"The found bbox\(s\) are: (.*)\.Please add", request.text, re.S)
            boxes = json.loads(shown.group(1) or "[]") if shown else []
            items = [{"bbox_2d": b["bbox_2d"], "points": [[(b["bbox_2d"][0] + b["bbox_2d"][2]) / 2,
                                                          (b["bbox_2d"][1] + b["bbox_2d"][3]) / 2]]}
                     for b in boxes]
            return f"<think>points for {len(items)} boxes</think><answer>{json.dumps(items)}</answer>"
        blobs = _bright(request.images[self.layer], self.level)
        labels, _ = ndimage.label(~blobs if self.dark else blobs, structure=np.ones((3, 3), bool))
        items = [{"bbox_2d": [cols.start, rows.start, cols.stop, rows.stop]}
                 for rows, cols in ndimage.find_objects(labels)]
        return f"<think>{len(items)} blobs</think><answer>{json.dumps(items)}</answer>"


class BrightnessSegmenter:
    """A SAM stand-in: the pixels in the prompt's box brighter than ``level`` (irregular shapes)."""

    name = "brightness-segmenter"

    def __init__(self, level: float):
        self.level = level

    def embed(self, images: Sequence[np.ndarray]) -> list[ImageEmbedding]:
        """Each H x W x 3 image's bright pixels, as its 'embedding'."""
        return [ImageEmbedding(size=tuple(np.asarray(im).shape[:2]), features=_bright(im, self.level)) for im in images]

    def predict(self, embedding: ImageEmbedding, prompts: Sequence[Prompt]) -> np.ndarray:
        """(N, H, W) bool: the bright pixels inside each prompt's box."""
        h, w = embedding.size
        rows, cols = np.mgrid[0:h, 0:w] + 0.5
        out = np.zeros((len(prompts), h, w), bool)
        for i, p in enumerate(prompts):
            x1, y1, x2, y2 = p.box
            out[i] = embedding.features & (cols >= x1) & (cols <= x2) & (rows >= y1) & (rows <= y2)
        return out
