"""Training configurations, loadable from YAML; defaults mirror the released settings (the release's GRPO settings)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .. import defaults
from ..errors import ConfigError


@dataclass
class LoraSettings:
    """LoRA on the language model's projections (the vision tower stays frozen)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class DataSettings:
    """Where training samples come from: a SocioSeg source (hub id, raw folder, saved dataset)."""

    source: str = "vvangfaye/SocioSeg"
    split: str = "train"
    limit: int | None = None
    image_size: int | None = None  # resize samples (square, pixels) before use; None keeps them
    queries: list[str] | None = None  # keep only samples of these queries (e.g. ["park"]); None keeps all


@dataclass
class _Common:
    model: str = "Qwen/Qwen2.5-VL-3B-Instruct"  # the policy to start from
    output_dir: str = "runs/socioreasoner"
    data: DataSettings = field(default_factory=DataSettings)
    lora: LoraSettings | None = None  # None: full fine-tuning
    learning_rate: float = 1e-6
    weight_decay: float = 0.01
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    bf16: bool = True  # ignored on CPU
    steps: int = 250
    micro_batch_size: int = 4  # sequences per forward/backward pass
    save_every: int = 50  # 0: no intermediate checkpoints
    log_every: int = 1
    seed: int = 42
    min_pixels: int = 56 * 56
    max_pixels: int = 768 * 768
    device: str | None = None
    cache_dir: str | None = None
    gradient_checkpointing: bool = False
    train_vision: bool = False  # also train the vision tower (the release keeps it frozen)


@dataclass
class GRPOConfig(_Common):
    """GRPO over the two-stage rollout. Defaults: the release (128 prompts x 8 samples per step,
    clip 0.2, KL 0.005 with the k3 estimator, AdamW lr 1e-6, wd 0.01, one PPO epoch, sampling
    temperature 0.99 / top-p 0.99 / top-k 100, 2048 new tokens).
    """

    sam: str = defaults.SAM
    prompts_per_step: int = 128
    group_size: int = 8
    # "release": one stage-2 sample per stage-1 sample; "paper": best stage-1 sample, group_size stage-2 samples
    schedule: str = "release"
    reward_variant: str = "release"  # or "paper"
    clip: float = 0.2  # the paper says 0.5
    kl_coef: float = 0.005
    ppo_epochs: int = 1
    mini_batches: int = 1  # optimizer steps per rollout batch (per epoch)
    temperature: float = 0.99
    top_p: float = 0.99
    top_k: int = 100
    max_new_tokens: int = 2048
    loss_aggregation: str = "sequence-mean"  # or "token-mean"
    generation_backend: str = "transformers"  # or "vllm" (GPU, vllm installed)
    generation_batch_size: int = 8  # requests per model.generate call (transformers backend)
    vllm_gpu_memory_utilization: float = 0.3

    def validate(self) -> GRPOConfig:
        """Check every setting; returns the config itself, or raises ConfigError naming the bad one."""
        _choice("schedule", self.schedule, ("release", "paper"))
        _choice("reward_variant", self.reward_variant, ("release", "paper"))
        _choice("loss_aggregation", self.loss_aggregation, ("sequence-mean", "token-mean"))
        _choice("generation_backend", self.generation_backend, ("transformers", "vllm"))
        _positive(self, "prompts_per_step", "group_size", "steps", "micro_batch_size", "ppo_epochs", "mini_batches",
                  "max_new_tokens", "generation_batch_size")
        if not isinstance(self.save_every, int) or self.save_every < 0:
            raise ConfigError(f"save_every must be 0 (never) or a positive number of steps, got {self.save_every!r}")
        if self.group_size < 2:
            raise ConfigError("group_size must be at least 2: advantages are normalised within each group")
        if not 0 < self.clip < 1:
            raise ConfigError(f"clip must be in (0, 1), got {self.clip}")
        return self


@dataclass
class SFTConfig(_Common):
    """Supervised baseline (the paper's SFT baseline): targets are the ground-truth mask's boxes
    plus 3 random points inside each. ``stages``: "both" trains the two-stage prompts (stage 1 ->
    boxes, stage 2 -> boxes + points); "single" is the paper's one-stage baseline (stage-1 prompt
    -> boxes + points).
    """

    learning_rate: float = 1e-5
    epochs: int = 1
    steps: int = 0  # 0: derive from epochs
    stages: str = "both"
    points_per_box: int = 3
    sam: str | None = None  # stage-2 renderings use the ground-truth mask, so no SAM is needed

    def validate(self) -> SFTConfig:
        """Check every setting; returns the config itself, or raises ConfigError naming the bad one."""
        _choice("stages", self.stages, ("both", "single"))
        _positive(self, "epochs", "micro_batch_size", "points_per_box")
        if self.steps != 0:  # 0 (the default) derives the step count from epochs
            _positive(self, "steps")
        return self


def _choice(name, value, allowed):
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _positive(cfg, *names):
    for n in names:
        v = getattr(cfg, n)
        if not isinstance(v, int) or v < 1:
            raise ConfigError(f"{n} must be a positive integer, got {v!r}")


def _build(cls, raw: dict[str, Any], where: str):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    kwargs = {}
    for k, v in raw.items():
        if k == "data" and isinstance(v, dict):
            v = _build(DataSettings, v, f"{where}.data")
        elif k == "lora" and isinstance(v, dict):
            v = _build(LoraSettings, v, f"{where}.lora")
        elif k == "lora" and v is True:
            v = LoraSettings()
        elif k == "lora" and v is False:
            v = None
        kwargs[k] = v
    return cls(**kwargs)


def load_config(path_or_dict, **overrides):
    """A :class:`GRPOConfig` or :class:`SFTConfig` from a YAML file (or dict) whose ``method`` key
    is ``grpo`` or ``sft``; ``overrides`` replace top-level settings (e.g. from the CLI).
    """
    if isinstance(path_or_dict, dict):
        raw, where = dict(path_or_dict), "config"
    else:
        from .._optional import require

        yaml = require("yaml", purpose="reading training configs")
        path = Path(path_or_dict)
        if not path.exists():
            packaged = Path(__file__).resolve().parent.parent / "configs" / f"{path_or_dict}.yaml"
            if packaged.exists():
                path = packaged
            else:
                raise ConfigError(f"config file not found: {path_or_dict}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        where = str(path)
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must hold a mapping of settings")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    method = raw.pop("method", "grpo")
    cls = {"grpo": GRPOConfig, "sft": SFTConfig}.get(method)
    if cls is None:
        raise ConfigError(f"{where}: method must be 'grpo' or 'sft', got {method!r}")
    return _build(cls, raw, where).validate()


def to_dict(cfg) -> dict:
    """The config as a plain nested dict with ``method`` ("grpo" or "sft") added, e.g. for ``config.json``."""
    out = asdict(cfg)
    out["method"] = "grpo" if isinstance(cfg, GRPOConfig) else "sft"
    return out
