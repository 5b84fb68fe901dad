"""The answer parser: every glitch the model makes, and fuzzing that it never raises."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sociogeo.errors import ConfigError
from sociogeo.reasoner.parsing import MAX_ITEMS, Item, parse_answer

SIZE = 756


def wrap(answer: str, think: str = "reasoning") -> str:
    return f"<think>{think}</think><answer>{answer}</answer>"


def reasons(parsed) -> list[str]:
    return [d.reason for d in parsed.discarded]


def flag_reasons(parsed) -> list[str]:
    return [f.reason for f in parsed.flags]


def check_invariants(parsed, height: float = SIZE, width: float = SIZE) -> None:
    """Kept boxes are inside the image with positive size; kept points are inside the image."""
    assert len(parsed.items) <= MAX_ITEMS
    for item in parsed.items:
        x1, y1, x2, y2 = item.box
        assert all(math.isfinite(v) for v in item.box)
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        for x, y in item.points:
            assert math.isfinite(x) and math.isfinite(y)
            assert 0 <= x <= width and 0 <= y <= height
    if parsed.ok:
        assert parsed.answer_text is not None
    # The parser's last-resort guard must never be what kept it from raising.
    assert not any(r.startswith("unreadable answer (") for r in reasons(parsed))


# --- well-formed answers -------------------------------------------------------------------------

def test_valid_stage1_answer():
    parsed = parse_answer(wrap('[{"bbox_2d": [10, 20, 300, 400]}, {"bbox_2d": [5, 6, 7, 8]}]', "I look."))
    assert parsed.ok
    assert parsed.think == "I look."
    assert parsed.items == [Item((10.0, 20.0, 300.0, 400.0)), Item((5.0, 6.0, 7.0, 8.0))]
    assert parsed.boxes == [(10.0, 20.0, 300.0, 400.0), (5.0, 6.0, 7.0, 8.0)]
    assert parsed.discarded == [] and parsed.flags == []


def test_valid_stage2_answer_with_points():
    text = wrap('[{"bbox_2d": [10, 20, 300, 400], "points": [[50, 60], [100.5, 200], [299, 399]]}]')
    parsed = parse_answer(text, stage=2)
    assert parsed.ok
    assert parsed.items == [Item((10.0, 20.0, 300.0, 400.0), ((50.0, 60.0), (100.5, 200.0), (299.0, 399.0)))]
    assert parsed.discarded == [] and parsed.flags == []


def test_empty_list_is_a_valid_answer_with_no_items():
    parsed = parse_answer(wrap("[]"))
    assert parsed.ok and parsed.items == [] and parsed.discarded == []


def test_answer_whitespace_and_newlines():
    parsed = parse_answer('<think>\n a \n</think>\n<answer>\n[\n {"bbox_2d": [1, 2, 3, 4]}\n]\n</answer>\n')
    assert parsed.ok and parsed.think == "a" and parsed.boxes == [(1.0, 2.0, 3.0, 4.0)]


# --- glitches the parser repairs -----------------------------------------------------------------

@pytest.mark.parametrize(
    "answer",
    [
        '```json\n[{"bbox_2d": [10, 20, 30, 40]}]\n```',  # code fence
        '```\n[{"bbox_2d": [10, 20, 30, 40]}]```',
        'The boxes are: [{"bbox_2d": [10, 20, 30, 40]}] as requested.',  # leading/trailing text
        "[{'bbox_2d': [10, 20, 30, 40]}]",  # single quotes
        '[{"bbox_2d": [10, 20, 30, 40],},]',  # trailing commas
        '[{"bbox_2d": ["10", "20", " 30 ", "40.0"]}]',  # numbers as strings
        '{"bbox_2d": [10, 20, 30, 40]}',  # a single object
        '[{"bbox_2d": [[10, 20], [30, 40]]}]',  # corners as pairs
        "[10, 20, 30, 40]",  # a bare box
        "[[10, 20, 30, 40]]",  # a list of bare boxes
        '[{"bbox_2d": [10, 20, 30, 40]}',  # missing closing bracket
        '[{"bbox_2d": (10, 20, 30, 40)}]',  # Python tuple
        '[{"BBox_2D": [10, 20, 30, 40]}]',  # key case
        '[{"bbox": [10, 20, 30, 40]}]',  # a near key
        '{"objects": [{"bbox_2d": [10, 20, 30, 40]}]}',  # a wrapping object
    ],
)
def test_repaired_glitches_give_the_box(answer):
    parsed = parse_answer(wrap(answer))
    assert parsed.ok, parsed.discarded
    assert parsed.boxes == [(10.0, 20.0, 30.0, 40.0)]
    assert parsed.discarded == []


def test_missing_closing_answer_tag_at_end_of_text():
    parsed = parse_answer('<think>t</think><answer>[{"bbox_2d": [1, 2, 3, 4]}]')
    assert parsed.ok and parsed.boxes == [(1.0, 2.0, 3.0, 4.0)]
    assert any("closing </answer>" in r for r in flag_reasons(parsed))


def test_unbalanced_bracket_of_the_stage2_example_is_repaired():
    # The released stage-2 prompt's example misses a "]"; a model imitating it does too.
    answer = (
        '[{"bbox_2d": [1, 2, 100, 100], "points": [[10, 10], [20, 20], [30, 30]]}, '
        '{"bbox_2d": [200, 200, 300, 300], "points": [[210, 210], [220, 220], [230, 230]}]'
    )
    parsed = parse_answer(wrap(answer), stage=2)
    assert parsed.ok
    assert parsed.items == [
        Item((1.0, 2.0, 100.0, 100.0), ((10.0, 10.0), (20.0, 20.0), (30.0, 30.0))),
        Item((200.0, 200.0, 300.0, 300.0), ((210.0, 210.0), (220.0, 220.0), (230.0, 230.0))),
    ]


def test_non_json_answer_is_salvaged_by_pattern():
    parsed = parse_answer(wrap("bbox_2d: 10, 20, 30, 40 and then bbox_2d: 50 60 70 80 points: 55 65, 60 70"), stage=2)
    assert parsed.ok
    assert parsed.items == [
        Item((10.0, 20.0, 30.0, 40.0)),
        Item((50.0, 60.0, 70.0, 80.0), ((55.0, 65.0), (60.0, 70.0))),
    ]
    assert any("recovered by pattern" in r for r in flag_reasons(parsed))


def test_swapped_corners_are_reordered():
    parsed = parse_answer(wrap('[{"bbox_2d": [300, 400, 10, 20]}]'))
    assert parsed.boxes == [(10.0, 20.0, 300.0, 400.0)]
    assert "box corners reordered" in flag_reasons(parsed)


def test_boxes_are_clipped_to_the_image():
    parsed = parse_answer(wrap('[{"bbox_2d": [-20, -5, 800, 700]}]'))
    assert parsed.boxes == [(0.0, 0.0, 756.0, 700.0)]
    assert "box clipped to the image" in flag_reasons(parsed)


def test_non_square_image_size_is_height_width():
    parsed = parse_answer(wrap('[{"bbox_2d": [150, 50, 250, 150], "points": [[180, 90], [90, 180]]}]'),
                          image_size=(100, 200), stage=2)
    assert parsed.boxes == [(150.0, 50.0, 200.0, 100.0)]
    assert parsed.items[0].points == ((180.0, 90.0),)
    assert "point outside the image" in reasons(parsed)


# --- what gets dropped ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "box, reason",
    [
        ("[10, 20, 10, 40]", "box has no area inside the image"),
        ("[800, 20, 900, 40]", "box has no area inside the image"),  # wholly right of the image
        ("[-50, -50, -10, -10]", "box has no area inside the image"),
        ('[10, 20, "NaN", 40]', "bbox_2d has a non-finite coordinate"),
        ("[10, 20, 1e999, 40]", "bbox_2d has a non-finite coordinate"),
        ("[10, 20, 30]", "bbox_2d is not four numbers"),
        ("[10, 20, 30, 40, 50]", "bbox_2d is not four numbers"),
        ('[10, "a", 30, 40]', "bbox_2d is not four numbers"),
        ("[true, 20, 30, 40]", "bbox_2d is not four numbers"),
        ("null", "bbox_2d is not four numbers"),
    ],
)
def test_bad_boxes_are_discarded_with_a_reason(box, reason):
    parsed = parse_answer(wrap(f'[{{"bbox_2d": {box}}}, {{"bbox_2d": [1, 2, 3, 4]}}]'))
    assert parsed.ok
    assert parsed.boxes == [(1.0, 2.0, 3.0, 4.0)]  # the good item survives
    assert reasons(parsed) == [reason]
    assert parsed.discarded[0].raw  # the offending item is recorded


def test_items_without_a_box_are_discarded_in_both_stages():
    for stage in (1, 2):
        parsed = parse_answer(wrap('[{"points": [[1, 2]]}, "text", 7, {"bbox_2d": [1, 2, 3, 4]}]'), stage=stage)
        assert parsed.boxes == [(1.0, 2.0, 3.0, 4.0)]
        assert reasons(parsed) == [
            "item has no bbox_2d",
            "item is not an object with a bbox_2d",
            "item is not an object with a bbox_2d",
        ]


def test_stage2_item_without_points_is_kept():
    parsed = parse_answer(wrap('[{"bbox_2d": [1, 2, 3, 4]}]'), stage=2)
    assert parsed.items == [Item((1.0, 2.0, 3.0, 4.0), ())]


def test_bad_points_are_dropped_and_outside_box_points_kept_with_a_flag():
    answer = (
        '[{"bbox_2d": [100, 100, 200, 200], "points": '
        '[[150, 150], [10, 10], [-1, 5], [5, 757], ["nan", 3], [1, 2, 3], "x", [756, 756]]}]'
    )
    parsed = parse_answer(wrap(answer), stage=2)
    assert parsed.items[0].points == ((150.0, 150.0), (10.0, 10.0), (756.0, 756.0))
    assert sorted(reasons(parsed)) == sorted([
        "point outside the image",
        "point outside the image",
        "point has a non-finite coordinate",
        "point is not two numbers",
        "point is not two numbers",
    ])
    assert sum("outside its box" in r for r in flag_reasons(parsed)) == 2  # (10, 10) and (756, 756)


def test_points_not_a_list_is_discarded_but_the_box_kept():
    parsed = parse_answer(wrap('[{"bbox_2d": [1, 2, 3, 4], "points": "center"}]'), stage=2)
    assert parsed.items == [Item((1.0, 2.0, 3.0, 4.0), ())]
    assert reasons(parsed) == ["points is not a list of [x, y]"]


def test_single_point_without_outer_list():
    parsed = parse_answer(wrap('[{"bbox_2d": [1, 2, 30, 40], "points": [10, 20]}]'), stage=2)
    assert parsed.items[0].points == ((10.0, 20.0),)


def test_items_over_the_cap_are_recorded():
    items = [{"bbox_2d": [i, i, i + 5, i + 5]} for i in range(MAX_ITEMS + 10)]
    parsed = parse_answer(wrap(json.dumps(items)))
    assert len(parsed.items) == MAX_ITEMS
    assert parsed.items[-1].box == (MAX_ITEMS - 1.0, MAX_ITEMS - 1.0, MAX_ITEMS + 4.0, MAX_ITEMS + 4.0)
    assert reasons(parsed) == [f"more than {MAX_ITEMS} items; the rest are ignored"] * 10
    assert json.loads(parsed.discarded[0].raw)["bbox_2d"] == [MAX_ITEMS, MAX_ITEMS, MAX_ITEMS + 5, MAX_ITEMS + 5]


# --- answers that are not there ------------------------------------------------------------------

def test_no_answer_tag():
    parsed = parse_answer("<think>I could not decide</think> the school is at 10, 20")
    assert not parsed.ok and parsed.answer_text is None and parsed.items == []
    assert parsed.think == "I could not decide"


def test_unclosed_think_stops_at_answer():
    parsed = parse_answer('<think>partial thought<answer>[{"bbox_2d": [1, 2, 3, 4]}]</answer>')
    assert parsed.think == "partial thought" and parsed.ok


@pytest.mark.parametrize("answer", ["", "none", "no school here", "{{{", '"just a string"', "42", "null"])
def test_unreadable_answers_are_not_ok(answer):
    parsed = parse_answer(wrap(answer))
    assert not parsed.ok and parsed.items == []
    assert parsed.answer_text == answer.strip()
    assert parsed.discarded  # the reason is recorded


def test_python_literal_fallback_emits_no_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parsed = parse_answer(wrap("[{'bbox_2d': [1, 2, 3, 4], 'points': None}, 1abc]"), stage=2)
    check_invariants(parsed)


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError):
        parse_answer("x", image_size=(0, 756))
    with pytest.raises(ConfigError):
        parse_answer("x", image_size=756)
    with pytest.raises(ConfigError):
        parse_answer("x", stage=3)


# --- fuzzing -------------------------------------------------------------------------------------

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-2000, max_value=2000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["10", " 5.5 ", "nan", "-inf", "1e999"]),
)
keys = st.sampled_from(["bbox_2d", "points", "box", "bbox", "label", "x"]) | st.text(max_size=5)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(keys, children, max_size=4),
    max_leaves=30,
)

coord = st.integers(min_value=0, max_value=SIZE)


@st.composite
def valid_items(draw, with_points: bool):
    x1 = draw(st.integers(min_value=0, max_value=SIZE - 1))
    y1 = draw(st.integers(min_value=0, max_value=SIZE - 1))
    x2 = draw(st.integers(min_value=x1 + 1, max_value=SIZE))
    y2 = draw(st.integers(min_value=y1 + 1, max_value=SIZE))
    item = {"bbox_2d": [x1, y1, x2, y2]}
    if with_points:
        xs = st.floats(min_value=0, max_value=SIZE, allow_nan=False) | coord
        item["points"] = draw(st.lists(st.tuples(xs, xs).map(list), max_size=4))
    return item


@FUZZ
@given(st.text(max_size=300), st.sampled_from([1, 2]))
def test_fuzz_random_text_never_raises(text, stage):
    check_invariants(parse_answer(text, stage=stage))
    check_invariants(parse_answer(wrap(text), stage=stage))
    check_invariants(parse_answer("<answer>" + text, stage=stage))


@FUZZ
@given(json_values, st.sampled_from([1, 2]), st.integers(min_value=0, max_value=400))
def test_fuzz_json_structures_never_raise(value, stage, cut):
    text = json.dumps(value)
    check_invariants(parse_answer(wrap(text), stage=stage))
    check_invariants(parse_answer(wrap(text[:cut]), stage=stage))  # truncated
    check_invariants(parse_answer(wrap(text.replace('"', "'")), stage=stage))


@FUZZ
@given(
    st.lists(valid_items(with_points=True), min_size=1, max_size=5),
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10_000),
            st.sampled_from(["delete", "insert", "truncate", "duplicate"]),
            st.sampled_from(list('[]{},"\': 0123456789.-e')),
        ),
        min_size=1,
        max_size=4,
    ),
    st.tuples(st.integers(min_value=1, max_value=2000), st.integers(min_value=1, max_value=2000)),
)
def test_fuzz_mutated_valid_answers_never_raise(items, mutations, size):
    text = json.dumps(items)
    for position, kind, char in mutations:
        i = position % (len(text) + 1)
        if kind == "delete":
            text = text[:i] + text[i + 1:]
        elif kind == "insert":
            text = text[:i] + char + text[i:]
        elif kind == "truncate":
            text = text[:i]
        else:
            text = text[:i] + text[i: i + 10] + text[i:]
    height, width = size
    for stage in (1, 2):
        check_invariants(parse_answer(wrap(text), image_size=(height, width), stage=stage), height, width)


@FUZZ
@given(st.lists(valid_items(with_points=True), max_size=8), st.booleans())
def test_fuzz_valid_answers_round_trip_exactly(items, indent):
    parsed = parse_answer(wrap(json.dumps(items, indent=2 if indent else None)), stage=2)
    assert parsed.ok
    assert parsed.discarded == []
    expected = [
        Item(tuple(float(v) for v in item["bbox_2d"]), tuple((float(x), float(y)) for x, y in item["points"]))
        for item in items
    ]
    assert parsed.items == expected


@FUZZ
@given(st.lists(valid_items(with_points=False), max_size=8))
def test_fuzz_valid_stage1_answers_round_trip_without_notes(items):
    parsed = parse_answer(wrap(json.dumps(items)), stage=1)
    assert parsed.ok and parsed.discarded == [] and parsed.flags == []
    assert parsed.boxes == [tuple(float(v) for v in item["bbox_2d"]) for item in items]
