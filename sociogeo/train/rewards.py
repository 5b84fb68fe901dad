r"""Training rewards of SocioReasoner's two stages, as released (default) or as in the paper.

Every reward scores what the model actually wrote: answers are parsed strictly (``json.loads`` of
the text between the first ``<answer>`` and ``</answer>``), never with sociogeo's tolerant answer
parser. Coordinates are absolute pixels of the model's 756 x 756 space; masks are H x W arrays in
which any nonzero pixel is foreground.

Stage 1 (boxes), K predicted boxes against J ground-truth boxes taken from the mask by
:func:`gt_boxes`:

- ``format``: 1 if the whole text matches ``<think>.*?</think>\s*<answer>.*?</answer>`` (dot
  matches newline, ``re.fullmatch``: nothing, not even whitespace, may precede ``<think>`` or follow
  the closing ``</answer>``), plus the fraction of answer items whose keys are exactly ``{"bbox_2d"}``
  and whose ``bbox_2d`` is a list of 4 finite numbers. Range [0, 2].
- ``accuracy``: both box lists capped at their first 120; cost of a pair = 2 - [IoU > 0.5] -
  [L1 < 10] (box IoU with the +1 pixel convention, L1 = mean absolute coordinate difference);
  Hungarian assignment on the cost; (matches - sum of matched costs) / max(K, J). Range [-1, 1].
  0 when the answer does not parse strictly or either list is empty.
- ``length``: exp(-2 |K - J| / J) for J > 0, 1 for J = K = 0, 0 for J = 0 < K (uncapped counts).
  0 when the answer does not parse strictly.

Stage 2 (points): see :func:`stage2`.

Paper variant (``variant="paper"``): the think/answer pattern is a binary gate. If it fails, every
term and the total are 0. If it holds, ``format`` is 1, the stage-1 ``accuracy`` counts only
matches with IoU > 0.5 (the largest one-to-one set of such pairs, divided by max(K, J); range
[0, 1]), ``length`` and the stage-2 terms are as released, and ``total = 1 + accuracy + length`` so
that any well-formed episode outranks a malformed one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._optional import require
from ..datasets.truth import MIN_CONTOUR_AREA, gt_boxes
from ..errors import ConfigError
from ..imagery.arrays import as_mask
from ..reasoner.prompts import between_tags

__all__ = ["gt_boxes", "box_iou", "mask_iou", "stage1", "stage2", "MAX_OBJECTS", "MIN_CONTOUR_AREA"]

#: Both box lists are cut to this many boxes before matching (as released).
MAX_OBJECTS = 120

_BRIDGE = re.compile(r"</think>\s*<answer>")
_VARIANTS = ("release", "paper")


# --------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------


def _pairwise_box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (K x 4) with every box in ``b`` (J x 4), +1 pixel convention."""
    ax1, ay1, ax2, ay2 = (a[:, i : i + 1] for i in range(4))
    bx1, by1, bx2, by2 = (b[None, :, i] for i in range(4))
    iw = np.maximum(0.0, np.minimum(ax2, bx2) - np.maximum(ax1, bx1) + 1)
    ih = np.maximum(0.0, np.minimum(ay2, by2) - np.maximum(ay1, by1) + 1)
    inter = iw * ih
    union = (ax2 - ax1 + 1) * (ay2 - ay1 + 1) + (bx2 - bx1 + 1) * (by2 - by1 + 1) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two boxes ``[x1, y1, x2, y2]`` (pixels) with the +1 pixel convention.

    A box covers the pixels x1..x2 and y1..y2 inclusive, so its area is (x2-x1+1) * (y2-y1+1).
    Coordinates are taken as written (no reordering); a non-positive union gives 0.
    """
    pa = np.asarray(a, dtype=np.float64).reshape(1, 4)
    pb = np.asarray(b, dtype=np.float64).reshape(1, 4)
    return float(_pairwise_box_iou(pa, pb)[0, 0])


def mask_iou(a: Any, b: Any) -> float:
    """Pixel IoU of two masks for rewards: 0 if their shapes differ or their union is empty."""
    ma, mb = as_mask(a), as_mask(b)
    if ma.shape != mb.shape:
        return 0.0
    union = np.count_nonzero(ma | mb)
    if union == 0:
        return 0.0
    return np.count_nonzero(ma & mb) / union


# --------------------------------------------------------------------------------------------
# Strict answer reading
# --------------------------------------------------------------------------------------------


def _think_answer(text: str) -> float:
    if not isinstance(text, str):
        raise ConfigError(f"a response must be the decoded text (str), got {type(text).__name__}")
    # re.fullmatch(r"<think>.*?</think>\s*<answer>.*?</answer>", text, re.DOTALL), in linear time:
    # that regex backtracks over every </think> and </answer> (quadratic on repeated tags)
    ok = text.startswith("<think>") and text.endswith("</answer>") and \
        _BRIDGE.search(text, len("<think>"), len(text) - len("</answer>")) is not None
    return 1.0 if ok else 0.0


def _answer_json(text: str) -> Any:
    """The JSON value between the first <answer> and </answer>, or None if there is none."""
    body = between_tags(text, "answer")
    if body is None:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # json.JSONDecodeError and friends; nested too deeply
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_box(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 4 and all(_is_number(v) for v in value)


def _strict_boxes(items: Any) -> list[list[float]] | None:
    """The boxes of a list of ``{"bbox_2d": [4 numbers], ...}`` items, or None if any is malformed."""
    if not isinstance(items, list):
        return None
    boxes = []
    for item in items:
        if not isinstance(item, dict) or not _is_box(item.get("bbox_2d")):
            return None
        boxes.append(item["bbox_2d"])
    return boxes


def _check_variant(variant: str) -> None:
    if variant not in _VARIANTS:
        raise ConfigError(f"variant must be one of {_VARIANTS}, got {variant!r}")


def _result(fmt: float, accuracy: float, length: float) -> dict[str, float]:
    return {
        "format": float(fmt),
        "accuracy": float(accuracy),
        "length": float(length),
        "total": float(fmt + accuracy + length),
    }


# --------------------------------------------------------------------------------------------
# Stage 1
# --------------------------------------------------------------------------------------------


def _stage1_format_items(items: Any) -> float:
    """Fraction of items that are exactly ``{"bbox_2d": [4 numbers]}``; 0 for no list or no items."""
    if not isinstance(items, list) or not items:
        return 0.0
    good = sum(
        1 for item in items if isinstance(item, dict) and set(item) == {"bbox_2d"} and _is_box(item["bbox_2d"])
    )
    return good / len(items)


def _match_boxes(pred: list, truth: list, *, paper: bool) -> float:
    """Stage-1 box accuracy of ``pred`` against ``truth`` (both already capped); see module doc."""
    require("scipy", purpose="ground-truth boxes and Hungarian matching in rewards")
    from scipy.optimize import linear_sum_assignment

    if not pred or not truth:
        return 0.0
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    hit = _pairwise_box_iou(p, t) > 0.5
    if paper:
        # Largest one-to-one set of pairs with IoU > 0.5.
        rows, cols = linear_sum_assignment(-hit.astype(np.float64))
        return float(hit[rows, cols].sum()) / max(len(p), len(t))
    close = np.abs(p[:, None, :] - t[None, :, :]).mean(axis=2) < 10
    cost = 2.0 - hit - close
    rows, cols = linear_sum_assignment(cost)
    return (len(rows) - float(cost[rows, cols].sum())) / max(len(p), len(t))


def _truth_list(truth_boxes: Any) -> list[list[float]]:
    """Ground-truth boxes as lists of floats (numpy arrays welcome); a typed error if malformed."""
    message = "truth_boxes must be a J x 4 list of [x1, y1, x2, y2] boxes (pixels)"
    try:
        array = np.asarray(truth_boxes, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(message) from exc
    if array.size == 0:
        return []
    if array.ndim != 2 or array.shape[1] != 4:
        raise ConfigError(f"{message}, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ConfigError("truth_boxes must hold finite numbers")
    return array.tolist()


def _length_reward(k: int, j: int) -> float:
    if j == 0:
        return 1.0 if k == 0 else 0.0
    return math.exp(-2.0 * abs(k - j) / j)


def stage1(
    response_text: str,
    gt_mask: Any = None,
    *,
    truth_boxes: Sequence[Sequence[float]] | None = None,
    variant: str = "release",
) -> dict[str, float]:
    """Reward of one stage-1 completion (boxes).

    Args:
        response_text: the decoded completion, ``<think>...</think><answer>[...]</answer>``.
        gt_mask: H x W ground-truth mask (any nonzero pixel is foreground), in the same pixel space
            as the boxes; its boxes come from :func:`gt_boxes`.
        truth_boxes: ground-truth boxes ``[x1, y1, x2, y2]`` instead of ``gt_mask`` (compute them
            once with :func:`gt_boxes` when scoring a group of samples of the same prompt).
        variant: ``"release"`` (default) or ``"paper"``; see the module docstring.

    Returns
    -------
        ``{"format", "accuracy", "length", "total"}`` as floats.
    """
    _check_variant(variant)
    if (gt_mask is None) == (truth_boxes is None):
        raise ConfigError("stage1 needs exactly one of gt_mask= or truth_boxes=")
    truth = gt_boxes(gt_mask) if truth_boxes is None else _truth_list(truth_boxes)

    think = _think_answer(response_text)
    if variant == "paper" and not think:
        return _result(0.0, 0.0, 0.0)
    items = _answer_json(response_text)
    pred = _strict_boxes(items)
    if pred is None:
        accuracy = length = 0.0
    else:
        accuracy = _match_boxes(pred[:MAX_OBJECTS], truth[:MAX_OBJECTS], paper=variant == "paper")
        length = _length_reward(len(pred), len(truth))
    fmt = 1.0 if variant == "paper" else think + _stage1_format_items(items)
    return _result(fmt, accuracy, length)


# --------------------------------------------------------------------------------------------
# Stage 2
# --------------------------------------------------------------------------------------------


def _points_of(item: Any) -> list | None:
    """The item's ``points`` when it is a list (an empty list included: a group of 0 points), else None."""
    points = item.get("points") if isinstance(item, dict) else None
    return points if isinstance(points, list) else None


