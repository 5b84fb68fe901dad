"""``sociogeo train`` and ``sociogeo evaluate`` (registered in :mod:`sociogeo.cli`)."""

from __future__ import annotations

import sys


def add_train(subparsers, parents) -> None:
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
    p.set_defaults(handler=run_train)


def run_train(args) -> int:
    from .config import load_config

    cfg = load_config(args.config, model=args.model, output_dir=args.output_dir, steps=args.steps)
    if args.data:
        cfg.data.source = args.data
    if args.sam and hasattr(cfg, "sam"):
        cfg.sam = args.sam
    if type(cfg).__name__ == "GRPOConfig":
        from .grpo import train_grpo

        train_grpo(cfg, resume_from=args.resume)
    else:
        from .sft import train_sft

        train_sft(cfg, resume_from=args.resume)
    print(f"trained model: {cfg.output_dir}/final", file=sys.stderr)
    return 0


def add_evaluate(subparsers, parents) -> None:
    p = subparsers.add_parser(
        "evaluate", parents=parents, help="score a reasoner on SocioSeg (paper's Table 1 layout)",
        description="Run the reasoner on a SocioSeg-style dataset; write per-sample results (CSV) and "
                    "print gIoU / cIoU / F1 per level and overall beside the paper's numbers.",
    )
    p.add_argument("--data", default="vvangfaye/SocioSeg", help="hub id, raw folder or saved dataset")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--vlm", default="vvangfaye/SocioReasoner-3B")
    p.add_argument("--sam", default="facebook/sam2-hiera-large")
    p.add_argument("--device")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--limit", type=int, help="evaluate only the first N samples")
    p.add_argument("--sampling", choices=("greedy", "released"), default="greedy",
                   help="greedy decoding, or the authors' evaluation sampling (temperature 1, top-p 0.8, top-k 100)")
    p.add_argument("--max-new-tokens", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--csv", default="evaluation.csv", help="per-sample results")
    p.add_argument("--offline", action="store_true", help="never touch the network")
    p.set_defaults(handler=run_evaluate)


def run_evaluate(args) -> int:
    from ..evaluate import evaluate
    from ..reasoner import SocioReasoner
    from ..socioseg import load_socioseg
    from ..vlm.base import GenerationConfig

    generation = (GenerationConfig.released(args.max_new_tokens, seed=args.seed) if args.sampling == "released"
                  else GenerationConfig.greedy(args.max_new_tokens))
    data = load_socioseg(args.data, args.split, limit=args.limit)
    reasoner = SocioReasoner.from_pretrained(args.vlm, args.sam, device=args.device, offline=args.offline or None,
                                             generation=generation)
    result = evaluate(reasoner, data, batch_size=args.batch_size, csv_path=args.csv)
    print(result.table(label=f"{_short(args.vlm)}"))
    print(f"per-sample results: {args.csv}", file=sys.stderr)
    return 0


def _short(name: str) -> str:
    return str(name).rstrip("/").split("/")[-1]


__all__ = ["add_train", "run_train", "add_evaluate", "run_evaluate"]
