"""The strict answer reading (the default): SAM prompts and drawn boxes as the release makes them.

Checked case by case and, on random answers, against the independent reading of
release_reference.py (the release's json.loads parse, its SAM call's float conversion, and its
render's box rule).
"""

from __future__ import annotations

import json
import math

import pytest
import release_reference as rr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sociogeo.reasoner.strict import drawn_boxes, parse_strict


def wrap(answer: str, think: str = "t") -> str:
    return f"<think>{think}</think><answer>{answer}</answer>"


def prompts(parsed) -> list:
    return [(item.box, item.points) for item in parsed.items]


def test_boxes_and_points_are_used_as_written():
    text = wrap(json.dumps([{"bbox_2d": [500, 450, 768, 768], "points": [[600, 600], [790, -3]]},
                            {"bbox_2d": [300, 200, 100, 100]}]))
    parsed = parse_strict(text, stage=2)
    # nothing clipped, reordered or dropped: a box may reach 768 and points may lie off the image
    assert prompts(parsed) == [((500.0, 450.0, 768.0, 768.0), ((600.0, 600.0), (790.0, -3.0))),
                               ((300.0, 200.0, 100.0, 100.0), ())]
    assert parsed.ok and parsed.mode == "strict" and parsed.discarded == [] and parsed.flags == []
    # the render draws the first box (PIL refuses the inverted second one)
    assert parsed.drawn_boxes == [(500.0, 450.0, 768.0, 768.0)]


def test_stage1_points_are_prompts_too_and_empty_points_mean_box_only():
    parsed = parse_strict(wrap('[{"bbox_2d": [1, 2, 30, 40], "points": [[5, 6]]}, '
                               '{"bbox_2d": [1, 2, 30, 40], "points": []}]'), stage=1)
    assert prompts(parsed) == [((1, 2, 30, 40), ((5.0, 6.0),)), ((1, 2, 30, 40), ())]


@pytest.mark.parametrize("answer", [
    '[{"bbox_2d": [1, 2, 3, 4]},]',  # trailing comma
    "[{'bbox_2d': [1, 2, 3, 4]}]",  # single quotes
    '[{"bbox_2d": [1, 2, 3, 4], "points": [[2, 3]}]',  # the stage-2 example's missing bracket
    '```json\n[{"bbox_2d": [1, 2, 3, 4]}]\n```',
])
def test_malformed_json_gives_no_prompt(answer):
    parsed = parse_strict(wrap(answer))
    assert parsed.items == [] and not parsed.ok and parsed.drawn_boxes == []
    assert parsed.discarded[0].reason.startswith("answer is not valid JSON")


def test_only_the_first_answer_counts_and_tags_are_case_sensitive():
    text = wrap('[{"bbox_2d": [1, 2, 3, 4]}]') + '<answer>[{"bbox_2d": [5, 6, 7, 8]}]</answer>'
    assert prompts(parse_strict(text)) == [((1, 2, 3, 4), ())]
    upper = parse_strict('<ANSWER>[{"bbox_2d": [1, 2, 3, 4]}]</ANSWER>')
    assert upper.items == [] and upper.answer_text is None
    assert upper.discarded[0].reason == "no <answer>...</answer> in the response; no SAM prompt"


def test_items_are_skipped_one_by_one_with_reasons():
    items = [{"bbox_2d": [1, 2, 3]}, "text", {"bbox": [1, 2, 3, 4]}, {"bbox_2d": [1, "2", 3, 4]},
             {"bbox_2d": [1, 2, 3, 4], "points": [[1]]}, {"bbox_2d": [1, 2, 3, 4], "points": {"a": 1}},
             {"bbox_2d": [9, 9, 19, 19], "points": [[10, 11, 1]]}]
    parsed = parse_strict(wrap(json.dumps(items)))
    assert prompts(parsed) == [((9, 9, 19, 19), ((10.0, 11.0),))]  # [x, y, label]: the first two count
    assert [d.reason for d in parsed.discarded] == [
        "bbox_2d is not a list of 4 numbers", "item is not an object", "bbox_2d is not a list of 4 numbers",
        "bbox_2d holds something other than finite numbers", "a point is not [x, y] numbers; the item is skipped",
        "points is not a list; the item is skipped",
    ]
    assert [f.reason for f in parsed.flags] == ["a point has more than two values; the first two are used"]


