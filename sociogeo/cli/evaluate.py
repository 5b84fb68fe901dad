"""``sociogeo evaluate``: score a reasoner on a SocioSeg-style dataset (the paper's Table 1 layout).

The paper's protocol by default: the release's sampled decoding (temperature 1.0, top-p 0.8,
top-k 100, repetition penalty 1.0), seeded (``--seed``, recorded in the output), answers read
strictly. ``--greedy`` decodes greedily; ``--seeds N`` (or a list) repeats the run and reports
the mean and spread.
"""

from __future__ import annotations

import sys

from .. import defaults
from ..errors import ConfigError


def add(subparsers, parents) -> None:
    """Register ``sociogeo evaluate``."""
    p = subparsers.add_parser(
        "evaluate", parents=parents, help="score a reasoner on SocioSeg (paper's Table 1 layout)",
        description="Run the reasoner on a SocioSeg-style dataset with the paper's protocol (the release's "
                    "sampled decoding, seeded); write per-sample results (CSV) and print gIoU / cIoU / F1 per "
                    "level and overall beside the paper's numbers, with the protocol used.",
    )
    p.add_argument("--data", default=defaults.SOCIOSEG,
                   help=f"hub id, raw folder or saved dataset (default {defaults.SOCIOSEG})")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="which split (default test)")
    p.add_argument("--vlm", default=defaults.VLM,
                   help=f"the policy: hub id, folder or server URL (default {defaults.VLM})")
    p.add_argument("--sam", default=defaults.SAM, help=f"SAM: hub id, folder or SAM v1 .pth (default {defaults.SAM})")
    p.add_argument("--device", help="cuda, cuda:1, cpu, ... (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=defaults.BATCH_SIZE,
                   help=f"samples per model call (default {defaults.BATCH_SIZE})")
    p.add_argument("--limit", type=int, help="evaluate only the first N samples")
    decoding = p.add_mutually_exclusive_group()
    decoding.add_argument("--greedy", action="store_true",
                          help="greedy decoding (reproducible analysis) instead of the paper's protocol, the "
                               "release's sampling (temperature 1.0, top-p 0.8, top-k 100, repetition penalty 1.0)")
    decoding.add_argument("--seeds", type=_seeds, metavar="N|S1,S2,...",
                          help="repeat the sampled run over N seeds (--seed, --seed + 1, ...) or the listed "
                               "seeds; prints every run, their mean and standard deviation")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled decoding (default 0; recorded)")
    p.add_argument("--max-new-tokens", type=int, default=defaults.MAX_NEW_TOKENS,
                   help=f"longest answer per stage, in tokens (default {defaults.MAX_NEW_TOKENS})")
    p.add_argument("--parse", choices=("strict", "repair"), default="strict",
                   help="read answers as the release does (strict, default) or with sociogeo's tolerant "
                        "parser (repair; its repairs are counted per sample)")
    p.add_argument("--level-column", default="level",
                   help="dataset column (or question.json key) holding each sample's level; samples without "
                        "one get a level guessed from the query (default 'level'; 'none' to always guess)")
    p.add_argument("--csv", default="evaluation.csv", help="per-sample results (default evaluation.csv)")
    p.add_argument("--offline", action="store_true", help="never touch the network")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process (default); ray: batches on Ray actors, one copy of the models "
                        "each (the same numbers as locally)")
    p.add_argument("--ray-address", default=None,
                   help="with --engine ray: the cluster to join (default: RAY_ADDRESS, else a local cluster)")
    p.add_argument("--num-actors", type=int, default=1, help="with --engine ray: model actors (default 1)")
    p.add_argument("--gpus-per-actor", type=float, default=None,
                   help="with --engine ray: GPUs per model actor (default 1 when the cluster has GPUs, else 0)")
    p.set_defaults(handler=run)


def _seeds(text: str) -> list[int] | int:
    """``--seeds``: a count (``3``) or a comma-separated list (``0,7,42``)."""
    import argparse

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a count or a comma-separated list of integers, not {text!r}") from None
    if not values or ("," not in text and values[0] < 1):
        raise argparse.ArgumentTypeError(f"a positive count or a list of seeds, not {text!r}")
    return values[0] if "," not in text else values


def run(args) -> int:
    """``sociogeo evaluate``: score the reasoner, print the table and write the per-sample CSV; returns 0."""
    from ..datasets.socioseg import load_socioseg
    from ..reasoner.model import ReasonerSpec
    from ..train.evaluate import decoding, evaluate, evaluate_seeds

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    level_column = None if str(args.level_column).lower() == "none" else args.level_column
    data = load_socioseg(args.data, args.split, limit=args.limit, level_column=level_column)
    generation = decoding(greedy=args.greedy, seed=args.seed, max_new_tokens=args.max_new_tokens)
    engine = None
    spec = ReasonerSpec(args.vlm, args.sam, device=args.device, offline=args.offline or None, generation=generation,
                        parse=args.parse)
    if args.engine == "ray":
        from ..pipeline.ray_engine import RayEngine

        engine = RayEngine(address=args.ray_address, num_actors=args.num_actors, gpus_per_actor=args.gpus_per_actor)
        reasoner = spec
    else:
        given = [f for f, v in (("--ray-address", args.ray_address), ("--gpus-per-actor", args.gpus_per_actor))
                 if v is not None] + (["--num-actors"] if args.num_actors != 1 else [])
        if given:
            raise ConfigError(f"{', '.join(given)} only apply with --engine ray")
        reasoner = spec.load()
    if args.seeds is not None:
        seeds = list(range(args.seed, args.seed + args.seeds)) if isinstance(args.seeds, int) else args.seeds
        result = evaluate_seeds(reasoner, data, seeds, batch_size=args.batch_size, csv_path=args.csv,
                                max_new_tokens=args.max_new_tokens, engine=engine)
    else:
        result = evaluate(reasoner, data, batch_size=args.batch_size, csv_path=args.csv, generation=generation,
                          engine=engine)
    print(result.table(label=f"{_short(args.vlm)}"))
    if args.parse != "strict":
        print("Answers read with parse='repair' (sociogeo's tolerant parser), not as the release reads them.")
    print(f"per-sample results: {args.csv}", file=sys.stderr)
    return 0


def _short(name: str) -> str:
    return str(name).rstrip("/").split("/")[-1]


__all__ = ["add", "run"]
