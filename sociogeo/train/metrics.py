"""Evaluation metrics of the paper's Table 1: gIoU, cIoU and instance-level F1, per query level.

Conventions (the paper leaves some open; these are sociogeo's, stated once here):

- A mask is an H x W array; any nonzero pixel is foreground.
- Per-image IoU of two empty masks is 1.0: predicting nothing where there is nothing is right.
  This follows the release's evaluation, which counts a zero union as IoU 1.0. (Training rewards
  use 0 instead; see :func:`sociogeo.train.rewards.mask_iou`.)
- gIoU: mean of per-image IoU. cIoU: total intersection / total union over the set (1.0 when the
  total union is 0).
- Instance F1: connected components (8-connectivity) of prediction and ground truth, matched one
  to one at IoU >= 0.5 (the largest such matching, by the Hungarian algorithm); a matched pair is
  a true positive, an unmatched prediction component a false positive, an unmatched ground-truth
  component a false negative. F1 = 2 tp / (2 tp + fp + fn), and 1.0 when all three are 0. Over a
  set, F1 is computed from the summed tp / fp / fn (micro average), not averaged per image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

import numpy as np

from .._optional import require
from ..errors import ConfigError
from ..imagery.arrays import as_mask

__all__ = [
    "as_mask",
    "iou",
    "giou",
    "ciou",
    "instance_f1",
    "InstanceCounts",
    "Scores",
    "format_table",
    "format_rows",
    "LEVELS",
    "PAPER_TABLE1",
]

#: Query levels of SocioSeg, in the paper's column order.
LEVELS = ("name", "class", "function")

#: SocioReasoner (RL) on the SocioSeg test set, Table 1 of the paper, in %:
#: level -> (cIoU, gIoU, F1).
PAPER_TABLE1 = {
    "all": (47.9, 52.8, 59.7),
    "name": (52.6, 55.7, 64.6),
    "class": (47.6, 52.8, 60.1),
    "function": (40.6, 46.9, 50.3),
}

_EIGHT = np.ones((3, 3), dtype=bool)


def _pair(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    p, g = as_mask(pred), as_mask(gt)
    if p.shape != g.shape:
        raise ConfigError(
            f"prediction and ground truth differ in shape: {p.shape} vs {g.shape}; "
            "resize the prediction to the ground truth's grid (nearest neighbour) first"
        )
    return p, g


def iou(pred: Any, gt: Any) -> float:
    """IoU of two same-shape masks; 1.0 when both are empty."""
    p, g = _pair(pred, gt)
    union = np.count_nonzero(p | g)
    return 1.0 if union == 0 else np.count_nonzero(p & g) / union


def giou(preds: Iterable[Any], gts: Iterable[Any]) -> float:
    """Mean of per-image IoU over paired masks (both-empty images count 1.0)."""
    scores = Scores()
    for pred, gt in _zip_strict(preds, gts):
        scores.add(pred, gt, instances=False)
    return scores.total.giou


def ciou(preds: Iterable[Any], gts: Iterable[Any]) -> float:
    """Total intersection / total union over paired masks (1.0 if the total union is 0)."""
    scores = Scores()
    for pred, gt in _zip_strict(preds, gts):
        scores.add(pred, gt, instances=False)
    return scores.total.ciou


def _zip_strict(preds: Iterable[Any], gts: Iterable[Any]):
    sentinel = object()
    a, b = iter(preds), iter(gts)
    n = 0
    while True:
        p, g = next(a, sentinel), next(b, sentinel)
        if p is sentinel and g is sentinel:
            break
        if p is sentinel or g is sentinel:
            raise ConfigError(f"preds and gts differ in length (they diverge after {n} pairs)")
        n += 1
        yield p, g
    if n == 0:
        raise ConfigError("no masks given: pass at least one (prediction, ground truth) pair")


class InstanceCounts(NamedTuple):
    """Instance-level counts of one image or a set: true/false positives, false negatives."""

    tp: int
    fp: int
    fn: int

    @property
    def f1(self) -> float:
        """2 tp / (2 tp + fp + fn); 1.0 when there is nothing to find and nothing was found."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 1.0 if denominator == 0 else 2 * self.tp / denominator

    def __add__(self, other):  # type: ignore[override]  (sum counts, not concatenate)
        return InstanceCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


