"""Running the reasoner over a dataset and scoring it the way the paper does (the paper's evaluation)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._progress import progress
from .metrics import Scores, format_table

RECORD_FIELDS = [
    "id", "query", "level", "iou", "intersection", "union", "tp", "fp", "fn",
    "pred_pixels", "gt_pixels", "stage1_boxes", "stage2_items", "discarded", "stage1_text", "stage2_text",
]


@dataclass
class Evaluation:
    """Scores (per level and overall) and one record per sample."""

    scores: Scores
    records: list[dict]

    def table(self, *, paper: bool = True, label: str = "sociogeo") -> str:
        """The paper's Table 1 layout, with the paper's SocioReasoner row beside ours."""
        return format_table(self.scores, paper=paper, label=label)

    def to_frame(self):
        """The per-sample records as a pandas DataFrame, one row per sample, columns ``RECORD_FIELDS``."""
        import pandas as pd

        return pd.DataFrame.from_records(self.records, columns=RECORD_FIELDS)


def evaluate(
    reasoner, samples: Iterable, *, batch_size: int = 4, limit: int | None = None, csv_path=None, generation=None
) -> Evaluation:
    """Run ``reasoner`` on SocioSeg-style samples (anything with ``id``, ``query``, ``map_image``,
    ``satellite_image``, ``mask``, ``level``) and score the final masks against the labels.

    Per-sample records go to ``csv_path`` as they are produced (so a long run leaves results
    behind even if interrupted).
    """
    scores = Scores()
    records: list[dict] = []
    writer = None
    handle = None
    if csv_path is not None:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        handle = open(csv_path, "w", newline="", encoding="utf-8")
        writer = csv.DictWriter(handle, fieldnames=RECORD_FIELDS)
        writer.writeheader()

    def run(batch):
        preds = reasoner.predict_batch(
            [s.map_image for s in batch], [s.satellite_image for s in batch], [s.query for s in batch],
            generation=generation,
        )
        for s, p in zip(batch, preds):
            gt = np.asarray(s.mask, bool)
            pred = p.mask
            if pred.shape != gt.shape:
                from ..geo.modelspace import resize_image

                pred = resize_image(pred, gt.shape)
            one = scores.add(pred, gt, s.level)
            rec = {
                "id": s.id, "query": s.query, "level": s.level or "",
                "iou": one.iou_sum, "intersection": one.intersection, "union": one.union,
                "tp": one.tp, "fp": one.fp, "fn": one.fn,
                "pred_pixels": int(pred.sum()), "gt_pixels": int(gt.sum()),
                "stage1_boxes": len(p.stage1_boxes), "stage2_items": len(p.stage2_items),
                "discarded": len(p.discarded), "stage1_text": p.stage1_text, "stage2_text": p.stage2_text,
            }
            records.append(rec)
            if writer is not None:
                writer.writerow(rec)
                handle.flush()

    try:
        batch = []
        items = samples if limit is None else _take(samples, limit)
        total = len(samples) if hasattr(samples, "__len__") else None
        if limit is not None:
            total = limit if total is None else min(total, limit)
        for s in progress(items, total=total, desc="evaluating", unit="sample"):
            batch.append(s)
            if len(batch) >= batch_size:
                run(batch)
                batch = []
        if batch:
            run(batch)
    finally:
        if handle is not None:
            handle.close()
    return Evaluation(scores, records)


def _take(items: Iterable, n: int):
    for i, x in enumerate(items):
        if i >= n:
            return
        yield x