def _all_xy(points: list) -> bool:
    return all(isinstance(p, list) and len(p) == 2 and all(_is_number(v) for v in p) for p in points)


def _strictly_inside(points: list, box: list) -> bool:
    x1, y1, x2, y2 = box
    return all(x1 < x < x2 and y1 < y < y2 for x, y in points)


def _stage2_format_items(items: Any, stage1_boxes: list | None) -> float:
    """Fraction of items with a ``bbox_2d`` equal to the stage-1 box at the same index and a
    ``points`` list whose points all lie strictly inside it (an empty list qualifies: all of its
    zero points do); 0 unless both lists exist and have the same length.
    """
    if not isinstance(items, list) or not items or stage1_boxes is None:
        return 0.0
    if len(items) != len(stage1_boxes):
        return 0.0
    good = 0
    for item, box in zip(items, stage1_boxes):
        if not isinstance(item, dict) or not _is_box(item.get("bbox_2d")):
            continue
        points = _points_of(item)
        if points is not None and _all_xy(points) and item["bbox_2d"] == box and _strictly_inside(points, box):
            good += 1
    return good / len(items)


def _points_length(items: Any) -> float:
    """Mean over items of exp(-(n - 2)^2 / 8), n = the length of the item's ``points`` list
    (``[]`` is n = 0); items without a ``points`` list add 0.
    """
    if not isinstance(items, list) or not items:
        return 0.0
    total = 0.0
    for item in items:
        points = _points_of(item)
        if points is not None:
            total += math.exp(-((len(points) - 2) ** 2) / (2 * 2**2))
    return total / len(items)


