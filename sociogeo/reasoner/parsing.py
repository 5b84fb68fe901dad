"""Turn a SocioReasoner answer text into boxes and points, tolerating the model's glitches.

This is sociogeo's *repair* mode (``parse="repair"``). By default answers are read strictly, as
the released pipeline reads them (:mod:`sociogeo.reasoner.strict`); the repairs below change
what SAM is given, so they are an explicit choice, and every one is recorded.

The model answers ``<think>...</think><answer>[{"bbox_2d": [x1, y1, x2, y2], "points": [[x, y],
...]}, ...]</answer>`` in absolute pixels of the model's image (756 x 756 for a 768-pixel chip;
see :mod:`sociogeo.geo.modelspace`). Sampled answers are not always valid JSON, so
:func:`parse_answer` repairs what it safely can and records everything it drops:

- the JSON may sit in a code fence, among other text, use single quotes, trailing commas,
  Python literals, numbers as strings, unbalanced brackets (the stage-2 prompt's own example has
  one), or a missing ``</answer>`` at the end of the text;
- a single object counts as a one-item list, a bare ``[x1, y1, x2, y2]`` as one box, and a box
  written as ``[[x1, y1], [x2, y2]]`` as that box;
- boxes with swapped corners are reordered and boxes are clipped to the image; a box with no
  area left is dropped; non-finite or out-of-image points are dropped;
- in stage 2, a point inside the image but outside its own box is **kept** (the released
  pipeline gives every point to SAM as a positive prompt) and noted in ``flags``.

Every dropped item or point is listed in ``discarded`` with its reason; every kept-but-changed
one in ``flags``. :func:`parse_answer` never raises for a ``str`` input.
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from dataclasses import dataclass, field

from ..errors import ConfigError
from .prompts import between_tags

MAX_ITEMS = 120  # the rewards cap both box lists at 120 as well (the release's rewards)

_BOX_KEYS = ("bbox_2d", "bbox", "box", "bbox2d", "box_2d")
_POINT_KEYS = ("points", "point", "points_2d", "point_2d")
_RAW_LIMIT = 300  # characters of offending text kept in a Discarded record

_THINK_OPEN = re.compile(r"<think>(.*?)(?:<answer>|\Z)", re.DOTALL | re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<answer>(.*)\Z", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
# one way only to match each number (no \d+\d* split to backtrack over): linear on runs of digits
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
_BOX_KEY_RE = re.compile(r"""["']?(?:bbox_2d|bbox2d|box_2d|bbox|box)["']?\s*:""", re.IGNORECASE)
_POINT_KEY_RE = re.compile(r"""["']?(?:points?(?:_2d)?)["']?\s*:""", re.IGNORECASE)
_BARE_BOX_RE = re.compile(r"\[\s*(%s)\s*,\s*(%s)\s*,\s*(%s)\s*,\s*(%s)\s*\]" % ((_NUMBER,) * 4))


@dataclass(frozen=True)
class Item:
    """One answer item in model pixels: ``box`` = (x1, y1, x2, y2) and ``points`` = ((x, y), ...).

    Both parsers always set ``box``. :func:`parse_answer` (repair mode) guarantees x1 < x2 and
    y1 < y2 inside the image; the strict parser keeps the box as written (it may be inverted or
    reach past the image).
    """

    box: tuple[float, float, float, float] | None
    points: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Discarded:
    """Something dropped (in ``discarded``) or kept but changed (in ``flags``), with the reason
    and the offending text (truncated).
    """

    reason: str
    raw: str


@dataclass
class ParsedAnswer:
    """What :func:`parse_answer` understood.

    ``ok`` is true when an ``<answer>`` was found and its content could be read as a list of
    items (an empty list included); ``items`` holds only valid items (at most ``MAX_ITEMS`` in
    repair mode). ``drawn_boxes`` are the boxes the stage-2 render draws for this answer when it
    is a stage-1 answer; ``mode`` is the parser that produced it, ``"strict"`` or ``"repair"``.
    """

    think: str
    answer_text: str | None
    items: list[Item]
    discarded: list[Discarded] = field(default_factory=list)
    ok: bool = False
    flags: list[Discarded] = field(default_factory=list)
    drawn_boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    mode: str = "repair"

    @property
    def boxes(self) -> list[tuple[float, float, float, float]]:
        """The kept items' boxes (x1, y1, x2, y2) in model pixels."""
        return [item.box for item in self.items if item.box is not None]


class _Unreadable(Exception):
    pass


class _Notes:
    """Collects discards and flags while one answer is parsed."""

    def __init__(self):
        self.discarded: list[Discarded] = []
        self.flags: list[Discarded] = []

    def drop(self, reason: str, raw) -> None:
        self.discarded.append(Discarded(reason, _raw(raw)))

    def flag(self, reason: str, raw) -> None:
        self.flags.append(Discarded(reason, _raw(raw)))


def _raw(value) -> str:
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=repr)
        except (TypeError, ValueError, RecursionError):
            text = repr(value)
    return text if len(text) <= _RAW_LIMIT else text[:_RAW_LIMIT] + "..."


