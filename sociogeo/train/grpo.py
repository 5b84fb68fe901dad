"""GRPO over the two-stage rollout: a compact loop on accelerate (the release's GRPO settings).

Per step: rollouts for ``prompts_per_step`` prompts (split over processes), group-normalised
advantages per stage, then the clipped policy-gradient loss with a k3 KL penalty to the frozen
initial policy, over both stages' sequences; SAM stays frozen. Checkpoints every ``save_every``
steps; ``resume="latest"`` continues from the last one at the same step.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from .._optional import require
from .._progress import progress
from ..reasoner.vlm.base import GenerationConfig
from .config import GRPOConfig, to_dict
from .data import load_training_data, step_indices, to_model_space
from .policy import completion_logprobs, load_policy, resume, save_checkpoint, save_final, synchronize
from .rollout import rollout, summarise


def train_grpo(cfg: GRPOConfig, *, resume_from=None, vlm=None, sam=None, log=print, callback=None,
               save_model: bool = True) -> dict:
    """Train with GRPO; returns the last step's metrics (and writes checkpoints, TensorBoard
    logs under ``output_dir/tensorboard`` and the final model under ``output_dir/final``).

    ``callback(step, metrics)`` is called on the main process after every step (metrics include
    ``time/generate_stage1``, ``time/sam``, ``time/render``, ``time/generate_stage2``,
    ``time/rewards``, ``time/update`` and ``time/step`` in seconds). ``vlm`` and ``sam`` may be
    ready backends instead of ``cfg.model``/``cfg.sam``; ``save_model=False`` skips the final
    save (with ``save_every: 0``, nothing is written but logs).
    """
    torch = require("torch", purpose="training")
    cfg.validate()
    from ..reasoner.sam.registry import load_sam

    policy = load_policy(cfg, need_reference=cfg.kl_coef > 0, vlm=vlm)
    acc = policy.accelerator
    if sam is None:
        from ..reasoner.hub import announce_downloads

        announce_downloads([cfg.sam], cache_dir=cfg.cache_dir)
        sam = load_sam(cfg.sam, device=acc.device, **({"cache_dir": cfg.cache_dir} if cfg.cache_dir else {}))
    data = load_training_data(cfg.data)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = resume(policy, out_dir, resume_from)
    writer = _writer(out_dir) if acc.is_main_process else None
    generator = _generator(cfg, policy)
    config_dict = to_dict(cfg)
    if acc.is_main_process:
        (out_dir / "config.json").write_text(json.dumps(config_dict, indent=1))

    metrics: dict = {}
    bar = progress(range(start, cfg.steps), total=cfg.steps - start, desc="GRPO", unit="step",
                   disable=None if acc.is_main_process else True)
    for step in bar:
        tick = time.perf_counter()
        idx = step_indices(step, cfg.prompts_per_step, len(data), cfg.seed, rank=acc.process_index,
                           world=acc.num_processes)
        samples = [to_model_space(data[i], cfg.data.image_size) for i in idx]
        gen = GenerationConfig(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                               max_new_tokens=cfg.max_new_tokens,
                               seed=cfg.seed * 100003 + step * 1009 + acc.process_index)
        policy.model.eval()
        batch = rollout(policy.vlm, sam, samples, group_size=cfg.group_size, generation=gen, schedule=cfg.schedule,
                        reward_variant=cfg.reward_variant, generate_ids=generator)
        policy.model.train()
        t_update = time.perf_counter()
        update = _update(policy, batch.sequences, cfg, torch)
        synchronize(acc.device)
        if generator is not None and hasattr(generator, "sync"):
            generator.sync(policy)
        metrics = {**summarise(batch), **update, **{f"time/{k}": v for k, v in batch.timings.items()},
                   "time/update": time.perf_counter() - t_update, "time/step": time.perf_counter() - tick}
        metrics = _gather_means(acc, metrics, torch)
        if callback is not None and acc.is_main_process:
            callback(step + 1, metrics)
        if acc.is_main_process and (step % cfg.log_every == 0 or step == cfg.steps - 1):
            for k, v in metrics.items():
                writer.add_scalar(k, v, step + 1)
            writer.flush()
            log(_line(step + 1, cfg.steps, metrics))
        if cfg.save_every and ((step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps):
            save_checkpoint(policy, out_dir, step + 1, config_dict)
    if writer is not None:
        writer.close()
    if save_model:
        save_final(policy, out_dir)
    return metrics


def _update(policy, sequences, cfg: GRPOConfig, torch) -> dict:
    """PPO-style epochs of clipped policy-gradient + k3 KL over ``sequences``; returns stats."""
    acc, model = policy.accelerator, policy.model
    n = len(sequences)
    adv = torch.tensor([q.advantage for q in sequences], dtype=torch.float32)
    mb = cfg.micro_batch_size
    chunks = [list(range(i, min(i + mb, n))) for i in range(0, n, mb)]

    # log-probabilities of the rollout policy and the reference, before any update
    old, ref = [], []
    off_policy = cfg.ppo_epochs > 1 or cfg.mini_batches > 1
    with torch.no_grad():
        for c in chunks:
            reqs, ids = [sequences[i].request for i in c], [sequences[i].ids for i in c]
            old.append(completion_logprobs(model, policy.vlm, reqs, ids, policy.pad_id)[0] if off_policy else None)
            if cfg.kl_coef > 0:
                with policy.reference_mode() as ref_model:
                    ref.append(completion_logprobs(ref_model, policy.vlm, reqs, ids, policy.pad_id)[0])
            else:
                ref.append(None)

    per_mini = math.ceil(len(chunks) / cfg.mini_batches)
    stats = {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "grad_norm": 0.0}
    n_stats = 0
    for _ in range(cfg.ppo_epochs):
        for m in range(0, len(chunks), per_mini):
            group = list(range(m, min(m + per_mini, len(chunks))))
            denom = sum(len(chunks[k]) for k in group) if cfg.loss_aggregation == "sequence-mean" else None
            if denom is None:
                denom = sum(int(sum(len(sequences[i].ids) for i in chunks[k])) for k in group)
            for pos, k in enumerate(group):
                c = chunks[k]
                reqs, ids = [sequences[i].request for i in c], [sequences[i].ids for i in c]
                sync = acc.no_sync(model) if pos < len(group) - 1 else _nullcontext()
                with sync:
                    logp, mask = completion_logprobs(model, policy.vlm, reqs, ids, policy.pad_id)
                    old_k = old[k] if old[k] is not None else logp.detach()
                    a = adv[c].to(logp.device).unsqueeze(1)
                    ratio = torch.exp(logp - old_k)
                    pg = -torch.minimum(ratio * a, torch.clamp(ratio, 1 - cfg.clip, 1 + cfg.clip) * a)
                    per_token = pg
                    kl = None
                    if ref[k] is not None:
                        diff = ref[k] - logp
                        kl = torch.exp(diff) - diff - 1  # k3: unbiased, non-negative
                        per_token = per_token + cfg.kl_coef * kl
                    if cfg.loss_aggregation == "sequence-mean":
                        loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).sum() / denom
                    else:
                        loss = (per_token * mask).sum() / denom
                    acc.backward(loss)
                stats["loss"] += float(loss.detach())
                if kl is not None:
                    stats["kl"] += float((kl.detach() * mask).sum() / mask.sum().clamp(min=1)) / len(chunks)
                clipped = ((ratio.detach() - 1).abs() > cfg.clip).float()
                stats["clip_fraction"] += float((clipped * mask).sum() / mask.sum().clamp(min=1)) / len(chunks)
            norm = acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            stats["grad_norm"] += float(norm)
            n_stats += 1
            policy.optimizer.step()
            policy.scheduler.step()
            policy.optimizer.zero_grad(set_to_none=True)
    stats["loss"] /= cfg.ppo_epochs
    stats["kl"] /= cfg.ppo_epochs
    stats["clip_fraction"] /= cfg.ppo_epochs
    stats["grad_norm"] /= max(n_stats, 1)
    stats["lr"] = float(policy.scheduler.get_last_lr()[0])
    return stats


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _gather_means(acc, metrics: dict, torch) -> dict:
    """Average metrics over processes."""
    if acc.num_processes == 1:
        return metrics
    keys = sorted(metrics)
    t = torch.tensor([float(metrics[k]) for k in keys], device=acc.device)
    t = acc.reduce(t, reduction="mean")
    return dict(zip(keys, t.tolist()))


def _writer(out_dir: Path):
    tb = require("torch.utils.tensorboard", purpose="TensorBoard logging")
    return tb.SummaryWriter(str(out_dir / "tensorboard"))


def _line(step: int, total: int, m: dict) -> str:
    def g(key, fmt="{:.3f}"):
        return fmt.format(m[key]) if key in m else "-"

    return (
        f"step {step}/{total} | stage1 format {g('stage1/format')} acc {g('stage1/accuracy')} len {g('stage1/length')}"
        f" | stage2 format {g('stage2/format')} acc {g('stage2/accuracy')} len {g('stage2/length')}"
        f" iou {g('stage2/mask_iou')}"
        f" | loss {g('loss', '{:.4f}')} kl {g('kl', '{:.4f}')} | {g('time/step', '{:.1f}')} s"
    )


def _generator(cfg: GRPOConfig, policy):
    """The rollout engine: None -> the policy's own transformers generate; "vllm" -> vLLM."""
    if cfg.generation_backend == "transformers":
        return None
    from .vllm_rollout import VLLMGenerator

    return VLLMGenerator(cfg, policy)