def instance_f1(pred: Any, gt: Any, iou_threshold: float = 0.5) -> InstanceCounts:
    """Match 8-connected components of ``pred`` and ``gt`` one to one at IoU >= ``iou_threshold``.

    The matching has the largest possible number of pairs (Hungarian algorithm on the pairs that
    clear the threshold). Returns :class:`InstanceCounts`; its ``.f1`` is this image's F1.
    """
    require("scipy", purpose="connected components and matching in instance F1")
    from scipy import ndimage
    from scipy.optimize import linear_sum_assignment

    if not 0.0 < iou_threshold <= 1.0:
        raise ConfigError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    p, g = _pair(pred, gt)
    p_labels, n_pred = ndimage.label(p, structure=_EIGHT)
    g_labels, n_gt = ndimage.label(g, structure=_EIGHT)
    if n_pred == 0 or n_gt == 0:
        return InstanceCounts(0, n_pred, n_gt)
    # Overlap of every (prediction, ground truth) component pair in one pass over the pixels;
    # label 0 is background, kept so the areas come out of the same table.
    joint = np.bincount(
        (p_labels.ravel().astype(np.int64) * (n_gt + 1) + g_labels.ravel()),
        minlength=(n_pred + 1) * (n_gt + 1),
    ).reshape(n_pred + 1, n_gt + 1)
    inter = joint[1:, 1:].astype(np.float64)
    area_p = joint[1:, :].sum(axis=1, dtype=np.float64)
    area_g = joint[:, 1:].sum(axis=0, dtype=np.float64)
    pair_iou = inter / (area_p[:, None] + area_g[None, :] - inter)
    eligible = pair_iou >= iou_threshold
    # Only components with some eligible partner take part; keeps the assignment small when a
    # prediction is speckled with thousands of components.
    rows = np.flatnonzero(eligible.any(axis=1))
    cols = np.flatnonzero(eligible.any(axis=0))
    tp = 0
    if rows.size:
        sub = eligible[np.ix_(rows, cols)]
        r, c = linear_sum_assignment(-sub.astype(np.float64))
        tp = int(sub[r, c].sum())
    return InstanceCounts(tp, n_pred - tp, n_gt - tp)


@dataclass
class LevelScores:
    """Running sums for one level; O(1) memory whatever the number of samples."""

    n: int = 0
    iou_sum: float = 0.0
    intersection: int = 0
    union: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def giou(self) -> float:
        return self.iou_sum / self.n if self.n else math.nan

    @property
    def ciou(self) -> float:
        if not self.n:
            return math.nan
        return 1.0 if self.union == 0 else self.intersection / self.union

    @property
    def f1(self) -> float:
        return InstanceCounts(self.tp, self.fp, self.fn).f1 if self.n else math.nan

    def merge(self, other: LevelScores) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def _level(level: str | None) -> str | None:
    if level is None:
        return None
    key = str(level).strip().lower().removeprefix("socio-").removeprefix("socio_")
    if key not in LEVELS:
        raise ConfigError(f"level must be one of {LEVELS} (or None), got {level!r}")
    return key