def _stage1_boxes_of(answer: Any) -> list | None:
    """Stage-1 boxes from its answer, given as JSON text or as the parsed list."""
    if isinstance(answer, str):
        try:
            answer = json.loads(answer)
        except ValueError:
            return None
    if not isinstance(answer, list):
        return None
    boxes = []
    for item in answer:
        box = item.get("bbox_2d") if isinstance(item, dict) else None
        # A malformed stage-1 item still holds an index; nothing can equal it.
        boxes.append(box if _is_box(box) else None)
    return boxes


def stage2(
    response_text: str,
    stage1_answer_json: str | list,
    pred_mask: Any,
    gt_mask: Any,
    *,
    variant: str = "release",
) -> dict[str, float]:
    """Reward of one stage-2 completion (points added to the stage-1 boxes).

    - ``format``: the think/answer term (as in stage 1) plus the fraction of answer items that have
      ``bbox_2d`` and a ``points`` list of [x, y] numbers, whose ``bbox_2d`` equals the stage-1 box
      at the same index and whose points all lie strictly inside that box (x1 < x < x2,
      y1 < y < y2). ``"points": []`` qualifies, as in the release: all of its zero points are
      inside. The fraction counts only when the two lists have the same length. Range [0, 2].
    - ``accuracy``: pixel IoU of ``pred_mask`` (the final SAM mask) and ``gt_mask``; 0 if their
      shapes differ or their union is empty.
    - ``length``: sum over items of exp(-(n - 2)^2 / (2 * 2^2)) for a ``points`` list of n
      entries (``[]`` is a group of n = 0 and adds exp(-0.5), as in the release; items without a
      ``points`` list add 0), divided by the number of items; 0 without items.

    An answer with no items (or one that does not parse strictly) scores 0 in both item terms.

    Args:
        response_text: the decoded stage-2 completion.
        stage1_answer_json: the stage-1 answer (the ``{boxes}`` text of the stage-2 prompt) as JSON
            text, or already parsed.
        pred_mask, gt_mask: H x W masks, any nonzero pixel is foreground.
        variant: ``"release"`` (default) or ``"paper"`` (think/answer gate, see module docstring).
    """
    _check_variant(variant)
    think = _think_answer(response_text)
    if variant == "paper" and not think:
        return _result(0.0, 0.0, 0.0)
    items = _answer_json(response_text)
    accuracy = mask_iou(pred_mask, gt_mask)
    length = _points_length(items)
    if variant == "paper":
        return _result(1.0, accuracy, length)
    return _result(think + _stage2_format_items(items, _stage1_boxes_of(stage1_answer_json)), accuracy, length)
