"""The released two-stage protocol, in one place: what the VLM is asked, what SAM is given.

Inference (:class:`~sociogeo.reasoner.model.SocioReasoner`), GRPO rollouts
(:mod:`sociogeo.train.rollout`) and SFT targets (:mod:`sociogeo.train.sft`) all build their model
inputs here, so the interface the released checkpoint was trained on exists exactly once:

1. :func:`model_images`: both chip images resized to the model's space (``smart_resize``: a
   768-px chip becomes 756 px); every coordinate the VLM reads or writes is in that space.
2. :func:`stage1_request`: the stage-1 prompt with the two images, map first, satellite second.
3. :func:`parse` and :func:`sam_prompts`: the answer read into SAM prompts (a box per item, with
   the item's points as positive clicks). By default strictly and unclipped, as the release
   reads answers (``mode="strict"``, :mod:`.strict`); ``mode="repair"`` uses the tolerant parser
   (:mod:`.parsing`) instead.
4. :func:`segment`: SAM on the satellite image's embedding, best of three masks per prompt, OR-ed.
5. :func:`stage2_request`: the stage-1 boxes and mask drawn onto both images, and the stage-2
   prompt quoting the stage-1 answer's own text. The mask takes the release's way there: to the
   chip's size and back, both times with OpenCV-style nearest neighbour
   (:func:`~sociogeo.geo.modelspace.resize_nearest`), which shifts most rows and columns by a pixel.
6. :func:`final_mask`: the model-space mask resized back to the chip (OpenCV-style nearest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..geo import modelspace
from ..imagery.arrays import as_rgb
from .parsing import ParsedAnswer, parse_answer
from .prompts import answer_text, stage1_text, stage2_text
from .render import render_stage2
from .sam.base import ImageEmbedding, Prompt, Segmenter, union
from .strict import parse_strict
from .vlm.base import VLMRequest

#: How answers become SAM prompts: "strict" reads them as the release does (the default),
#: "repair" with sociogeo's tolerant parser (repairs recorded per answer).
PARSE_MODES = ("strict", "repair")


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


def check_parse_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`PARSE_MODES`, else a :class:`~sociogeo.errors.ConfigError`."""
    if mode not in PARSE_MODES:
        raise ConfigError(
            f"parse must be 'strict' (read answers as the released pipeline does) or 'repair' "
            f"(sociogeo's tolerant parser), got {mode!r}"
        )
    return mode


def parse(text: str, images: ModelImages, stage: int, mode: str = "strict") -> ParsedAnswer:
    """An answer read the way SAM prompts and the stage-2 render are made from it.

    ``mode="strict"`` (default): ``json.loads`` of the answer, coordinates as written, a
    malformed answer gives no prompt. ``mode="repair"``: the tolerant parser, boxes clipped to
    the model image, repairs listed in the result's ``flags``.
    """
    if check_parse_mode(mode) == "strict":
        return parse_strict(text, stage=stage)
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

    ``stage1_mask`` is in model space (SAM's output); like the release, it is taken to the chip's
    size and back before it is drawn (:func:`final_mask`, then the render's resize). ``boxes``
    are the boxes to draw, normally the stage-1 answer's ``drawn_boxes``.
    """
    chip_mask = final_mask(stage1_mask, images)
    rendered = [render_stage2(image, chip_mask, boxes) for image in (images.map, images.satellite)]
    return VLMRequest(stage2_text(query, answer_text(stage1_response)), rendered)


def final_mask(mask: np.ndarray, images: ModelImages) -> np.ndarray:
    """A model-space mask resized back to the input images' size, as OpenCV's nearest neighbour
    does it (source index floor(x * 756 / 768) for a 768-px chip), like the release.
    """
    return modelspace.resize_nearest(np.asarray(mask, dtype=bool), images.image_size)


__all__ = ["PARSE_MODES", "ModelImages", "check_parse_mode", "final_mask", "model_images", "parse", "sam_prompts",
           "segment", "stage1_request", "stage2_request"]