def test_a_json_value_other_than_a_list_gives_no_prompt():
    parsed = parse_strict(wrap('{"bbox_2d": [1, 2, 3, 4]}'))
    assert parsed.items == [] and not parsed.ok
    assert parsed.discarded[0].reason == "answer is not a JSON list; no SAM prompt"


def test_documented_deviations_booleans_and_non_finite_numbers():
    # json.loads reads NaN and true; the release would hand them to SAM, sociogeo skips the item
    for answer in ('[{"bbox_2d": [NaN, 2, 3, 4]}]', '[{"bbox_2d": [1, 2, 3, 4], "points": [[Infinity, 1]]}]',
                   '[{"bbox_2d": [true, 2, 3, 4]}]'):
        assert parse_strict(wrap(answer)).items == []


def test_drawn_boxes_follow_the_renders_rule():
    assert drawn_boxes('[{"bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": [1, 2, 3]}, {"points": []}]') == [(1, 2, 3, 4)]
    # a box that has no length breaks the render's whole list: nothing is drawn
    assert drawn_boxes('[{"bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": 7}]') == []
    # drawn although SAM gets no prompt from the item (its points cannot be read)
    text = '[{"bbox_2d": [1, 2, 30, 40], "points": "none"}]'
    assert drawn_boxes(text) == [(1, 2, 30, 40)] and parse_strict(wrap(text)).items == []
    assert drawn_boxes("not json") == [] and drawn_boxes('{"bbox_2d": [1, 2, 3, 4]}') == []


# --- random answers against the independent reading ------------------------------------------------

_COORD = st.one_of(st.integers(-50, 900), st.floats(-50, 900, allow_nan=False, allow_infinity=False),
                   st.text(max_size=2), st.none())
_POINT = st.one_of(st.lists(_COORD, max_size=4), _COORD)
_POINTS = st.one_of(st.lists(_POINT, max_size=4), _COORD, st.dictionaries(st.text(max_size=2), st.integers(),
                                                                          max_size=2))
_ITEM = st.one_of(
    st.fixed_dictionaries({"bbox_2d": st.one_of(st.lists(_COORD, max_size=5), _COORD)},
                          optional={"points": _POINTS, "label": st.integers()}),
    st.fixed_dictionaries({}, optional={"points": _POINTS}),
    _COORD,
)


def _reference_prompts(text: str) -> list:
    out = []
    for p in rr.sam_prompts(text):
        box = tuple(float(v) for v in p["box"])
        points = tuple((float(x), float(y)) for x, y in p.get("point_coords", []))
        out.append((box, points))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(_ITEM, max_size=5), cut=st.integers(0, 400), corrupt=st.booleans())
def test_random_answers_give_the_release_prompts_and_boxes(items, cut, corrupt):
    answer = json.dumps(items)
    if corrupt:  # truncated JSON, as a sampled answer may be
        answer = answer[: cut % (len(answer) + 1)]
    text = wrap(answer)
    parsed = parse_strict(text)
    assert prompts(parsed) == _reference_prompts(text)
    drawable = [tuple(float(v) for v in b) for b in rr.render_boxes(answer)
                if all(isinstance(v, (int, float)) and math.isfinite(v) for v in b) and b[0] <= b[2] and b[1] <= b[3]]
    assert parsed.drawn_boxes == drawable


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_random_text_never_raises(text):
    parsed = parse_strict(text)
    assert parsed.mode == "strict" and isinstance(parsed.items, list)
