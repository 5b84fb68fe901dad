"""The released two-stage protocol, in one place: what the VLM is asked, what SAM is given.

Inference (:class:`~sociogeo.reasoner.model.SocioReasoner`), GRPO rollouts
(:mod:`sociogeo.train.rollout`) and SFT targets (:mod:`sociogeo.train.sft`) all build their model
inputs here, so the interface the released checkpoint was trained on exists exactly once:

1. :func:`model_images`: both chip images resized to the model's space (``smart_resize``: a
   768-px chip becomes 756 px); every coordinate the VLM reads or writes is in that space.
2. :func:`stage1_request`: the stage-1 prompt with the two images, map first, satellite second.
3. :func:`parse` and :func:`sam_prompts`: the answer read into SAM prompts (a box per item, with
   the item's points as positive clicks).
4. :func:`segment`: SAM on the satellite image's embedding, best of three masks per prompt, OR-ed.
5. :func:`stage2_request`: the stage-1 boxes and mask drawn onto both images, and the stage-2
   prompt quoting the stage-1 answer's own text.
6. :func:`final_mask`: the model-space mask resized back to the chip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..geo import modelspace
from ..imagery.arrays import as_rgb
from .parsing import ParsedAnswer, parse_answer
from .prompts import answer_text, stage1_text, stage2_text
from .render import render_stage2
from .sam.base import ImageEmbedding, Prompt, Segmenter, union
from .vlm.base import VLMRequest


@dataclass
class ModelImages:
    """One sample's two images in the model's space, and the sizes involved (height, width)."""

    map: np.ndarray
    satellite: np.ndarray
    model_size: tuple[int, int]
    image_size: tuple[int, int]


def model_images(map_image, satellite_image) -> ModelImages:
    """Both images (H x W x 3 uint8, same size) resized to the model's space."""
    mp = as_rgb(map_image, "map")
    sat = as_rgb(satellite_image, "satellite")
    if mp.shape != sat.shape:
        raise ValueError(f"map {mp.shape} and satellite {sat.shape} must have the same size")
    size = mp.shape[:2]
    msize = modelspace.model_size(*size)
    return ModelImages(modelspace.resize_image(mp, msize), modelspace.resize_image(sat, msize), msize, size)


def stage1_request(query: str, images: ModelImages) -> VLMRequest:
    """The stage-1 request: find ``query`` with boxes, on the map and the satellite image."""
    return VLMRequest(stage1_text(query), [images.map, images.satellite])


def parse(text: str, images: ModelImages, stage: int) -> ParsedAnswer:
    """An answer read the way SAM prompts and the stage-2 render are made from it."""
    return parse_answer(text, image_size=images.model_size, stage=stage)


def sam_prompts(parsed: ParsedAnswer) -> list[Prompt]:
    """One SAM prompt per answer item: its box and its points (all positive)."""
    return [Prompt(box=item.box, points=tuple(item.points)) for item in parsed.items]


def segment(sam: Segmenter, embedding: ImageEmbedding, parsed: ParsedAnswer, images: ModelImages) -> np.ndarray:
    """The OR of SAM's best mask per prompt, in model space; all zero without prompts."""
    return union(sam.predict(embedding, sam_prompts(parsed)), images.model_size)


def stage2_request(query: str, stage1_response: str, stage1_mask: np.ndarray,
                   boxes: Sequence[Sequence[float]], images: ModelImages) -> VLMRequest:
    """The stage-2 request: ``boxes`` and ``stage1_mask`` drawn onto both images, and the prompt
    quoting the text between the stage-1 response's answer tags (the model's own text).
    """
    rendered = [render_stage2(image, stage1_mask, boxes) for image in (images.map, images.satellite)]
    return VLMRequest(stage2_text(query, answer_text(stage1_response)), rendered)


def final_mask(mask: np.ndarray, images: ModelImages) -> np.ndarray:
    """A model-space mask resized back to the input images' size (nearest neighbour)."""
    return modelspace.resize_image(np.asarray(mask, dtype=bool), images.image_size)


__all__ = ["ModelImages", "final_mask", "model_images", "parse", "sam_prompts", "segment",
           "stage1_request", "stage2_request"]
