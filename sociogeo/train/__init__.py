"""Training SocioReasoner: GRPO over the two-stage rollout (the release's GRPO settings) and the SFT baseline.

A compact loop on ``accelerate`` (one process, DDP/FSDP/DeepSpeed through ``accelerate launch``),
LoRA through ``peft``; see the README's design notes for why not TRL's GRPOTrainer.
"""

from .config import GRPOConfig, SFTConfig, load_config

__all__ = ["GRPOConfig", "SFTConfig", "load_config", "train_grpo", "train_sft"]


def __getattr__(name):
    if name == "train_grpo":
        from .grpo import train_grpo

        return train_grpo
    if name == "train_sft":
        from .sft import train_sft

        return train_sft
    raise AttributeError(name)