@dataclass
class Scores:
    """Accumulates gIoU, cIoU and F1 sample by sample, per query level and overall.

    Only sums are kept (never the masks), so memory does not grow with the number of samples.

    >>> scores = Scores()
    >>> scores.add(pred_mask, gt_mask, level="class")   # doctest: +SKIP
    >>> scores.to_frame()                               # doctest: +SKIP
    """

    iou_threshold: float = 0.5
    total: LevelScores = field(default_factory=LevelScores)
    levels: dict[str, LevelScores] = field(default_factory=lambda: {k: LevelScores() for k in LEVELS})

    def add(self, pred: Any, gt: Any, level: str | None = None, *, instances: bool = True) -> LevelScores:
        """Add one sample: H x W prediction and ground truth, and its query level
        (``"name"``, ``"class"``, ``"function"``; None counts toward the overall scores only).
        ``instances=False`` skips the component matching (F1 counts stay 0).
        Returns the sample's own scores (n=1).
        """
        key = _level(level)
        p, g = _pair(pred, gt)
        inter = int(np.count_nonzero(p & g))
        union = int(np.count_nonzero(p | g))
        sample = LevelScores(
            n=1,
            iou_sum=1.0 if union == 0 else inter / union,
            intersection=inter,
            union=union,
        )
        if instances:
            sample.tp, sample.fp, sample.fn = instance_f1(p, g, self.iou_threshold)
        self.total.merge(sample)
        if key is not None:
            self.levels[key].merge(sample)
        return sample

    def merge(self, other: Scores) -> Scores:
        """Add another accumulator's sums into this one (e.g. from parallel workers); returns self."""
        self.total.merge(other.total)
        for key in LEVELS:
            self.levels[key].merge(other.levels[key])
        return self

    def __getitem__(self, level: str) -> LevelScores:
        """``scores["all"]`` or a level's running scores."""
        return self.total if level == "all" else self.levels[_level(level)]

    def to_frame(self):
        """A pandas DataFrame indexed by level (``all``, ``name``, ``class``, ``function``) with
        columns n, ciou, giou, f1 (fractions in [0, 1], NaN for a level without samples), tp, fp, fn.
        """
        import pandas as pd

        rows = {}
        for key in ("all", *LEVELS):
            s = self[key]
            rows[key] = {"n": s.n, "ciou": s.ciou, "giou": s.giou, "f1": s.f1, "tp": s.tp, "fp": s.fp, "fn": s.fn}
        frame = pd.DataFrame.from_dict(rows, orient="index")
        frame.index.name = "level"
        return frame


_GROUPS = (("all", "All"), ("name", "Socio-name"), ("class", "Socio-class"), ("function", "Socio-function"))
_CELL = 6  # width of one number column


def _cells(values: Iterable[float]) -> str:
    return " ".join("–".rjust(_CELL) if math.isnan(v) else f"{v:.1f}".rjust(_CELL) for v in values)


def format_table(scores: Scores, paper: bool = True, *, label: str = "sociogeo") -> str:
    """Scores laid out like the paper's Table 1, in %.

    Columns: All / Socio-name / Socio-class / Socio-function, each with cIoU, gIoU and F1; one row
    per method. With ``paper=True`` the paper's SocioReasoner row (SocioSeg test set) comes first.
    Levels without samples show a dash.
    """
    ours = []
    for key, _ in _GROUPS:
        s = scores[key]
        ours += [100 * s.ciou, 100 * s.giou, 100 * s.f1]
    return format_rows([(f"{label} (n={scores.total.n})", ours)], paper=paper)


def format_rows(rows: list[tuple[str, list[float]]], paper: bool = True) -> str:
    """Rows of 12 numbers in % (cIoU, gIoU, F1 for All, name, class, function) in Table 1's layout,
    after the paper's SocioReasoner row when ``paper`` is true; NaN shows as a dash.
    """
    rows = list(rows)
    if paper:
        rows.insert(0, ("SocioReasoner (paper)", [v for key, _ in _GROUPS for v in PAPER_TABLE1[key]]))
    name_width = max(len("Method"), *(len(name) for name, _ in rows))
    group_width = 3 * _CELL + 2
    header1 = " " * name_width + " | " + " | ".join(title.center(group_width) for _, title in _GROUPS)
    header2 = "Method".ljust(name_width) + " | " + " | ".join(
        " ".join(m.rjust(_CELL) for m in ("cIoU", "gIoU", "F1")) for _ in _GROUPS
    )
    rule = "-" * name_width + "-+-" + "-+-".join("-" * group_width for _ in _GROUPS)
    lines = [header1, header2, rule]
    for name, values in rows:
        groups = [_cells(values[i : i + 3]) for i in range(0, 12, 3)]
        lines.append(name.ljust(name_width) + " | " + " | ".join(groups))
    return "\n".join(line.rstrip() for line in lines)
