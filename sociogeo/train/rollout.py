"""Two-stage rollouts for GRPO (spec section 5).

Release schedule: each prompt gets ``group_size`` stage-1 samples; SAM segments each; each
stage-1 sample gets its own rendered stage-2 input and one stage-2 sample; SAM again. Paper
schedule: the best stage-1 sample of each group (by its reward) gets ``group_size`` stage-2
samples. Advantages are normalised within each group of each stage: (R - mean) / (std + 1e-6),
with the sample standard deviation (as ``torch.std``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .. import rewards as R
from ..metrics import iou
from ..parsing import parse_answer
from ..prompts import answer_text, stage1_text, stage2_text
from ..render import render_stage2
from ..sam.base import Prompt, union
from ..vlm.base import GenerationConfig, VLMRequest


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
    stage1: list[Completion] = field(default_factory=list)
    stage2: list[Completion] = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    @property
    def sequences(self) -> list[Completion]:
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
    """
    from .policy import synchronize

    gen = generate_ids or vlm.generate_ids
    out = RolloutBatch()
    t = out.timings
    device = vlm.device

    def now() -> float:  # GPU work is asynchronous: wait for it so each phase is timed right
        synchronize(device)
        return time.perf_counter()

    tick = now()

    # stage 1: group_size samples per prompt
    reqs1 = [VLMRequest(stage1_text(s.query), [s.map_image, s.satellite_image]) for s in samples for _ in range(group_size)]
    ids1 = gen(reqs1, generation)
    texts1 = vlm.decode(ids1)
    t["generate_stage1"] = now() - tick

    tick = now()
    embeddings = sam.embed([s.satellite_image for s in samples])
    masks1, parsed1 = [], []
    for j, text in enumerate(texts1):
        s = samples[j // group_size]
        p = parse_answer(text, image_size=s.mask.shape, stage=1)
        parsed1.append(p)
        masks1.append(union(sam.predict(embeddings[j // group_size], [Prompt(box=b) for b in p.boxes]), s.mask.shape))
    t["sam"] = now() - tick

    tick = now()
    for j, (req, ids, text) in enumerate(zip(reqs1, ids1, texts1)):
        s = samples[j // group_size]
        out.stage1.append(Completion(1, j // group_size, req, ids, text,
                                    R.stage1(text, truth_boxes=s.truth_boxes, variant=reward_variant)))
    t["rewards"] = now() - tick

    # stage 2 inputs: the stage-1 result rendered on both images
    tick = now()
    if schedule == "paper":
        parents = []
        for g in range(len(samples)):
            members = range(g * group_size, (g + 1) * group_size)
            best = max(members, key=lambda j: out.stage1[j].reward["total"])
            parents.extend([best] * group_size)
    else:
        parents = list(range(len(texts1)))
    reqs2 = []
    for j in parents:
        s = samples[j // group_size]
        boxes = parsed1[j].boxes
        reqs2.append(VLMRequest(
            stage2_text(s.query, answer_text(texts1[j])),
            [render_stage2(s.map_image, masks1[j], boxes), render_stage2(s.satellite_image, masks1[j], boxes)],
        ))
    t["render"] = now() - tick

    tick = now()
    ids2 = gen(reqs2, generation)
    texts2 = vlm.decode(ids2)
    t["generate_stage2"] = now() - tick

    tick = now()
    finals = []
    for k, (j, text) in enumerate(zip(parents, texts2)):
        s = samples[j // group_size]
        p = parse_answer(text, image_size=s.mask.shape, stage=2)
        prompts = [Prompt(box=it.box, points=tuple(it.points)) for it in p.items]
        finals.append(union(sam.predict(embeddings[j // group_size], prompts), s.mask.shape))
    t["sam"] += now() - tick

    tick = now()
    for k, (j, req, ids, text) in enumerate(zip(parents, reqs2, ids2, texts2)):
        s = samples[j // group_size]
        rw = R.stage2(text, answer_text(texts1[j]), finals[k], s.mask, variant=reward_variant)
        out.stage2.append(Completion(2, j // group_size, req, ids, text, rw, mask_iou=iou(finals[k], s.mask)))
    for seqs in (out.stage1, out.stage2):
        for g in range(len(samples)):
            members = [q for q in seqs if q.group == g]
            for q, a in zip(members, normalise([q.reward["total"] for q in members])):
                q.advantage = float(a)
    t["rewards"] += now() - tick
    return out


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
