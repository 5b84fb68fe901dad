"""Two-stage rollouts for GRPO (the release's GRPO settings).

Release schedule: each prompt gets ``group_size`` stage-1 samples; SAM segments each; each
stage-1 sample gets its own rendered stage-2 input and one stage-2 sample; SAM again. Paper
schedule: the best stage-1 sample of each group (by its reward) gets ``group_size`` stage-2
samples. Advantages are normalised within each group of each stage: (R - mean) / (std + 1e-6),
with the sample standard deviation (as ``torch.std``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ..reasoner import protocol
from ..reasoner.prompts import answer_text
from ..reasoner.vlm.base import GenerationConfig, VLMRequest
from . import rewards as R
from .metrics import iou


@dataclass
class Completion:
    """One generated completion and what training needs of it."""

    stage: int
    group: int  # index of the prompt (sample) within the step
    request: VLMRequest
    ids: object  # 1-D LongTensor
    text: str
    reward: dict
    advantage: float = 0.0
    mask_iou: float | None = None


@dataclass
class RolloutBatch:
    """One step's sampled completions of both stages, scored, plus the time each phase took (seconds)."""

    stage1: list[Completion] = field(default_factory=list)
    stage2: list[Completion] = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    @property
    def sequences(self) -> list[Completion]:
        """All completions, stage 1 first, then stage 2."""
        return self.stage1 + self.stage2


def normalise(values: Sequence[float], eps: float = 1e-6) -> list[float]:
    """Group-normalised advantages: (R - mean) / (std + eps), sample std; one value -> 0."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return [0.0] * len(v)
    return list((v - v.mean()) / (v.std(ddof=1) + eps))


def rollout(vlm, sam, samples, *, group_size: int, generation: GenerationConfig, schedule: str = "release",
            reward_variant: str = "release", generate_ids=None) -> RolloutBatch:
    """Sample both stages for ``samples`` (:class:`~sociogeo.train.data.ModelSample`) and score them.

    ``generate_ids(requests, config)`` defaults to ``vlm.generate_ids`` (a vLLM engine can stand in).
    Model inputs and SAM prompts come from :mod:`sociogeo.reasoner.protocol`, as at inference, with
    the release's strict reading: a completion that is not valid JSON gets no SAM prompt (and an
    empty mask), exactly as the rewards, which also read strictly, score it.
    """
    from .policy import synchronize

    gen = generate_ids or vlm.generate_ids
    out = RolloutBatch()
    clock = _Clock(out.timings, vlm.device, synchronize)
    images = [s.images for s in samples]
    owner = [j // group_size for j in range(len(samples) * group_size)]  # sample of each stage-1 completion

    with clock("generate_stage1"):
        reqs1 = [protocol.stage1_request(samples[g].query, images[g]) for g in owner]
        ids1 = gen(reqs1, generation)
        texts1 = vlm.decode(ids1)
    with clock("sam"):
        embeddings = sam.embed([im.satellite for im in images])
        parsed1 = [protocol.parse(t, images[g], stage=1) for t, g in zip(texts1, owner)]
        masks1 = [protocol.segment(sam, embeddings[g], p, images[g]) for p, g in zip(parsed1, owner)]
    with clock("rewards"):
        for j, (req, ids, text) in enumerate(zip(reqs1, ids1, texts1)):
            s = samples[owner[j]]
            out.stage1.append(Completion(1, owner[j], req, ids, text,
                                         R.stage1(text, truth_boxes=s.truth_boxes, variant=reward_variant)))
    with clock("render"):
        parents = _stage2_parents(out.stage1, len(samples), group_size, schedule)
        reqs2 = [protocol.stage2_request(samples[owner[j]].query, texts1[j], masks1[j], parsed1[j].drawn_boxes,
                                         images[owner[j]]) for j in parents]
    with clock("generate_stage2"):
        ids2 = gen(reqs2, generation)
        texts2 = vlm.decode(ids2)
    with clock("sam"):
        finals = [protocol.segment(sam, embeddings[owner[j]], protocol.parse(t, images[owner[j]], stage=2),
                                   images[owner[j]]) for j, t in zip(parents, texts2)]
    with clock("rewards"):
        for k, (j, req, ids, text) in enumerate(zip(parents, reqs2, ids2, texts2)):
            s = samples[owner[j]]
            rw = R.stage2(text, answer_text(texts1[j]), finals[k], s.mask, variant=reward_variant)
            out.stage2.append(Completion(2, owner[j], req, ids, text, rw, mask_iou=iou(finals[k], s.mask)))
        for seqs in (out.stage1, out.stage2):
            _set_advantages(seqs, len(samples))
    return out


def _stage2_parents(stage1: list, n_samples: int, group_size: int, schedule: str) -> list[int]:
    """The stage-1 completion each stage-2 completion continues: every one (release), or the best
    of each group ``group_size`` times (paper).
    """
    if schedule != "paper":
        return list(range(len(stage1)))
    parents = []
    for g in range(n_samples):
        members = range(g * group_size, (g + 1) * group_size)
        best = max(members, key=lambda j: stage1[j].reward["total"])
        parents.extend([best] * group_size)
    return parents


def _set_advantages(seqs: list, n_groups: int) -> None:
    for g in range(n_groups):
        members = [q for q in seqs if q.group == g]
        for q, a in zip(members, normalise([q.reward["total"] for q in members])):
            q.advantage = float(a)


class _Clock:
    """Adds the wall time of ``with clock(name):`` blocks to ``timings[name]`` (GPU work is
    asynchronous: the device is synchronised at both ends so each phase is timed right).
    """

    def __init__(self, timings: dict, device, synchronize):
        self.timings, self.device, self.synchronize = timings, device, synchronize

    @contextmanager
    def __call__(self, name: str):
        self.synchronize(self.device)
        tick = time.perf_counter()
        try:
            yield
        finally:
            self.synchronize(self.device)
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - tick


def summarise(batch: RolloutBatch) -> dict:
    """Mean rewards per stage and term, mask IoU, completion lengths."""
    out = {}
    for name, seqs in (("stage1", batch.stage1), ("stage2", batch.stage2)):
        if not seqs:
            continue
        for term in ("format", "accuracy", "length", "total"):
            out[f"{name}/{term}"] = float(np.mean([q.reward[term] for q in seqs]))
        out[f"{name}/completion_tokens"] = float(np.mean([len(q.ids) for q in seqs]))
    if batch.stage2:
        out["stage2/mask_iou"] = float(np.mean([q.mask_iou for q in batch.stage2]))
    return out
