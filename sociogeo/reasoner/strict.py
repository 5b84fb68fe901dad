"""Read an answer the way the released pipeline reads it: strictly, and nothing clipped.

The released checkpoint was trained with SAM prompts made like this, so sociogeo reads answers
this way by default (``parse="strict"``); :func:`~sociogeo.reasoner.parsing.parse_answer` is the
tolerant alternative (``parse="repair"``).

SAM prompts (:func:`parse_strict`):

- the answer is the text between the first ``<answer>`` and ``</answer>`` (case-sensitive),
  stripped and read with ``json.loads``; text that is not JSON, or JSON that is not a list,
  gives no prompts at all (SAM then returns an empty mask);
- each list item that is an object with a ``bbox_2d`` list of 4 numbers is one prompt, in the
  order written; other items are skipped;
- its ``points`` (when present and non-empty) are positive clicks, the first two numbers of each
  point; a ``points`` value that cannot be read that way skips the item (the release loses the
  whole item when reading its points fails);
- coordinates are used as written: boxes are not clipped, reordered or checked for area, points
  may lie outside the image (the model was rewarded against 768-px ground-truth boxes, so a box
  may reach 768 in the 756-px image).

Boxes drawn for stage 2 (:func:`drawn_boxes`) are read from the stage-1 answer's text by the
release's render step, a separate parse with its own quirks (see its docstring).

Two deviations, both on answers no trained model writes: coordinates must be JSON numbers
(``true``/``false`` count as no number) and finite (``NaN``/``Infinity``, which ``json.loads``
accepts, skip the item rather than reach SAM).
"""

from __future__ import annotations

import json
import math

from .parsing import Discarded, Item, ParsedAnswer, _raw, _think
from .prompts import answer_text, between_tags


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def answer_value(text: str):
    """``(found, value, error)``: whether ``<answer>...</answer>`` is present, its JSON value
    (None when it does not load), and the ``json.loads`` error message (None when it loads).
    """
    body = between_tags(text, "answer")
    if body is None:
        return False, None, None
    try:
        return True, json.loads(body.strip()), None
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4300 digits
        return True, None, str(exc)
    except RecursionError:
        return True, None, "nesting too deep"


def parse_strict(text: str, *, stage: int = 1) -> ParsedAnswer:
    """The SAM prompts of an answer, read as the release reads them (see the module docstring).

    ``stage`` is accepted for symmetry with the tolerant parser; both stages are read the same
    way (a stage-1 answer's points are prompts too). ``drawn_boxes`` holds what the stage-2
    render would draw for this answer (:func:`drawn_boxes`). Never raises for a ``str``.
    """
    text = text if isinstance(text, str) else str(text)
    think = _think(text)
    found, value, error = answer_value(text)
    answer = answer_text(text) if found else None
    parsed = ParsedAnswer(think=think, answer_text=answer, items=[], ok=False, mode="strict")
    if not found:
        parsed.discarded.append(Discarded("no <answer>...</answer> in the response; no SAM prompt", _raw(text)))
        return parsed
    parsed.drawn_boxes = drawn_boxes(answer)
    if error is not None:
        parsed.discarded.append(Discarded(f"answer is not valid JSON ({error}); no SAM prompt", _raw(answer)))
        return parsed
    if not isinstance(value, list):
        parsed.discarded.append(Discarded("answer is not a JSON list; no SAM prompt", _raw(answer)))
        return parsed
    parsed.ok = True
    for raw in value:
        item = _item(raw, parsed)
        if item is not None:
            parsed.items.append(item)
    return parsed


def _item(raw, parsed: ParsedAnswer) -> Item | None:
    if not isinstance(raw, dict):
        parsed.discarded.append(Discarded("item is not an object", _raw(raw)))
        return None
    box = raw.get("bbox_2d")
    if not (isinstance(box, list) and len(box) == 4):
        parsed.discarded.append(Discarded("bbox_2d is not a list of 4 numbers", _raw(raw)))
        return None
    if not all(_is_number(v) for v in box):
        parsed.discarded.append(Discarded("bbox_2d holds something other than finite numbers", _raw(raw)))
        return None
    points = raw.get("points", [])
    if not isinstance(points, list):
        parsed.discarded.append(Discarded("points is not a list; the item is skipped", _raw(raw)))
        return None
    xy = []
    for point in points:
        if not (isinstance(point, list) and len(point) >= 2 and _is_number(point[0]) and _is_number(point[1])):
            parsed.discarded.append(Discarded("a point is not [x, y] numbers; the item is skipped", _raw(raw)))
            return None
        if len(point) > 2:
            parsed.flags.append(Discarded("a point has more than two values; the first two are used", _raw(point)))
        xy.append((float(point[0]), float(point[1])))
    return Item(box=tuple(float(v) for v in box), points=tuple(xy))


def drawn_boxes(answer: str) -> list[tuple[float, float, float, float]]:
    """The boxes the release's stage-2 render draws for a stage-1 answer text (the ``{boxes}`` text).

    Its rule: ``json.loads`` the text; when it is a list, every object with a ``bbox_2d`` of
    length 4 is drawn. Quirk kept: a ``bbox_2d`` that has no length (a number, ``null``) makes
    the whole list unreadable there, so no box is drawn at all. Boxes PIL cannot draw (not four
    numbers, or corners in the wrong order) are skipped, as PIL's error is skipped there.
    """
    try:
        data = json.loads(answer)
    except (ValueError, RecursionError):  # not JSON, a 4300+ digit integer, nested too deeply
        return []
    if not isinstance(data, list):
        return []
    candidates = []
    for item in data:
        if not (isinstance(item, dict) and "bbox_2d" in item):
            continue
        box = item["bbox_2d"]
        if not hasattr(box, "__len__"):
            return []
        if len(box) == 4:
            candidates.append(box)
    out = []
    for box in candidates:
        values = [box[i] if isinstance(box, (list, tuple)) else None for i in range(4)]
        if all(_is_number(v) for v in values) and values[0] <= values[2] and values[1] <= values[3]:
            out.append(tuple(float(v) for v in values))
    return out


__all__ = ["answer_value", "drawn_boxes", "parse_strict"]
