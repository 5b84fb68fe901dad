"""The trainable policy: loading it under accelerate (full or LoRA), log-probabilities of
completions, the frozen reference, checkpoints. Shared by GRPO and SFT.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._optional import require
from ..errors import ConfigError
from ..reasoner.vlm.base import VLMRequest

# LoRA goes on the language model only: Qwen2.5-VL's vision blocks reuse the names gate_proj,
# up_proj and down_proj for their MLPs, so plain module names would adapt the vision tower too.
_LANGUAGE_MODEL = r"(.*\.)?language_model\..*\.({names})$"


@dataclass
class Policy:
    """Everything a training loop needs about the model being trained."""

    accelerator: object
    vlm: object  # TransformersVLM whose .model is the unwrapped (possibly PEFT) model
    model: object  # the accelerate-wrapped model used for forward/backward
    optimizer: object
    scheduler: object
    reference: object | None  # frozen copy for full fine-tuning; None with LoRA (adapters disabled)
    lora: bool
    pad_id: int

    @property
    def unwrapped(self):
        """The trained model without accelerate's wrappers (the PEFT model under LoRA)."""
        return self.accelerator.unwrap_model(self.model)

    @contextlib.contextmanager
    def reference_mode(self):
        """Run the frozen initial policy: LoRA disables its adapters, full fine-tuning uses the copy."""
        if self.lora:
            with self.unwrapped.disable_adapter():
                yield self.model
        else:
            yield self.reference


