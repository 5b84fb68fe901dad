"""Metrics: gIoU, cIoU, instance F1, the Scores accumulator and the Table-1 layout, on tiny masks."""

from __future__ import annotations

import gc
import math
import pickle
import weakref

import numpy as np
import pytest

from sociogeo.errors import ConfigError
from sociogeo.train.metrics import (
    PAPER_TABLE1,
    InstanceCounts,
    Scores,
    ciou,
    format_table,
    giou,
    instance_f1,
    iou,
)


def mask(shape, *blocks):
    """Bool mask with blocks (row0, row1, col0, col1), ends exclusive."""
    out = np.zeros(shape, dtype=bool)
    for r0, r1, c0, c1 in blocks:
        out[r0:r1, c0:c1] = True
    return out


A = mask((4, 4), (0, 2, 0, 2))  # 4 px
B = mask((4, 4), (0, 2, 0, 4))  # 8 px, contains A
EMPTY = np.zeros((4, 4), dtype=np.uint8)


def test_iou_by_hand():
    assert iou(A, B) == 0.5
    assert iou(B * 255, A.astype(np.float32)) == 0.5  # any nonzero pixel is foreground
    assert iou(A, EMPTY) == 0.0
    assert iou(EMPTY, EMPTY) == 1.0  # the release's convention for an empty union
    with pytest.raises(ConfigError, match="shape"):
        iou(A, np.zeros((5, 5)))


def test_giou_and_ciou_differ_as_defined():
    far = mask((4, 4), (2, 4, 0, 4))  # 8 px, disjoint from A
    # per-image IoU: 1.0 and 0.0 -> gIoU 0.5; totals: inter 4 + 0, union 4 + 12 -> cIoU 0.25
    assert giou([A, A], [A, far]) == 0.5
    assert ciou([A, A], [A, far]) == 0.25


def test_empty_images_in_the_set():
    # An empty-vs-empty image counts 1.0 in gIoU and adds nothing to cIoU's sums.
    assert giou([A, EMPTY], [B, EMPTY]) == pytest.approx((0.5 + 1.0) / 2)
    assert ciou([A, EMPTY], [B, EMPTY]) == 0.5
    assert ciou([EMPTY], [EMPTY]) == 1.0
    # A false alarm on an empty image: IoU 0 and 4 more pixels of union.
    assert giou([A, A], [B, EMPTY]) == 0.25
    assert ciou([A, A], [B, EMPTY]) == pytest.approx(4 / 12)


def test_set_metrics_input_errors():
    with pytest.raises(ConfigError, match="no masks"):
        giou([], [])
    with pytest.raises(ConfigError, match="length"):
        ciou([A, A], [A])
    with pytest.raises(ConfigError, match="2-D"):
        giou([np.zeros((4, 4, 3))], [np.zeros((4, 4, 3))])


# ------------------------------------------------------------------------------------------
# instance F1
# ------------------------------------------------------------------------------------------


def test_f1_single_instance_match_and_miss():
    gt = mask((10, 10), (2, 6, 2, 6))
    assert instance_f1(gt, gt) == InstanceCounts(1, 0, 0)
    shifted = mask((10, 10), (3, 7, 3, 7))  # IoU 9/23 < 0.5
    assert instance_f1(shifted, gt) == InstanceCounts(0, 1, 1)
    assert instance_f1(shifted, gt).f1 == 0.0


def test_f1_split_prediction():
    gt = mask((4, 12), (0, 2, 0, 8))  # 16 px
    halves = mask((4, 12), (0, 2, 0, 3), (0, 2, 5, 8))  # two 6-px pieces, IoU 6/16 each
    assert instance_f1(halves, gt) == InstanceCounts(0, 2, 1)
    # a split where one piece is big enough: 10 px of 16 -> IoU 0.625
    big_small = mask((4, 12), (0, 2, 0, 5), (0, 2, 6, 8))
    counts = instance_f1(big_small, gt)
    assert counts == InstanceCounts(1, 1, 0)
    assert counts.f1 == pytest.approx(2 / 3)


def test_f1_merged_prediction():
    gt = mask((4, 12), (0, 2, 0, 3), (0, 2, 4, 7))  # two 6-px instances, one column apart
    merged = mask((4, 12), (0, 2, 0, 7))  # 14 px covering both: IoU 6/14 each
    assert instance_f1(merged, gt) == InstanceCounts(0, 1, 2)


def test_f1_uses_eight_connectivity():
    diagonal_pair = mask((6, 6), (0, 2, 0, 2), (2, 4, 2, 4))  # blocks touch at a corner: one instance
    assert instance_f1(diagonal_pair, diagonal_pair) == InstanceCounts(1, 0, 0)
    one_block = mask((6, 6), (0, 2, 0, 2))  # IoU 4/8 = 0.5: matches at >= 0.5
    assert instance_f1(one_block, diagonal_pair) == InstanceCounts(1, 0, 0)
    assert instance_f1(one_block, diagonal_pair, iou_threshold=0.51) == InstanceCounts(0, 1, 1)


def test_f1_empty_cases():
    assert instance_f1(EMPTY, EMPTY) == InstanceCounts(0, 0, 0)
    assert instance_f1(EMPTY, EMPTY).f1 == 1.0
    assert instance_f1(EMPTY, A) == InstanceCounts(0, 0, 1)
    assert instance_f1(A, EMPTY) == InstanceCounts(0, 1, 0)


