"""Rewards: every branch against hand-computed values (cv2 cross-check when OpenCV is installed)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sociogeo.errors import ConfigError
from sociogeo.train.rewards import MAX_OBJECTS, box_iou, gt_boxes, mask_iou, stage1, stage2


def answer(items, think="I looked at the map.") -> str:
    return f"<think>{think}</think><answer>{json.dumps(items)}</answer>"


def boxes_answer(boxes) -> str:
    return answer([{"bbox_2d": b} for b in boxes])


def block_mask(*blocks, shape=(60, 60)):
    """Mask with filled blocks given as (row0, row1, col0, col1), ends exclusive."""
    mask = np.zeros(shape, dtype=np.uint8)
    for r0, r1, c0, c1 in blocks:
        mask[r0:r1, c0:c1] = 1
    return mask


# ------------------------------------------------------------------------------------------
# gt_boxes
# ------------------------------------------------------------------------------------------


def test_gt_boxes_area_threshold_on_blocks():
    # cv2 area of a filled w x h block is (w-1)*(h-1): 3x3 -> 4 (dropped), 4x5 -> 12 (kept)
    assert gt_boxes(block_mask((2, 5, 2, 5))) == []
    assert gt_boxes(block_mask((10, 15, 20, 24))) == [[20, 10, 24, 15]]
    # 2 x 12 -> 1*11 = 11 > 10 kept; 2 x 11 -> 10, not > 10, dropped
    assert gt_boxes(block_mask((0, 2, 0, 12))) == [[0, 0, 12, 2]]
    assert gt_boxes(block_mask((0, 2, 0, 11))) == []


def test_gt_boxes_thin_shapes_have_no_area():
    diagonal = np.eye(20, dtype=bool)  # bbox 20 x 20 but a zero-area contour
    assert gt_boxes(diagonal) == []
    line = block_mask((5, 6, 0, 50))
    assert gt_boxes(line) == []


def test_gt_boxes_l_shape_polygon_area():
    # Bar cols 0-2 rows 0-5, foot rows 4-5 cols 3-9. Polygon through centres:
    # (0,0) (2,0) (2,4) (9,4) (9,5) (0,5): area 2*4 + 9*1 = 17 > 10.
    mask = block_mask((0, 6, 0, 3), (4, 6, 3, 10), shape=(8, 12))
    assert gt_boxes(mask) == [[0, 0, 10, 6]]


def test_gt_boxes_ring_with_island_keeps_only_the_ring():
    mask = block_mask((10, 40, 10, 40))
    mask[14:36, 14:36] = 0
    mask[20:30, 20:30] = 1  # island in the hole: no external contour
    assert gt_boxes(mask) == [[10, 10, 40, 40]]
    # nested three deep, plus a separate block: still only the two outermost shapes
    mask[22:28, 22:28] = 0
    mask[24:26, 24:26] = 1
    mask[45:55, 5:15] = 1
    assert sorted(gt_boxes(mask)) == [[5, 45, 15, 55], [10, 10, 40, 40]]


def test_gt_boxes_eight_connectivity_and_order():
    # Two 5x5 blocks touching at one corner are a single component.
    mask = block_mask((0, 5, 0, 5), (5, 10, 5, 10), shape=(12, 12))
    assert gt_boxes(mask) == [[0, 0, 10, 10]]
    # Separate components come bottom-most first (cv2's reverse raster order of contour starts).
    mask = block_mask((2, 7, 30, 36), (20, 26, 2, 8), (2, 7, 10, 16))
    assert gt_boxes(mask) == [[2, 20, 8, 26], [30, 2, 36, 7], [10, 2, 16, 7]]


def test_gt_boxes_touching_the_image_border_and_dtypes():
    mask = block_mask((0, 4, 0, 5), shape=(4, 5))
    assert gt_boxes(mask) == [[0, 0, 5, 4]]
    assert gt_boxes(mask.astype(bool)) == gt_boxes(mask * 255) == gt_boxes(mask.astype(np.float32))
    assert gt_boxes(np.zeros((8, 8))) == []


def test_gt_boxes_rejects_rgb():
    with pytest.raises(ConfigError, match="2-D"):
        gt_boxes(np.zeros((8, 8, 3), dtype=np.uint8))


def test_gt_boxes_matches_opencv_on_random_masks():
    cv2 = pytest.importorskip("cv2")
    from scipy import ndimage

    rng = np.random.default_rng(7)
    for trial in range(300):
        height, width = rng.integers(5, 40, size=2)
        mask = rng.random((height, width)) < rng.uniform(0.2, 0.8)
        if trial % 2:
            mask = ndimage.binary_closing(mask)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        expected = []
        for contour in contours:
            if cv2.contourArea(contour) > 10:
                x, y, w, h = cv2.boundingRect(contour)
                expected.append([x, y, x + w, y + h])
        assert gt_boxes(mask) == expected, f"trial {trial}"


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def test_box_iou_plus_one_convention():
    assert box_iou([3, 3, 3, 3], [3, 3, 3, 3]) == 1.0  # a one-pixel box has area 1
    assert box_iou([0, 0, 1, 1], [1, 1, 2, 2]) == pytest.approx(1 / 7)  # 4 + 4 - 1
    assert box_iou([0, 0, 9, 9], [20, 20, 29, 29]) == 0.0


def test_mask_iou_branches():
    a = block_mask((0, 2, 0, 4), shape=(4, 4))  # 8 px
    b = block_mask((0, 4, 0, 2), shape=(4, 4))  # 8 px, overlap 4
    assert mask_iou(a, b) == pytest.approx(4 / 12)
    assert mask_iou(a, np.zeros((5, 5))) == 0.0  # shapes differ
    assert mask_iou(np.zeros((4, 4)), np.zeros((4, 4))) == 0.0  # empty union


# ------------------------------------------------------------------------------------------
# stage 1: format
# ------------------------------------------------------------------------------------------

GT = [[10, 10, 29, 19]]


def s1(text, truth=GT, **kw):
    return stage1(text, truth_boxes=truth, **kw)


def test_format_good_and_multiline():
    assert s1(boxes_answer(GT))["format"] == 2.0
    text = "<think>line one\nline two</think>\n\n<answer>\n" + json.dumps([{"bbox_2d": GT[0]}]) + "\n</answer>"
    assert s1(text)["format"] == 2.0


@pytest.mark.parametrize(
    "text",
    [
        '<answer>[{"bbox_2d": [10, 10, 29, 19]}]</answer>',  # no think
        '<think>a<answer>[{"bbox_2d": [10, 10, 29, 19]}]</answer>',  # unclosed think
        '<think>a</think><answer>[{"bbox_2d": [10, 10, 29, 19]}]</answer> done',  # text after
        ' <think>a</think><answer>[{"bbox_2d": [10, 10, 29, 19]}]</answer>',  # text before
        '<think>a</think>x<answer>[{"bbox_2d": [10, 10, 29, 19]}]</answer>',  # text between
    ],
)
def test_format_think_answer_pattern_fails_but_items_still_count(text):
    result = s1(text)
    assert result["format"] == 1.0  # only the item fraction
    assert result["accuracy"] == 1.0  # the answer itself is still read


def test_format_item_fractions():
    good = {"bbox_2d": [1, 2, 3, 4]}
    assert s1(answer([good, {"bbox_2d": [1, 2, 3, 4], "label": "school"}]))["format"] == 1.5
    assert s1(answer([good, {"box": [1, 2, 3, 4]}, good]))["format"] == pytest.approx(1 + 2 / 3)
    assert s1(answer([good, {"bbox_2d": [1, 2, 3]}]))["format"] == 1.5
    assert s1(answer([good, {"bbox_2d": [1, 2, 3, 4, 5]}, {"bbox_2d": ["1", 2, 3, 4]}, good]))["format"] == 1.5
    assert s1(answer([good, [1, 2, 3, 4]]))["format"] == 1.5
    assert s1(answer([]))["format"] == 1.0
    assert s1(answer({"bbox_2d": [1, 2, 3, 4]}))["format"] == 1.0  # not a list
    assert s1("<think>a</think><answer>[{'bbox_2d': [1, 2, 3, 4]}]</answer>")["format"] == 1.0  # not JSON


# ------------------------------------------------------------------------------------------
# stage 1: accuracy and length
# ------------------------------------------------------------------------------------------


def test_accuracy_perfect_match_in_any_order():
    truth = [[0, 0, 19, 19], [40, 40, 59, 59]]
    result = s1(boxes_answer(truth[::-1]), truth)
    assert result["accuracy"] == 1.0
    assert result["total"] == 4.0


def test_accuracy_iou_without_l1():
    truth = [[0, 0, 99, 99]]
    # IoU = 100^2 / 140^2 = 0.51 > 0.5, L1 = (0 + 0 + 40 + 40) / 4 = 20 >= 10 -> cost 1 -> 0
    assert box_iou([0, 0, 139, 139], truth[0]) > 0.5
    assert s1(boxes_answer([[0, 0, 139, 139]]), truth)["accuracy"] == 0.0
    # and the other way round: L1 = 5 < 10 but IoU = 25 / 175 <= 0.5 -> cost 1 -> 0
    assert s1(boxes_answer([[5, 5, 14, 14]]), [[0, 0, 9, 9]])["accuracy"] == 0.0
    # L1 = 5 and IoU = 100^2/110^2 -> cost 0 -> 1
    assert s1(boxes_answer([[0, 0, 109, 109]]), truth)["accuracy"] == 1.0


def test_accuracy_negative_when_both_conditions_fail():
    assert s1(boxes_answer([[200, 200, 220, 220]]))["accuracy"] == -1.0
    truth = [[0, 0, 19, 19], [40, 40, 59, 59]]
    # one perfect (+1), one far off (-1): (2 - (0 + 2)) / 2 = 0
    assert s1(boxes_answer([[0, 0, 19, 19], [300, 300, 320, 320]]), truth)["accuracy"] == 0.0


def test_accuracy_with_different_counts():
    truth = [[0, 0, 19, 19], [40, 40, 59, 59]]
    assert s1(boxes_answer([truth[1]]), truth)["accuracy"] == 0.5  # 1 / max(1, 2)
    three = [*truth, [100, 100, 120, 120]]
    result = s1(boxes_answer(three), truth)
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["length"] == pytest.approx(math.exp(-2 * 1 / 2))


def test_accuracy_caps_both_lists_at_120():
    truth = [[i * 10, 0, i * 10 + 8, 8] for i in range(MAX_OBJECTS + 10)]
    # The first 120 agree; without the cap the 10 extra ground-truth boxes would cost accuracy.
    result = s1(boxes_answer(truth[:MAX_OBJECTS]), truth)
    assert result["accuracy"] == 1.0
    assert result["length"] == pytest.approx(math.exp(-2 * 10 / (MAX_OBJECTS + 10)))  # uncapped counts
    pred = truth[:MAX_OBJECTS] + [[5000, 5000, 5010, 5010]] * 30
    assert s1(boxes_answer(pred), truth[:MAX_OBJECTS])["accuracy"] == 1.0


@pytest.mark.parametrize(
    "text",
    [
        "<think>a</think><answer>[{bbox_2d: [1, 2, 3, 4]}]</answer>",  # not JSON
        "<think>a</think>no answer tags",
        '<think>a</think><answer>[{"bbox_2d": [10, 10, 29, 19]}, {"bbox_2d": [1, 2]}]</answer>',
        '<think>a</think><answer>[{"bbox_2d": [10, 10, 29, 19]}, {"points": [[1, 2]]}]</answer>',
        '<think>a</think><answer>{"bbox_2d": [10, 10, 29, 19]}</answer>',
        '<think>a</think><answer>[{"bbox_2d": [10, 10, 29, NaN]}]</answer>',
    ],
)
def test_unparseable_answer_scores_zero_accuracy_and_length(text):
    result = s1(text)
    assert result["accuracy"] == 0.0
    assert result["length"] == 0.0


def test_only_the_first_answer_is_read():
    text = f"<think>a</think><answer>{json.dumps([{'bbox_2d': [300, 300, 320, 320]}])}</answer>" + (
        f"<answer>{json.dumps([{'bbox_2d': GT[0]}])}</answer>"
    )
    result = s1(text)
    assert result["format"] == 2.0  # the lazy pattern still spans both answers
    assert result["accuracy"] == -1.0  # but the first answer is the one scored


def test_length_reward_cases():
    assert s1(answer([]), [])["length"] == 1.0  # J = K = 0
    assert s1(answer([]), [])["accuracy"] == 0.0  # empty scores no accuracy
    assert s1(boxes_answer(GT), [])["length"] == 0.0  # J = 0 < K
    assert s1(boxes_answer(GT), [])["accuracy"] == 0.0
    assert s1(answer([]), GT)["length"] == pytest.approx(math.exp(-2))  # K = 0 < J = 1
    truth = [[i * 30, 0, i * 30 + 20, 20] for i in range(4)]
    assert s1(boxes_answer(truth[:1]), truth)["length"] == pytest.approx(math.exp(-2 * 3 / 4))


def test_stage1_from_mask_equals_from_boxes():
    mask = block_mask((10, 20, 10, 30), (40, 50, 40, 55))
    text = boxes_answer([[10, 10, 30, 20]])
    assert stage1(text, mask) == stage1(text, truth_boxes=gt_boxes(mask))
    assert stage1(text, mask)["length"] == pytest.approx(math.exp(-1))


def test_stage1_argument_errors():
    with pytest.raises(ConfigError):
        stage1("x")
    with pytest.raises(ConfigError):
        stage1("x", np.zeros((4, 4)), truth_boxes=[])
    with pytest.raises(ConfigError, match="variant"):
        stage1("x", truth_boxes=[], variant="Paper!")
    with pytest.raises(ConfigError):
        stage1("x", truth_boxes=[[1, 2, 3]])
    with pytest.raises(ConfigError, match="str"):
        stage1(b"<think></think>", truth_boxes=[])
    with pytest.raises(ConfigError, match="J x 4"):
        stage1("x", truth_boxes=[[1, 2, 3, 4, 5, 6, 7, 8]])


# ------------------------------------------------------------------------------------------
# paper variant
# ------------------------------------------------------------------------------------------


def test_paper_gate_zeroes_the_episode():
    text = f"<answer>{json.dumps([{'bbox_2d': GT[0]}])}</answer>"
    assert s1(text, variant="paper") == {"format": 0.0, "accuracy": 0.0, "length": 0.0, "total": 0.0}
    assert s1(text)["total"] > 0  # the release variant still rewards it


def test_paper_accuracy_counts_iou_matches_only():
    truth = [[0, 0, 99, 99]]
    loose = boxes_answer([[0, 0, 139, 139]])  # IoU 0.51, L1 20
    assert s1(loose, truth, variant="paper")["accuracy"] == 1.0
    far = boxes_answer([[300, 300, 320, 320]])
    assert s1(far, truth, variant="paper")["accuracy"] == 0.0  # never negative
    two = [[0, 0, 19, 19], [40, 40, 59, 59]]
    result = s1(boxes_answer([*two, [100, 100, 120, 120]]), two, variant="paper")
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["format"] == 1.0
    assert result["total"] == pytest.approx(1 + 2 / 3 + math.exp(-1))


def test_paper_format_is_binary_even_with_bad_items():
    result = s1(answer([{"bbox_2d": [1, 2, 3]}]), variant="paper")
    assert result["format"] == 1.0
    assert result["accuracy"] == 0.0


# ------------------------------------------------------------------------------------------
# stage 2
# ------------------------------------------------------------------------------------------

BOX_A = [10, 10, 30, 20]
BOX_B = [40, 40, 50, 58]
STAGE1 = json.dumps([{"bbox_2d": BOX_A}, {"bbox_2d": BOX_B}])
MASK = block_mask((10, 20, 10, 30))


def s2(items, stage1_answer=STAGE1, pred=MASK, gt=MASK, **kw):
    text = items if isinstance(items, str) else answer(items)
    return stage2(text, stage1_answer, pred, gt, **kw)


def item(box, points):
    return {"bbox_2d": box, "points": points}


def test_stage2_perfect():
    result = s2([item(BOX_A, [[15, 15], [20, 12]]), item(BOX_B, [[45, 50], [41, 41]])])
    assert result == {"format": 2.0, "accuracy": 1.0, "length": 1.0, "total": 4.0}
    # the stage-1 answer may be given parsed
    assert s2([item(BOX_A, [[15, 15], [20, 12]]), item(BOX_B, [[45, 50], [41, 41]])], json.loads(STAGE1)) == result


def test_stage2_box_must_equal_stage1_box_at_same_index():
    swapped = [item(BOX_B, [[45, 50], [41, 41]]), item(BOX_A, [[15, 15], [20, 12]])]
    assert s2(swapped)["format"] == 1.0
    moved = [item([11, 10, 30, 20], [[15, 15], [20, 12]]), item(BOX_B, [[45, 50], [41, 41]])]
    assert s2(moved)["format"] == 1.5
    floats = [item([10.0, 10.0, 30.0, 20.0], [[15, 15]]), item(BOX_B, [[45, 50]])]
    assert s2(floats)["format"] == 2.0  # equal as numbers


def test_stage2_unequal_lengths_leave_only_the_think_term():
    result = s2([item(BOX_A, [[15, 15], [20, 12]])])
    assert result["format"] == 1.0
    assert result["length"] == 1.0
    assert s2([item(BOX_A, [[15, 15]])], "not json")["format"] == 1.0


def test_stage2_points_strictly_inside():
    on_border = [item(BOX_A, [[10, 15], [20, 12]]), item(BOX_B, [[45, 58]])]
    assert s2(on_border)["format"] == 1.0
    outside = [item(BOX_A, [[15, 15], [31, 12]]), item(BOX_B, [[45, 50]])]
    assert s2(outside)["format"] == 1.5
    bad_point = [item(BOX_A, [[15, 15, 1]]), item(BOX_B, [[45, 50]])]
    assert s2(bad_point)["format"] == 1.5


def test_stage2_missing_points_and_length():
    result = s2([{"bbox_2d": BOX_A}, item(BOX_B, [[45, 50], [41, 41]])])
    assert result["format"] == 1.5
    assert result["length"] == pytest.approx(0.5)  # (0 + 1) / 2
    # "points": [] is a group of 0 points, as in the release: valid in the format term (all of its
    # zero points are inside) and exp(-(0 - 2)^2 / 8) in the length term
    result = s2([item(BOX_A, []), item(BOX_B, [[45, 50], [41, 41], [42, 42]])])
    assert result["format"] == 2.0
    assert result["length"] == pytest.approx((math.exp(-0.5) + math.exp(-1 / 8)) / 2)
    result = s2([{"bbox_2d": BOX_A, "points": None}, item(BOX_B, [[45, 50], [41, 41], [42, 42]])])
    assert result["format"] == 1.5 and result["length"] == pytest.approx(math.exp(-1 / 8) / 2)
    five = [[11 + i, 15] for i in range(5)]
    assert s2([item(BOX_A, five), item(BOX_B, [[45, 50]])])["length"] == pytest.approx(
        (math.exp(-9 / 8) + math.exp(-1 / 8)) / 2
    )
    assert s2("<think>a</think><answer>[]</answer>", "[]")["length"] == 0.0
    assert s2("<think>a</think><answer>[]</answer>", "[]")["format"] == 1.0


def test_stage2_accuracy_is_mask_iou():
    half = block_mask((10, 20, 10, 20))
    assert s2([], pred=half)["accuracy"] == pytest.approx(0.5)
    assert s2([], pred=np.zeros((30, 30)))["accuracy"] == 0.0  # shapes differ
    empty = np.zeros((60, 60))
    assert s2([], pred=empty, gt=empty)["accuracy"] == 0.0  # empty union


def test_stage2_paper_gate():
    good = [item(BOX_A, [[15, 15], [20, 12]]), item(BOX_B, [[45, 50], [41, 41]])]
    bare = f"<answer>{json.dumps(good)}</answer>"
    assert s2(bare, variant="paper")["total"] == 0.0
    assert s2(bare)["total"] == pytest.approx(1 + 1 + 1)
    result = s2(good, variant="paper")
    assert result == {"format": 1.0, "accuracy": 1.0, "length": 1.0, "total": 3.0}


def test_truth_boxes_accept_numpy():
    text = boxes_answer(GT)
    assert stage1(text, truth_boxes=np.array(GT, dtype=np.int64)) == s1(text)
    assert stage1(answer([]), truth_boxes=np.zeros((0, 4)))["length"] == 1.0


# ------------------------------------------------------------------------------------------
# random cases against an independent reading of the release's reward rules
# ------------------------------------------------------------------------------------------

_PATTERN = r"<think>.*?</think>\s*<answer>.*?</answer>"


def _release_answer(text):
    import re

    match = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
    if match is None:
        return None
    try:
        return json.loads(match.group(1))
    except ValueError:
        return None


def _release_stage1(text, truth):
    """Stage-1 reward as the release computes it (from its description), written independently."""
    import re

    from scipy.optimize import linear_sum_assignment

    think = 1.0 if re.fullmatch(_PATTERN, text, re.DOTALL) else 0.0
    items = _release_answer(text)
    fraction = 0.0
    if isinstance(items, list) and items:
        fraction = sum(isinstance(i, dict) and set(i) == {"bbox_2d"} and isinstance(i["bbox_2d"], list)
                       and len(i["bbox_2d"]) == 4 for i in items) / len(items)
    readable = isinstance(items, list) and all(isinstance(i, dict) and isinstance(i.get("bbox_2d"), list)
                                               and len(i["bbox_2d"]) == 4 for i in items)
    accuracy = length = 0.0
    if readable:
        k, j = len(items), len(truth)
        length = (1.0 if k == 0 else 0.0) if j == 0 else math.exp(-2 * abs(k - j) / j)
        pred = [i["bbox_2d"] for i in items][:120]
        gt = list(truth)[:120]
        if pred and gt:
            cost = np.zeros((len(pred), len(gt)))
            for a, p in enumerate(pred):
                for b, g in enumerate(gt):
                    iw = max(0, min(p[2], g[2]) - max(p[0], g[0]) + 1)
                    ih = max(0, min(p[3], g[3]) - max(p[1], g[1]) + 1)
                    inter = iw * ih
                    union = (p[2] - p[0] + 1) * (p[3] - p[1] + 1) + (g[2] - g[0] + 1) * (g[3] - g[1] + 1) - inter
                    l1 = sum(abs(u - v) for u, v in zip(p, g)) / 4
                    cost[a, b] = 2 - (inter / union > 0.5) - (l1 < 10)
            rows, cols = linear_sum_assignment(cost)
            accuracy = (len(rows) - cost[rows, cols].sum()) / max(len(pred), len(gt))
    return {"format": think + fraction, "accuracy": accuracy, "length": length}


def _release_stage2(text, stage1_text, pred, gt):
    """Stage-2 reward as the release computes it (from its description), written independently."""
    import re

    think = 1.0 if re.fullmatch(_PATTERN, text, re.DOTALL) else 0.0
    items = _release_answer(text)
    first = json.loads(stage1_text)
    fraction = 0.0
    if isinstance(items, list) and items and len(items) == len(first):
        good = 0
        for i, f in zip(items, first):
            if "bbox_2d" in i and "points" in i and i["bbox_2d"] == f["bbox_2d"]:
                x1, y1, x2, y2 = i["bbox_2d"]
                good += all(len(p) == 2 and x1 < p[0] < x2 and y1 < p[1] < y2 for p in i["points"])
        fraction = good / len(items)
    length = 0.0
    if isinstance(items, list) and items:
        length = sum(math.exp(-((len(i["points"]) - 2) ** 2) / 8) for i in items if "points" in i) / len(items)
    union = np.logical_or(pred, gt).sum()
    accuracy = 0.0 if union == 0 else np.logical_and(pred, gt).sum() / union
    return {"format": think + fraction, "accuracy": accuracy, "length": length}


def _random_box(rng, size=60):
    x1, y1 = rng.integers(0, size - 10, 2)
    return [int(x1), int(y1), int(x1 + rng.integers(2, 30)), int(y1 + rng.integers(2, 30))]


def _jitter(rng, box):
    x1, y1, x2, y2 = np.add(box, rng.integers(-6, 7, 4))
    return [min(x1, x2), min(y1, y2), max(x1, x2) + 1, max(y1, y2) + 1]


def _wrapped(rng, items):
    body = json.dumps(items)
    style = rng.integers(0, 6)
    if style == 0:
        return f"<answer>{body}</answer>"  # no think: only the item terms
    if style == 1:
        return f"<think>t</think><answer>{body[:-1]}</answer>"  # not JSON
    newlines = "\n" * int(rng.integers(0, 2))
    return f"<think>t{newlines}</think>\n<answer>{body}</answer>"


def _random_case(rng):
    truth = [_random_box(rng) for _ in range(rng.integers(0, 4))]
    stage1_boxes = [_jitter(rng, b) if rng.random() < 0.7 else _random_box(rng) for b in truth]
    stage1_boxes += [_random_box(rng) for _ in range(rng.integers(0, 2))]
    stage1_boxes = [[int(v) for v in b] for b in stage1_boxes]
    stage1_items = [{"bbox_2d": b} if rng.random() < 0.9 else {"bbox_2d": b, "score": 1} for b in stage1_boxes]
    items = []
    for b in stage1_boxes:
        box = b if rng.random() < 0.85 else _random_box(rng)
        item = {"bbox_2d": box}
        kind = rng.random()
        if kind < 0.7:  # points inside or around the box; 0 to 5 of them, [] included
            item["points"] = [[int(rng.integers(box[0] - 3, box[2] + 4)), int(rng.integers(box[1] - 3, box[3] + 4))]
                              for _ in range(rng.integers(0, 6))]
        elif kind < 0.85:
            item["points"] = []
        items.append(item)
    if rng.random() < 0.1 and items:
        items.pop()  # a length mismatch leaves only the think term
    pred = rng.random((60, 60)) < rng.random()
    gt = rng.random((60, 60)) < rng.random()
    return truth, _wrapped(rng, stage1_items), json.dumps(stage1_items), _wrapped(rng, items), pred, gt


def test_rewards_equal_the_release_rules_on_random_cases():
    rng = np.random.default_rng(2000)
    empty_points = 0
    for _ in range(2000):
        truth, text1, stage1_json, text2, pred, gt = _random_case(rng)
        ours1, ref1 = s1(text1, truth), _release_stage1(text1, truth)
        assert {k: ours1[k] for k in ref1} == pytest.approx(ref1), (text1, truth)
        ours2, ref2 = stage2(text2, stage1_json, pred, gt), _release_stage2(text2, stage1_json, pred, gt)
        assert {k: ours2[k] for k in ref2} == pytest.approx(ref2), (text2, stage1_json)
        empty_points += '"points": []' in text2
    assert empty_points > 100  # the empty-points case is well represented
