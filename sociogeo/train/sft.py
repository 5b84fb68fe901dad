"""Supervised fine-tuning baseline (the paper's SFT baseline).

Targets are built from the ground-truth mask: the boxes of its components (the same boxes the
rewards use) and 3 random points inside each component. ``stages="both"`` teaches the two-stage
interface (stage-1 prompt -> boxes; stage-2 prompt, rendered as if stage 1 had found the true
boxes and mask -> boxes + points); ``stages="single"`` is the paper's one-stage baseline
(stage-1 prompt -> boxes + points).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .._optional import require
from .._progress import progress
from ..reasoner import protocol
from ..reasoner.vlm.base import VLMRequest
from .config import SFTConfig, to_dict
from .data import load_training_data, step_indices, to_model_space
from .policy import completion_logprobs, load_policy, resume, save_checkpoint, save_final

THINK = "The map and the satellite image show where '{query}' is."


def targets(sample, *, stages: str = "both", points_per_box: int = 3, rng=None) -> list[tuple[VLMRequest, str]]:
    """(request, target answer text) pairs for one :class:`~sociogeo.train.data.ModelSample`.

    Requests come from :mod:`sociogeo.reasoner.protocol`, as at inference: the stage-2 request
    is rendered as if stage 1 had answered the true boxes and SAM had returned the true mask
    (which therefore takes the release's 756 -> 768 -> 756 nearest-neighbour round trip too).
    """
    rng = rng or np.random.default_rng(0)
    boxes = [list(map(int, b)) for b in sample.truth_boxes]
    with_points = [{"bbox_2d": b, "points": _points(sample.mask, b, points_per_box, rng)} for b in boxes]
    think = THINK.format(query=sample.query)
    images = sample.images
    stage1 = protocol.stage1_request(sample.query, images)
    if stages == "single":
        return [(stage1, _answer(think, with_points))]
    stage1_answer = _answer(think, [{"bbox_2d": b} for b in boxes])
    stage2 = protocol.stage2_request(sample.query, stage1_answer, sample.mask, boxes, images)
    return [(stage1, stage1_answer), (stage2, _answer(think, with_points))]


def _answer(think: str, items: list) -> str:
    return f"<think>{think}</think><answer>{json.dumps(items)}</answer>"


def _points(mask, box, k: int, rng) -> list[list[int]]:
    """``k`` random mask pixels strictly inside ``box`` (pixel centres rounded), else box centres."""
    x1, y1, x2, y2 = box
    ys, xs = np.nonzero(mask[y1:y2, x1:x2])
    keep = (xs + x1 > x1) & (xs + x1 < x2) & (ys + y1 > y1) & (ys + y1 < y2)
    xs, ys = xs[keep] + x1, ys[keep] + y1
    if len(xs) == 0:
        return [[(x1 + x2) // 2, (y1 + y2) // 2]] * k
    pick = rng.choice(len(xs), size=k, replace=len(xs) < k)
    return [[int(xs[i]), int(ys[i])] for i in pick]


def train_sft(cfg: SFTConfig, *, resume_from=None, log=print) -> dict:
    """Cross-entropy on the target tokens only; returns the last metrics."""
    torch = require("torch", purpose="training")
    cfg.validate()
    policy = load_policy(cfg, need_reference=False)
    acc = policy.accelerator
    tok = policy.vlm.processor.tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    if eos is None or eos == tok.unk_token_id:
        eos = tok.eos_token_id
    data = load_training_data(cfg.data)
    per_step = cfg.micro_batch_size * acc.num_processes
    steps = cfg.steps or max(1, (len(data) * cfg.epochs) // per_step)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = resume(policy, out_dir, resume_from)
    config_dict = to_dict(cfg)
    rng = np.random.default_rng(cfg.seed + acc.process_index)
    metrics: dict = {}
    bar = progress(range(start, steps), total=steps - start, desc="SFT", unit="step",
                   disable=None if acc.is_main_process else True)
    for step in bar:
        tick = time.perf_counter()
        idx = step_indices(step, per_step, len(data), cfg.seed, rank=acc.process_index, world=acc.num_processes)
        pairs = [p for i in idx for p in targets(to_model_space(data[i], cfg.data.image_size), stages=cfg.stages,
                                                 points_per_box=cfg.points_per_box, rng=rng)]
        requests = [r for r, _ in pairs]
        ids = [torch.tensor(tok(t, add_special_tokens=False)["input_ids"] + [eos], dtype=torch.long) for _, t in pairs]
        logp, mask = completion_logprobs(policy.model, policy.vlm, requests, ids, policy.pad_id)
        loss = -(logp * mask).sum() / mask.sum()
        acc.backward(loss)
        acc.clip_grad_norm_(policy.model.parameters(), cfg.max_grad_norm)
        policy.optimizer.step()
        policy.scheduler.step()
        policy.optimizer.zero_grad(set_to_none=True)
        metrics = {"loss": float(loss.detach()), "token_accuracy": _token_accuracy(logp, mask),
                   "time/step": time.perf_counter() - tick}
        if acc.is_main_process and ((step + 1) % cfg.log_every == 0 or step + 1 == steps):
            log(f"step {step + 1}/{steps} | loss {metrics['loss']:.4f} | {metrics['time/step']:.1f} s")
        if cfg.save_every and ((step + 1) % cfg.save_every == 0 or step + 1 == steps):
            save_checkpoint(policy, out_dir, step + 1, config_dict)
    save_final(policy, out_dir)
    return metrics


def _token_accuracy(logp, mask) -> float:
    """Share of target tokens the model already gives more than half its probability."""
    return float(((logp.detach().exp() > 0.5).float() * mask).sum() / mask.sum())