def test_f1_maximum_matching_with_a_low_threshold():
    # One row: G1 = cols 0-9, G2 = cols 12-15; P2 = cols 0-3, P1 = cols 5-15.
    # IoU(P1, G1) = 5/16, IoU(P1, G2) = 4/11, IoU(P2, G1) = 4/10: at 0.3 both P can be matched.
    gt = mask((1, 16), (0, 1, 0, 10), (0, 1, 12, 16))
    pred = mask((1, 16), (0, 1, 0, 4), (0, 1, 5, 16))
    assert instance_f1(pred, gt, iou_threshold=0.3) == InstanceCounts(2, 0, 0)
    assert instance_f1(pred, gt, iou_threshold=0.38) == InstanceCounts(1, 1, 1)
    with pytest.raises(ConfigError):
        instance_f1(pred, gt, iou_threshold=0)


def test_f1_many_specks():
    rng = np.random.default_rng(0)
    pred = rng.random((200, 200)) < 0.05
    gt = mask((200, 200), (50, 150, 50, 150))
    counts = instance_f1(pred, gt)
    assert counts.tp == 0 and counts.fn == 1 and counts.fp > 100


# ------------------------------------------------------------------------------------------
# Scores
# ------------------------------------------------------------------------------------------


def filled_scores():
    scores = Scores()
    far = mask((4, 4), (2, 4, 0, 4))
    scores.add(A, A, "name")  # IoU 1, inter 4 union 4, tp 1
    scores.add(A, B, "name")  # IoU 0.5, inter 4 union 8, tp 1 (IoU 0.5 >= 0.5)
    scores.add(A, far, level="class")  # IoU 0, inter 0 union 12, fp 1 fn 1
    scores.add(EMPTY, EMPTY, level="Socio-function")  # IoU 1, nothing else
    scores.add(A, A)  # no level: overall only
    return scores


def test_scores_per_level_and_overall():
    scores = filled_scores()
    assert scores["name"].n == 2
    assert scores["name"].giou == 0.75
    assert scores["name"].ciou == pytest.approx(8 / 12)
    assert scores["name"].f1 == 1.0
    assert scores["class"].giou == 0.0 and scores["class"].ciou == 0.0 and scores["class"].f1 == 0.0
    assert scores["function"].giou == 1.0 and scores["function"].ciou == 1.0 and scores["function"].f1 == 1.0
    total = scores["all"]
    assert total.n == 5
    assert total.giou == pytest.approx((1 + 0.5 + 0 + 1 + 1) / 5)
    assert total.ciou == pytest.approx((4 + 4 + 0 + 0 + 4) / (4 + 8 + 12 + 0 + 4))
    # micro F1 from summed counts: tp 3, fp 1, fn 1
    assert (total.tp, total.fp, total.fn) == (3, 1, 1)
    assert total.f1 == pytest.approx(6 / 8)


def test_scores_level_errors_and_empty_levels():
    scores = Scores()
    with pytest.raises(ConfigError, match="level"):
        scores.add(A, A, "city")
    assert math.isnan(scores["name"].giou) and math.isnan(scores["all"].ciou)


def test_scores_keep_no_masks():
    scores = Scores()
    big_pred = np.ones((300, 300), dtype=bool)
    big_gt = np.ones((300, 300), dtype=bool)
    ref = weakref.ref(big_pred)
    scores.add(big_pred, big_gt, "class")
    del big_pred
    gc.collect()
    assert ref() is None  # nothing inside the accumulator holds the mask
    size_after_one = len(pickle.dumps(scores))
    rng = np.random.default_rng(1)
    for _ in range(40):
        scores.add(rng.random((64, 64)) > 0.5, rng.random((64, 64)) > 0.5, "name")
    # only sums grow (a few more digits at most), never with the number or size of masks
    assert len(pickle.dumps(scores)) < size_after_one + 200


def test_scores_merge_equals_single_pass():
    merged = filled_scores().merge(filled_scores())
    single = filled_scores()
    far = mask((4, 4), (2, 4, 0, 4))
    for pred, gt, level in [
        (A, A, "name"), (A, B, "name"), (A, far, "class"), (EMPTY, EMPTY, "function"), (A, A, None)
    ]:
        single.add(pred, gt, level)
    assert merged == single
    assert merged["all"].n == 10


def test_to_frame():
    frame = filled_scores().to_frame()
    assert list(frame.index) == ["all", "name", "class", "function"]
    assert frame.loc["name", "giou"] == 0.75
    assert frame.loc["all", "n"] == 5
    assert {"ciou", "giou", "f1", "tp", "fp", "fn"} <= set(frame.columns)
    assert math.isnan(Scores().to_frame().loc["class", "f1"])


def test_format_table_layout_and_paper_row():
    scores = filled_scores()
    table = format_table(scores)
    lines = table.splitlines()
    for title in ("All", "Socio-name", "Socio-class", "Socio-function"):
        assert title in lines[0]
    assert lines[1].split("|")[1].split() == ["cIoU", "gIoU", "F1"]
    paper_row = next(line for line in lines if line.startswith("SocioReasoner"))
    numbers = [float(x) for part in paper_row.split("|")[1:] for x in part.split()]
    assert numbers == [v for key in ("all", "name", "class", "function") for v in PAPER_TABLE1[key]]
    assert numbers[:3] == [47.9, 52.8, 59.7]  # the spec's "All" figures
    ours = next(line for line in lines if line.startswith("sociogeo"))
    assert "n=5" in ours
    cells = ours.split("|")[1].split()
    assert [float(c) for c in cells] == pytest.approx(
        [100 * scores["all"].ciou, 100 * scores["all"].giou, 100 * scores["all"].f1], abs=0.05
    )
    no_paper = format_table(Scores(), paper=False, label="mine")
    assert "47.9" not in no_paper and "SocioReasoner" not in no_paper
    assert no_paper.splitlines()[-1].startswith("mine (n=0)")
    assert "–" in no_paper
