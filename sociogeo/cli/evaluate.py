"""``sociogeo evaluate``: score a reasoner on a SocioSeg-style dataset (the paper's Table 1 layout)."""

from __future__ import annotations

import sys

from .. import defaults


def add(subparsers, parents) -> None:
    """Register ``sociogeo evaluate``."""
    p = subparsers.add_parser(
        "evaluate", parents=parents, help="score a reasoner on SocioSeg (paper's Table 1 layout)",
        description="Run the reasoner on a SocioSeg-style dataset; write per-sample results (CSV) and "
                    "print gIoU / cIoU / F1 per level and overall beside the paper's numbers.",
    )
    p.add_argument("--data", default=defaults.SOCIOSEG,
                   help=f"hub id, raw folder or saved dataset (default {defaults.SOCIOSEG})")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--vlm", default=defaults.VLM,
                   help=f"the policy: hub id, folder or server URL (default {defaults.VLM})")
    p.add_argument("--sam", default=defaults.SAM, help=f"SAM: hub id, folder or SAM v1 .pth (default {defaults.SAM})")
    p.add_argument("--device")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--limit", type=int, help="evaluate only the first N samples")
    p.add_argument("--sampling", choices=("greedy", "released"), default="greedy",
                   help="greedy decoding, or the authors' evaluation sampling (temperature 1, top-p 0.8, top-k 100)")
    p.add_argument("--max-new-tokens", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--csv", default="evaluation.csv", help="per-sample results")
    p.add_argument("--offline", action="store_true", help="never touch the network")
    p.set_defaults(handler=run)


def run(args) -> int:
    """``sociogeo evaluate``: score the reasoner, print the table and write the per-sample CSV; returns 0."""
    from ..datasets.socioseg import load_socioseg
    from ..reasoner.model import SocioReasoner
    from ..reasoner.vlm.base import GenerationConfig
    from ..train.evaluate import evaluate

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


__all__ = ["add", "run"]
