"""Running the reasoner over a dataset and scoring it the way the paper does (the paper's evaluation).

Protocol, by default the paper's: the release's sampled decoding (temperature 1.0, top-p 0.8,
top-k 100, repetition penalty 1.0), seeded so a run can be repeated; the seed is recorded in the
result and in every per-sample record. ``greedy=True`` decodes greedily instead (reproducible
analysis, not the paper's numbers). :func:`evaluate_seeds` repeats a run over several seeds and
reports the mean and spread, since one sampled run varies.

Metrics (:mod:`sociogeo.train.metrics`): gIoU, cIoU and F1 per query level and overall. F1 is
sociogeo's definition, as the paper does not define it (:data:`F1_DEFINITION`). A sample's level
comes from the dataset or a guess from its query (:mod:`sociogeo.datasets.socioseg`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._progress import progress
from ..errors import ConfigError
from ..reasoner.vlm.base import GenerationConfig
from .metrics import LEVELS, Scores, format_rows, format_table

RECORD_FIELDS = [
    "id", "query", "level", "level_source", "seed", "iou", "intersection", "union", "tp", "fp", "fn",
    "pred_pixels", "gt_pixels", "stage1_boxes", "stage2_items", "discarded", "repairs", "stage1_text",
    "stage2_text",
]

#: How sociogeo counts instance-level F1 (the paper gives no definition).
F1_DEFINITION = (
    "F1 is sociogeo's definition (the paper does not define it): connected components (8-connectivity) of "
    "prediction and ground truth, matched one to one at IoU >= 0.5; summed over the set, F1 = 2TP / (2TP + FP + FN)."
)

_METRICS = ("ciou", "giou", "f1")


def decoding(generation: GenerationConfig | None = None, *, greedy: bool = False, seed: int | None = 0,
             max_new_tokens: int = 2048) -> GenerationConfig:
    """The decoding of an evaluation: ``generation`` when given, else greedy or (default) the
    release's sampling seeded with ``seed``.
    """
    if generation is not None:
        if greedy:
            raise ConfigError("pass either generation= or greedy=True, not both")
        return generation
    if greedy:
        return GenerationConfig.greedy(max_new_tokens)
    return GenerationConfig.released(max_new_tokens, seed=seed)


def protocol_line(generation: GenerationConfig, seeds: Sequence[int] | None = None) -> str:
    """One line naming the evaluation protocol (``seeds``: those of repeated runs), for printed tables."""
    paper = "the paper's protocol" if generation.is_released else "not the paper's protocol"
    return f"Decoding: {generation.describe(seeds=seeds)} ({paper})."


@dataclass
class Evaluation:
    """Scores (per level and overall) and one record per sample, with the decoding that produced
    them (``generation``; its ``seed`` is the run's seed) and how answers were read (``parse``).
    """

    scores: Scores
    records: list[dict]
    generation: GenerationConfig | None = None
    parse: str = "strict"

    @property
    def seed(self) -> int | None:
        """The decoding seed of this run (None for greedy or unseeded decoding)."""
        return None if self.generation is None or not self.generation.do_sample else self.generation.seed

    def table(self, *, paper: bool = True, label: str = "sociogeo") -> str:
        """The paper's Table 1 layout, with the paper's SocioReasoner row beside ours, then the
        protocol, how levels were decided and the F1 definition.
        """
        lines = [format_table(self.scores, paper=paper, label=label)]
        if self.generation is not None:
            lines.append(protocol_line(self.generation))
        lines += [levels_line(self.records), F1_DEFINITION]
        return "\n".join(lines)

    def to_frame(self):
        """The per-sample records as a pandas DataFrame, one row per sample, columns ``RECORD_FIELDS``."""
        import pandas as pd

        return pd.DataFrame.from_records(self.records, columns=RECORD_FIELDS)


@dataclass
class SeedEvaluation:
    """The same evaluation repeated over several decoding seeds: one :class:`Evaluation` per seed."""

    runs: list[Evaluation] = field(default_factory=list)

    @property
    def seeds(self) -> list[int | None]:
        """The seed of each run, in order."""
        return [run.seed for run in self.runs]

    def to_frame(self):
        """Per run and level: seed, level, n, ciou, giou, f1 (fractions)."""
        import pandas as pd

        rows = []
        for run in self.runs:
            frame = run.scores.to_frame()
            for level, row in frame.iterrows():
                rows.append({"seed": run.seed, "level": level, "n": row["n"],
                             **{m: row[m] for m in _METRICS}})
        return pd.DataFrame(rows)

    def summary(self):
        """Mean and spread over seeds: a DataFrame indexed by level with ``<metric>_mean``,
        ``<metric>_std`` (sample standard deviation; 0 for a single run), ``<metric>_min`` and
        ``<metric>_max`` for cIoU, gIoU and F1 (fractions).
        """
        frame = self.to_frame()
        grouped = frame.groupby("level", sort=False)[list(_METRICS)]
        out = grouped.agg(["mean", "std", "min", "max"])
        out.columns = [f"{metric}_{stat}" for metric, stat in out.columns]
        for metric in _METRICS:  # one run has no spread (0); a level without samples has none at all (NaN)
            single = out[f"{metric}_std"].isna() & out[f"{metric}_mean"].notna()
            out.loc[single, f"{metric}_std"] = 0.0
        return out.reindex(["all", *LEVELS])

    def table(self, *, paper: bool = True, label: str = "sociogeo") -> str:
        """Table 1 with one row per seed, their mean and standard deviation, then the protocol."""
        summary = self.summary()
        keys = ["all", *LEVELS]
        rows = [(f"{label} seed {run.seed} (n={run.scores.total.n})", _row_values(run.scores)) for run in self.runs]
        rows.append((f"{label} mean of {len(self.runs)}", [100 * summary.loc[k, f"{m}_mean"] for k in keys
                                                           for m in _METRICS]))
        rows.append((f"{label} std of {len(self.runs)}", [100 * summary.loc[k, f"{m}_std"] for k in keys
                                                          for m in _METRICS]))
        lines = [format_rows(rows, paper=paper)]
        if self.runs and self.runs[0].generation is not None:
            lines.append(protocol_line(self.runs[0].generation, seeds=self.seeds))
        if self.runs:
            lines.append(levels_line(self.runs[0].records))
        lines.append(F1_DEFINITION)
        return "\n".join(lines)


def _row_values(scores: Scores) -> list[float]:
    return [100 * getattr(scores[key], metric) for key in ("all", *LEVELS) for metric in _METRICS]


def levels_line(records: list[dict]) -> str:
    """How the samples' levels were decided, counted, for printed tables."""
    counts: dict[str, int] = {}
    for record in records:
        source = record.get("level_source") or "unknown"
        counts[source] = counts.get(source, 0) + 1
    names = {"dataset": "from the dataset's level column", "levels": "given by levels=",
             "query": "guessed from the query (sociogeo.osm.taxonomy.query_level)", "unknown": "not recorded"}
    parts = [f"{n} {names.get(source, source)}" for source, n in counts.items()]
    return "Levels: " + ("; ".join(parts) if parts else "no samples") + "."


def evaluate(  # noqa: PLR0913 (keyword-only settings of the public function)
    reasoner, samples: Iterable, *, batch_size: int = 4, limit: int | None = None, csv_path=None,
    generation: GenerationConfig | None = None, greedy: bool = False, seed: int | None = 0, engine=None,
) -> Evaluation:
    """Run ``reasoner`` on SocioSeg-style samples (anything with ``id``, ``query``, ``map_image``,
    ``satellite_image``, ``mask``, ``level``) and score the final masks against the labels.

    Decoding follows the paper's protocol unless told otherwise: the release's sampling seeded
    with ``seed`` (recorded in the result). ``greedy=True`` decodes greedily; ``generation`` sets
    any other :class:`~sociogeo.reasoner.vlm.base.GenerationConfig`. Per-sample records go to
    ``csv_path`` as they are produced (so a long run leaves results behind even if interrupted).

    ``engine``: None runs here; a :class:`~sociogeo.pipeline.ray_engine.RayEngine` runs the batches
    on Ray actors (``reasoner`` may then be a :class:`~sociogeo.reasoner.model.ReasonerSpec` each
    actor loads). The batches are the ones a local run makes, with the same decoding, so the
    numbers are the local run's, sampled decoding included.
    """
    gen = decoding(generation, greedy=greedy, seed=seed)
    with _csv(csv_path) as write:
        return _run(reasoner, samples, gen, batch_size=batch_size, limit=limit, write=write, engine=engine)


def evaluate_seeds(  # noqa: PLR0913 (keyword-only settings of the public function)
    reasoner, samples: Sequence, seeds: int | Sequence[int] = 3, *, batch_size: int = 4, limit: int | None = None,
    csv_path=None, max_new_tokens: int = 2048, engine=None,
) -> SeedEvaluation:
    """The paper's protocol repeated over several seeds: ``seeds`` is a count (seeds 0, 1, ...)
    or the list of seeds. ``samples`` must be a sequence (it is read once per seed). Records of
    all runs go to one ``csv_path``, told apart by their ``seed`` column.
    """
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ConfigError("seeds must be a positive count or a non-empty list of seeds")
    if len(set(seed_list)) != len(seed_list):
        raise ConfigError(f"seeds must differ, got {seed_list}")
    if not isinstance(samples, Sequence):
        raise ConfigError("evaluate_seeds reads the samples once per seed; pass a sequence (a list or a "
                          "SocioSegDataset), not an iterator")
    out = SeedEvaluation()
    with _csv(csv_path) as write:
        for s in seed_list:
            gen = GenerationConfig.released(max_new_tokens, seed=s)
            out.runs.append(_run(reasoner, samples, gen, batch_size=batch_size, limit=limit, write=write,
                                 engine=engine))
    return out


class _csv:
    """A context giving ``write(record)`` that appends to a CSV file (or does nothing without one)."""

    def __init__(self, path):
        self.path, self.handle, self.writer = path, None, None

    def __enter__(self):
        if self.path is not None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(self.path, "w", newline="", encoding="utf-8")
            self.writer = csv.DictWriter(self.handle, fieldnames=RECORD_FIELDS)
            self.writer.writeheader()
        return self.write

    def write(self, record: dict) -> None:
        if self.writer is not None:
            self.writer.writerow(record)
            self.handle.flush()

    def __exit__(self, *exc):
        if self.handle is not None:
            self.handle.close()


def _run(reasoner, samples, generation: GenerationConfig, *, batch_size: int, limit, write,  # noqa: PLR0913
         engine=None) -> Evaluation:
    scores = Scores()
    records: list[dict] = []
    seed = generation.seed if generation.do_sample else None
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")

    def score(batch, preds):
        for s, p in zip(batch, preds):
            record = _score(scores, s, p)
            record["seed"] = "" if seed is None else seed
            records.append(record)
            write(record)

    if engine is not None and getattr(engine, "name", "local") != "local":
        if not hasattr(samples, "__getitem__") or not hasattr(samples, "__len__"):
            raise ConfigError("a distributed evaluation reads samples by index; pass a sequence (a list or a "
                              "SocioSegDataset), not an iterator")
        n = len(samples) if limit is None else min(len(samples), limit)
        batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
        with progress(total=n, desc="evaluating (ray)", unit="sample") as bar:
            for indices, preds in engine.predict_batches(reasoner, samples, batches, generation):
                score([samples[i] for i in indices], preds)
                bar.update(len(indices))
        return Evaluation(scores, records, generation, getattr(reasoner, "parse", "strict"))

    batch = []
    items = samples if limit is None else _take(samples, limit)
    total = len(samples) if hasattr(samples, "__len__") else None
    if limit is not None:
        total = limit if total is None else min(total, limit)
    for s in progress(items, total=total, desc="evaluating", unit="sample"):
        batch.append(s)
        if len(batch) >= batch_size:
            score(batch, _predict(reasoner, batch, generation))
            batch = []
    if batch:
        score(batch, _predict(reasoner, batch, generation))
    return Evaluation(scores, records, generation, getattr(reasoner, "parse", "strict"))


def _predict(reasoner, batch, generation):
    return reasoner.predict_batch([s.map_image for s in batch], [s.satellite_image for s in batch],
                                  [s.query for s in batch], generation=generation)


def _score(scores: Scores, sample, prediction) -> dict:
    gt = np.asarray(sample.mask, bool)
    pred = prediction.mask
    if pred.shape != gt.shape:
        from ..geo.modelspace import resize_nearest

        pred = resize_nearest(pred, gt.shape)
    one = scores.add(pred, gt, sample.level)
    return {
        "id": sample.id, "query": sample.query, "level": sample.level or "",
        "level_source": getattr(sample, "level_source", None) or "",
        "iou": one.iou_sum, "intersection": one.intersection, "union": one.union,
        "tp": one.tp, "fp": one.fp, "fn": one.fn,
        "pred_pixels": int(pred.sum()), "gt_pixels": int(gt.sum()),
        "stage1_boxes": len(prediction.stage1_boxes), "stage2_items": len(prediction.stage2_items),
        "discarded": len(prediction.discarded), "repairs": len(getattr(prediction, "repairs", [])),
        "stage1_text": prediction.stage1_text, "stage2_text": prediction.stage2_text,
    }


def _take(items: Iterable, n: int):
    for i, x in enumerate(items):
        if i >= n:
            return
        yield x
