"""``sociogeo train``: GRPO or the SFT baseline from a YAML config."""

from __future__ import annotations

import sys


def add(subparsers, parents) -> None:
    """Register ``sociogeo train``."""
    p = subparsers.add_parser(
        "train", parents=parents, help="train SocioReasoner with GRPO or the SFT baseline",
        description="Train from a YAML config (method: grpo or sft). Packaged configs: grpo_release, "
                    "grpo_lora_small, sft. Several GPUs: accelerate launch -m sociogeo train --config ...",
    )
    p.add_argument("--config", required=True, help="a YAML file, or the name of a packaged config")
    p.add_argument("--model", help="override the policy to start from (hub id or folder)")
    p.add_argument("--sam", help="override the SAM model (GRPO)")
    p.add_argument("--data", help="override data.source (hub id, raw folder or saved dataset)")
    p.add_argument("--output-dir", help="override output_dir")
    p.add_argument("--steps", type=int, help="override the number of steps")
    p.add_argument("--resume", nargs="?", const="latest", default=None,
                   help="continue from the latest checkpoint in output_dir (or from the given checkpoint folder)")
    p.set_defaults(handler=run)


def run(args) -> int:
    """``sociogeo train``: load the config, apply the overrides and train; returns 0."""
    from ..train.config import load_config

    cfg = load_config(args.config, model=args.model, output_dir=args.output_dir, steps=args.steps)
    if args.data:
        cfg.data.source = args.data
    if args.sam and hasattr(cfg, "sam"):
        cfg.sam = args.sam
    cfg.validate()  # every setting checked before a model loads
    if type(cfg).__name__ == "GRPOConfig":
        from ..train.grpo import train_grpo

        train_grpo(cfg, resume_from=args.resume)
    else:
        from ..train.sft import train_sft

        train_sft(cfg, resume_from=args.resume)
    print(f"trained model: {cfg.output_dir}/final", file=sys.stderr)
    return 0


__all__ = ["add", "run"]