def parse_answer(text: str, *, image_size: tuple[int, int] = (756, 756), stage: int = 1) -> ParsedAnswer:
    """Parse a model response into boxes (and points) inside an image of ``image_size``.

    ``image_size`` is (height, width) in pixels of the model's image; boxes are clipped to
    ``[0, width] x [0, height]`` and points must lie in that closed rectangle. ``stage`` is 1
    (boxes; points, if any, are read the same way) or 2 (boxes with points). Never raises for a
    ``str`` input; raises :class:`~sociogeo.errors.ConfigError` for a bad ``image_size`` or
    ``stage``.
    """
    height, width = _check_size(image_size)
    if stage not in (1, 2):
        raise ConfigError(f"stage must be 1 or 2, got {stage!r}")
    text = text if isinstance(text, str) else str(text)
    notes = _Notes()
    think = _think(text)
    answer = _answer(text, notes)
    if answer is None:
        return ParsedAnswer(think=think, answer_text=None, items=[], ok=False)
    try:
        items, ok = _read_items(answer, width=width, height=height, stage=stage, notes=notes)
    except Exception as exc:  # noqa: BLE001 - a last guard: a parser must never take the pipeline down
        notes.drop(f"unreadable answer ({type(exc).__name__})", answer)
        items, ok = [], False
    parsed = ParsedAnswer(
        think=think, answer_text=answer, items=items, discarded=notes.discarded, ok=ok, flags=notes.flags
    )
    parsed.drawn_boxes = parsed.boxes  # repaired boxes are what gets drawn
    return parsed


def _check_size(image_size) -> tuple[float, float]:
    try:
        height, width = (float(v) for v in image_size)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"image_size must be (height, width) in pixels, got {image_size!r}") from exc
    if not (math.isfinite(height) and math.isfinite(width) and height > 0 and width > 0):
        raise ConfigError(f"image_size must be two positive pixel sizes, got {image_size!r}")
    return height, width


def _think(text: str) -> str:
    body = between_tags(text, "think", ignore_case=True)
    if body is not None:
        return body.strip()
    match = _THINK_OPEN.search(text)
    return match.group(1).strip() if match else ""


def _answer(text: str, notes: _Notes) -> str | None:
    body = between_tags(text, "answer", ignore_case=True)
    if body is not None:
        return body.strip()
    match = _ANSWER_OPEN.search(text)
    if match:
        notes.flag("no closing </answer> tag; read to the end of the text", match.group(1))
        return match.group(1).strip()
    return None


# --- from text to a Python value -------------------------------------------------------------

def _read_items(answer: str, *, width: float, height: float, stage: int, notes: _Notes):
    try:
        value = _decode(answer, notes)
    except _Unreadable:
        salvaged = _salvage(answer)
        if not salvaged:
            notes.drop("answer is not readable as JSON and holds no recognisable box", answer)
            return [], False
        notes.flag("answer is not valid JSON; boxes recovered by pattern", answer)
        value = salvaged
    raw_items = _as_item_list(value, notes)
    if raw_items is None:
        return [], False
    items = []
    for raw in raw_items:
        item = _item(raw, width=width, height=height, stage=stage, notes=notes)
        if item is not None:
            items.append(item)
    for extra in items[MAX_ITEMS:]:
        notes.drop(f"more than {MAX_ITEMS} items; the rest are ignored", _item_json(extra))
    return items[:MAX_ITEMS], True