def load_policy(cfg, *, need_reference: bool, vlm=None) -> Policy:
    """Load ``cfg.model`` for training under accelerate, as full fine-tuning or LoRA; or train a
    ready :class:`~sociogeo.reasoner.vlm.transformers_backend.TransformersVLM` passed as ``vlm``.
    """
    torch = require("torch", purpose="training")
    accelerate = require("accelerate", purpose="training")
    from ..reasoner.vlm.transformers_backend import TransformersVLM

    cuda = torch.cuda.is_available() and (cfg.device is None or str(cfg.device).startswith("cuda"))
    bf16 = bool(cfg.bf16 and cuda)
    accelerator = accelerate.Accelerator(mixed_precision="bf16" if bf16 else "no", cpu=not cuda)
    accelerate.utils.set_seed(cfg.seed)
    if vlm is None:
        from ..reasoner.hub import announce_downloads

        announce_downloads([cfg.model], cache_dir=cfg.cache_dir)  # unreachable: an error in seconds, not minutes
        vlm = TransformersVLM.from_pretrained(
            cfg.model, device=accelerator.device, dtype=torch.bfloat16 if bf16 else torch.float32,
            cache_dir=cfg.cache_dir, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels,
        )
    else:
        vlm.model.to(accelerator.device)
    vlm.batch_size = int(getattr(cfg, "generation_batch_size", vlm.batch_size))
    model = vlm.model
    # the vision tower stays frozen (as in the release) unless train_vision; the language model learns
    train_vision = bool(getattr(cfg, "train_vision", False))
    for name, param in model.named_parameters():
        param.requires_grad = train_vision or "visual" not in name.split(".")
    reference = None
    if need_reference and cfg.lora is None:
        reference = copy.deepcopy(model).eval()
        for p in reference.parameters():
            p.requires_grad = False
    if cfg.lora is not None:
        peft = require("peft", purpose="LoRA training")
        pattern = _LANGUAGE_MODEL.format(names="|".join(re.escape(n) for n in cfg.lora.target_modules))
        lora_config = peft.LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                      target_modules=pattern, bias="none")
        model = peft.get_peft_model(model, lora_config)
        vlm.model = model
    if cfg.gradient_checkpointing:
        vlm.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.lora is not None:
            vlm.model.enable_input_require_grads()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("nothing to train: no parameter requires gradients")
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    warmup = max(0, int(cfg.warmup_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    vlm.model = accelerator.unwrap_model(model)
    tok = vlm.processor.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return Policy(accelerator, vlm, model, optimizer, scheduler, reference, cfg.lora is not None, int(pad_id))


def completion_logprobs(model, vlm, requests: Sequence[VLMRequest], completions: Sequence, pad_id: int):
    """Per-token log-probabilities of ``completions`` (1-D id tensors) after their prompts.

    Returns ``(logp, mask)``, both B x T float tensors (T = longest completion), mask 1 on real
    tokens. The prompt is the same left-padded batch generation used, so positions match.
    """
    torch = require("torch", purpose="training")
    batch = vlm.prepare(requests)
    device = batch["input_ids"].device
    lengths = [len(c) for c in completions]
    t = max(lengths)
    comp = torch.full((len(completions), t), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(completions), t), dtype=torch.long, device=device)
    for i, c in enumerate(completions):
        comp[i, : len(c)] = c.to(device)
        mask[i, : len(c)] = 1
    out = model(
        input_ids=torch.cat([batch["input_ids"], comp], dim=1),
        attention_mask=torch.cat([batch["attention_mask"], mask], dim=1),
        pixel_values=batch.get("pixel_values"),
        image_grid_thw=batch.get("image_grid_thw"),
        logits_to_keep=t + 1,
        use_cache=False,
    )
    logits = out.logits[:, :-1, :]  # the logits at position p predict token p + 1
    logp = torch.stack([_token_logprobs(logits[i], comp[i]) for i in range(len(completions))])
    return logp, mask.to(logp.dtype)


def _token_logprobs(logits, ids):
    """Log softmax(logits)[ids] row by row, without materialising the full log-softmax."""
    logits = logits.float()
    return logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


def synchronize(device) -> None:
    """Wait for queued GPU work, so wall-clock timings of a phase include it."""
    torch = require("torch", purpose="training")
    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize(device)


# -- checkpoints ---------------------------------------------------------------------------------
STATE_FILE = "trainer_state.json"


def checkpoint_dir(output_dir, step: int) -> Path:
    """The folder of the checkpoint at ``step``: ``output_dir/checkpoints/step-NNNNNN``."""
    return Path(output_dir) / "checkpoints" / f"step-{step:06d}"


def latest_checkpoint(output_dir) -> Path | None:
    """The complete checkpoint (one with a state file) of the highest step in ``output_dir``, or None."""
    root = Path(output_dir) / "checkpoints"
    done = sorted(p for p in root.glob("step-*") if (p / STATE_FILE).exists()) if root.is_dir() else []
    return done[-1] if done else None


def save_checkpoint(policy: Policy, output_dir, step: int, config_dict: dict) -> Path:
    """Accelerate's full state (model, optimizer, scheduler, RNGs) plus the step; written so
    that a checkpoint only counts once its state file exists.
    """
    path = checkpoint_dir(output_dir, step)
    policy.accelerator.save_state(str(path))
    if policy.accelerator.is_main_process:
        tmp = path / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps({"step": step, "config": config_dict}, indent=1))
        tmp.replace(path / STATE_FILE)
    policy.accelerator.wait_for_everyone()
    return path


def resume(policy: Policy, output_dir, resume_from) -> int:
    """Load a checkpoint (a path, or "latest" in ``output_dir``); returns the step to continue from."""
    if resume_from in (None, False, ""):
        return 0
    path = latest_checkpoint(output_dir) if resume_from in (True, "latest") else Path(resume_from)
    if path is None:
        return 0
    if not (path / STATE_FILE).exists():
        raise ConfigError(f"{path} is not a complete sociogeo checkpoint (no {STATE_FILE})")
    policy.accelerator.load_state(str(path))
    return int(json.loads((path / STATE_FILE).read_text())["step"])


def save_final(policy: Policy, output_dir) -> Path:
    """The trained policy as a folder that :meth:`SocioReasoner.from_pretrained` loads (LoRA
    adapters merged; the adapter alone is also kept).
    """
    out = Path(output_dir) / "final"
    acc = policy.accelerator
    acc.wait_for_everyone()
    if acc.is_main_process:
        model = policy.unwrapped
        if policy.lora:
            model.save_pretrained(str(Path(output_dir) / "final-adapter"))
            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(str(out))
        policy.vlm.processor.save_pretrained(str(out))
    acc.wait_for_everyone()
    return out