def _decode(answer: str, notes: _Notes):
    """The JSON value in ``answer``, repairing common glitches; raises _Unreadable."""
    body = _unfence(answer)
    start = _first_bracket(body)
    if start < 0:
        raise _Unreadable
    body = body[start:]
    decoder = json.JSONDecoder()
    try:
        value, end = decoder.raw_decode(body)
        if body[end:].strip():
            notes.flag("text after the JSON was ignored", body[end:])
        return value
    except (ValueError, RecursionError):
        pass
    repaired = _repair(body)
    try:
        value, end = decoder.raw_decode(repaired)
        notes.flag("JSON repaired (quotes, commas or brackets)", body)
        return value
    except (ValueError, RecursionError):
        pass
    try:
        with warnings.catch_warnings():
            # Python warns on text like "1abc" while parsing; here that is just a failed guess.
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(_balance(body))
        notes.flag("read as a Python literal", body)
        return value
    except Exception:  # noqa: BLE001 - literal_eval raises many types (SyntaxError, MemoryError, ...)
        raise _Unreadable from None


def _unfence(text: str) -> str:
    if "```" in text:
        match = _FENCE.search(text)
        if match:
            return match.group(1).strip()
    return text.strip()


def _first_bracket(text: str) -> int:
    positions = [p for p in (text.find("["), text.find("{")) if p >= 0]
    return min(positions) if positions else -1


def _repair(text: str) -> str:
    """Best-effort JSON repair: quotes, Python literals, trailing commas, brackets."""
    if '"' not in text:
        text = text.replace("'", '"')
    else:
        text = re.sub(r"'([^'\"\n]*)'", r'"\1"', text)
    text = re.sub(r"\bNone\b", "null", text)
    text = re.sub(r"\bTrue\b", "true", text)
    text = re.sub(r"\bFalse\b", "false", text)
    text = re.sub(r"\(", "[", text)  # tuples written as (x, y)
    text = re.sub(r"\)", "]", text)
    text = re.sub(r"}\s*{", "}, {", text)  # missing commas between items
    text = re.sub(r"]\s*\[", "], [", text)
    text = _balance(text)
    text = re.sub(r",\s*([\]}])", r"\1", text)  # trailing commas
    return text


def _balance(text: str) -> str:
    """Insert missing closing brackets and drop stray ones (strings are left alone)."""
    pairs = {"]": "[", "}": "{"}
    closer = {"[": "]", "{": "}"}
    out: list[str] = []
    stack: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}":
            if pairs[ch] not in stack:
                continue  # a closer with no opener: drop it
            while stack[-1] != pairs[ch]:
                out.append(closer[stack.pop()])
            stack.pop()
        out.append(ch)
        if not stack and ch in "]}":
            break  # the first complete value; anything after it is trailing text
    if in_string:
        out.append('"')
    out.extend(closer[c] for c in reversed(stack))
    return "".join(out)


def _salvage(answer: str) -> list:
    """Boxes (and points) found by pattern in text that is not JSON at all."""
    keys = list(_BOX_KEY_RE.finditer(answer))
    items = []
    if keys:
        for i, key in enumerate(keys):
            end = keys[i + 1].start() if i + 1 < len(keys) else len(answer)
            segment = answer[key.end():end]
            point_key = _POINT_KEY_RE.search(segment)
            box_part = segment[: point_key.start()] if point_key else segment
            numbers = _NUMBER_RE.findall(box_part)[:4]
            item: dict = {"bbox_2d": numbers}
            if point_key:
                coords = _NUMBER_RE.findall(segment[point_key.end():])
                item["points"] = [coords[j: j + 2] for j in range(0, len(coords) - 1, 2)]
            items.append(item)
        return items
    return [{"bbox_2d": list(match.groups())} for match in _BARE_BOX_RE.finditer(answer)]


# --- from a Python value to items ------------------------------------------------------------

def _as_item_list(value, notes: _Notes) -> list | None:
    """The list of raw items in a decoded answer, or None if it holds none."""
    if isinstance(value, dict):
        if not _find_key(value, _BOX_KEYS):
            lists = [v for v in value.values() if isinstance(v, (list, tuple))]
            if len(lists) == 1:  # a wrapper such as {"objects": [...]}
                notes.flag("items read from inside a wrapping object", value)
                return list(lists[0])
        notes.flag("a single object read as a one-item list", value)
        return [value]
    if isinstance(value, (list, tuple)):
        if len(value) == 4 and all(_is_number_like(v) for v in value):
            notes.flag("a bare [x1, y1, x2, y2] read as one box", value)
            return [{"bbox_2d": list(value)}]
        return list(value)
    notes.drop("answer is not a list of objects", value)
    return None


def _find_key(item: dict, names: tuple[str, ...]):
    for key in item:
        if isinstance(key, str) and key.strip().lower() in names:
            return key
    return None


def _item(raw, *, width: float, height: float, stage: int, notes: _Notes) -> Item | None:
    if isinstance(raw, (list, tuple)) and len(raw) == 4 and all(_is_number_like(v) for v in raw):
        raw = {"bbox_2d": list(raw)}
    if not isinstance(raw, dict):
        notes.drop("item is not an object with a bbox_2d", raw)
        return None
    box_key = _find_key(raw, _BOX_KEYS)
    if box_key is None:
        notes.drop("item has no bbox_2d", raw)
        return None
    box = _box(raw[box_key], width=width, height=height, raw=raw, notes=notes)
    if box is None:
        return None
    point_key = _find_key(raw, _POINT_KEYS)
    points = ()
    if point_key is not None:
        points = _points(raw[point_key], box, width=width, height=height, stage=stage, notes=notes)
    return Item(box=box, points=points)


def _box(value, *, width: float, height: float, raw, notes: _Notes):
    coords = _numbers(value)
    if coords is None and isinstance(value, (list, tuple)) and len(value) == 2:
        # [[x1, y1], [x2, y2]]: two corners are unambiguous.
        corners = [_numbers(v) for v in value]
        if all(c is not None and len(c) == 2 for c in corners):
            coords = corners[0] + corners[1]
    if coords is None or len(coords) != 4:
        notes.drop("bbox_2d is not four numbers", raw)
        return None
    if not all(math.isfinite(c) for c in coords):
        notes.drop("bbox_2d has a non-finite coordinate", raw)
        return None
    x1, y1, x2, y2 = coords
    if x1 > x2 or y1 > y2:
        notes.flag("box corners reordered", raw)
        x1, x2 = min(x1, x2), max(x1, x2)
        y1, y2 = min(y1, y2), max(y1, y2)
    clipped = (_clip(x1, width), _clip(y1, height), _clip(x2, width), _clip(y2, height))
    if clipped != (x1, y1, x2, y2):
        notes.flag("box clipped to the image", raw)
    if not (clipped[0] < clipped[2] and clipped[1] < clipped[3]):
        notes.drop("box has no area inside the image", raw)
        return None
    return clipped


def _points(value, box, *, width: float, height: float, stage: int, notes: _Notes):
    single = _numbers(value)
    if single is not None and len(single) == 2:
        value = [value]  # one point written without the outer list
    if not isinstance(value, (list, tuple)):
        notes.drop("points is not a list of [x, y]", value)
        return ()
    kept = []
    for raw_point in value:
        xy = _numbers(raw_point)
        if xy is None or len(xy) != 2:
            notes.drop("point is not two numbers", raw_point)
            continue
        x, y = xy
        if not (math.isfinite(x) and math.isfinite(y)):
            notes.drop("point has a non-finite coordinate", raw_point)
            continue
        if not (0.0 <= x <= width and 0.0 <= y <= height):
            notes.drop("point outside the image", raw_point)
            continue
        if stage == 2 and not (box[0] <= x <= box[2] and box[1] <= y <= box[3]):
            notes.flag("point outside its box (kept: the released pipeline uses every point)", raw_point)
        kept.append((x, y))
    return tuple(kept)


def _clip(value: float, upper: float) -> float:
    return min(max(value, 0.0), upper)


def _is_number_like(value) -> bool:
    return _number(value) is not None


def _number(value) -> float | None:
    """A float from an int, float or numeric string; None otherwise (booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # ints beyond float range
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str) and len(value) < 64:
        text = value.strip()
        if _NUMBER_RE.fullmatch(text) or text.lower() in {"inf", "-inf", "+inf", "nan", "infinity", "-infinity"}:
            return float(text)
    return None


def _numbers(value) -> list[float] | None:
    if not isinstance(value, (list, tuple)):
        return None
    out = []
    for v in value:
        number = _number(v)
        if number is None:
            return None
        out.append(number)
    return out


def _item_json(item: Item) -> dict:
    data: dict = {"bbox_2d": list(item.box) if item.box else None}
    if item.points:
        data["points"] = [list(p) for p in item.points]
    return data


__all__ = ["MAX_ITEMS", "Discarded", "Item", "ParsedAnswer", "parse_answer"]
