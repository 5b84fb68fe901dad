"""Where the time of one GRPO step goes: generation (stage 1, stage 2), SAM, rendering, rewards
and the policy update; sequences per second and peak memory, for one model pair, prompt count
and group size.

The trainer is not re-implemented: ``sociogeo.train.train_grpo`` runs as usual and its per-step
``callback`` metrics (``time/generate_stage1``, ``time/sam``, ``time/render``,
``time/generate_stage2``, ``time/rewards``, ``time/update``, ``time/step``) are collected. The
table gives their mean and standard deviation over the steps after ``--warmup`` untimed steps;
"other" is the rest of a step (resizing samples to model space, batching, averaging metrics).

Data: a synthetic SocioSeg-style raw folder written with :func:`sociogeo.datasets.socioseg.write_raw` in a
temporary folder: blocky random ``--image-size`` x ``--image-size`` images and 1-3 rectangles per
mask. Image content does not change the cost of a step; its size does.

Models (one of):
- ``--vlm ID|PATH --sam ID|PATH``: real checkpoints (default: the trainer's own defaults,
  Qwen/Qwen2.5-VL-3B-Instruct and facebook/sam2-hiera-large);
- ``--from-config``: FULL-SIZE Qwen2.5-VL-3B and SAM 2 Hiera-Large with random weights, built by
  ``bench_segment.py``'s builders (nothing downloaded) and handed to the trainer
  (``train_grpo(vlm=, sam=)``). ``--device meta`` only builds both architectures (no memory), prints their
  sizes and a memory estimate, and stops. ``--depth N`` keeps every width but builds N text layers, N vision
  blocks and N + 1 Hiera blocks in SAM's third stage: a CPU smoke run of this path, not a measurement;
- ``--tiny``: the tiny random test models (a CPU smoke run).

Random weights never stop by themselves and answer gibberish, so by default (with
``--from-config`` and ``--tiny``) every completion is forced to ``--new-tokens`` tokens
(min_new_tokens = max_new_tokens, as in ``bench_segment.py``) and its decoded text is replaced
by a scripted answer with ``--boxes`` boxes (stage 1) and 3 points per box (stage 2), so SAM,
rendering and rewards do the work they do on real answers; the update still trains on the
generated token ids. ``--script-answers``/``--no-script-answers`` and ``--new-tokens 0`` (the
model decides, up to the release's 2048 tokens) override this.

Checkpoints and the final model are not written (``save_every: 0``, ``save_model=False``): at
full size they are tens of GB and no part of a step. The trainer synchronises CUDA before each
timestamp, so every phase is charged its own GPU work.

Usage::

    python benchmarks/bench_grpo.py --tiny --device cpu --prompts 2 --group-size 4 --steps 2
    python benchmarks/bench_grpo.py --from-config --device meta
    python benchmarks/bench_grpo.py --from-config --device cuda --prompts 4 --group-size 8 --steps 3
    python benchmarks/bench_grpo.py --from-config --lora --prompts 8 --group-size 8 --micro-batch-size 8
    python benchmarks/bench_grpo.py --vlm Qwen/Qwen2.5-VL-3B-Instruct --sam facebook/sam2-hiera-large --steps 3
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench_segment's model builders and answer scripting (importing it puts the checkout on sys.path)
import bench_segment
from bench_segment import (
    force_length,
    n_parameters,
    resolve_dtype,
    scripted_answer,
    tiny_paths,
)

# train_grpo's timing keys, in the order a step runs them, with the table's labels.
PARTS = {
    "generate_stage1": "generate stage 1",
    "sam": "sam",
    "render": "render",
    "generate_stage2": "generate stage 2",
    "rewards": "rewards",
    "update": "update",
}
QUERIES = ("school", "park", "hospital", "residential area", "shopping centre", "parking lot")
STAGE2_MARKER = "have been rendered on these two images"  # only the stage-2 prompt says this


# -- data -----------------------------------------------------------------------------------------
def synthetic_socioseg(root, *, n: int, size: int, seed: int = 0) -> Path:
    """Write ``n`` SocioSeg-style samples (``size`` x ``size`` pixels) in the raw layout under
    ``root/train``; returns ``root``. Images are random 8-pixel blocks (H x W x 3 uint8), masks
    1-3 random rectangles, queries from :data:`QUERIES`."""
    from sociogeo.datasets.socioseg import Sample, write_raw

    rng = np.random.default_rng(seed)

    def blocky() -> np.ndarray:
        cells = rng.integers(0, 256, size=(size // 8 + 1, size // 8 + 1, 3), dtype=np.uint8)
        return np.ascontiguousarray(cells.repeat(8, axis=0).repeat(8, axis=1)[:size, :size])

    def rectangles() -> np.ndarray:
        mask = np.zeros((size, size), dtype=bool)
        for _ in range(int(rng.integers(1, 4))):
            h, w = (int(v) for v in rng.integers(max(2, size // 10), max(3, size // 3), size=2))
            top, left = (int(v) for v in rng.integers(0, size - max(h, w), size=2))
            mask[top:top + h, left:left + w] = True
        return mask

    samples = (Sample(f"bench-{i:04d}", QUERIES[i % len(QUERIES)], blocky(), blocky(), rectangles(), "class")
               for i in range(n))
    write_raw(samples, root, "train")
    return Path(root)


# -- models ---------------------------------------------------------------------------------------
def training_device(requested: str | None):
    """The device train_grpo will use: CUDA when available unless ``requested`` names another
    device (its accelerator takes the first GPU); ``meta`` builds architectures only."""
    import torch

    if requested == "meta":
        return torch.device("meta")
    cuda = torch.cuda.is_available() and (requested is None or requested.startswith("cuda"))
    return torch.device("cuda" if cuda else "cpu")


@contextmanager
def reduced_depth(depth: int | None):
    """While active, bench_segment's full-size builders make ``depth`` text layers, ``depth``
    vision blocks and a SAM Hiera trunk of 1 + 1 + (``depth`` + 1) + 1 blocks (the third stage's
    first block pools, so its global-attention block is the stage's last), every width unchanged."""
    if depth is None:
        yield
        return
    names = ("QWEN25_VL_3B_TEXT", "QWEN25_VL_3B_VISION", "SAM2_HIERA_LARGE")
    saved = {name: getattr(bench_segment, name) for name in names}
    bench_segment.QWEN25_VL_3B_TEXT = {**saved["QWEN25_VL_3B_TEXT"], "num_hidden_layers": depth}
    bench_segment.QWEN25_VL_3B_VISION = {**saved["QWEN25_VL_3B_VISION"], "depth": depth,
                                         "fullatt_block_indexes": [depth - 1]}
    bench_segment.SAM2_HIERA_LARGE = {**saved["SAM2_HIERA_LARGE"], "blocks_per_stage": [1, 1, depth + 1, 1],
                                      "global_attention_blocks": [2 + depth]}
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(bench_segment, name, value)


def prepare_models(args, device):
    """``(model name, ready TransformersVLM, sam)``: the VLM is built here (random full-size
    weights from config, the tiny model, or a checkpoint) and handed to the trainer, so the
    benchmark can fix its answer length; SAM is a ready segmenter or a name the trainer loads."""
    from sociogeo.reasoner.vlm.transformers_backend import TransformersVLM
    from sociogeo.train.config import GRPOConfig

    dtype = resolve_dtype(args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    if args.from_config:
        with reduced_depth(args.depth):
            vlm = bench_segment.full_size_vlm(device, dtype, args.generation_batch_size or 8)
            sam = bench_segment.full_size_sam(device, args.sam_batch_size)
        return "random Qwen2.5-VL-3B", vlm, sam
    if args.tiny:
        paths = tiny_paths()
        name, sam = str(paths.vlm), str(paths.sam)
    else:
        defaults = GRPOConfig()
        name, sam = args.vlm or defaults.model, args.sam or defaults.sam
    return name, TransformersVLM.from_pretrained(name, device=device, dtype=dtype), sam


def grpo_config(args, *, model: str, sam, data: Path, output_dir: Path, new_tokens: int):
    """The trainer's configuration for this run: release defaults except what the flags set."""
    from sociogeo.train.config import DataSettings, GRPOConfig, LoraSettings

    return GRPOConfig(
        model=model,
        sam=sam if isinstance(sam, str) else "handed over",
        output_dir=str(output_dir),
        data=DataSettings(source=str(data), split="train"),
        lora=LoraSettings(r=args.lora_rank, alpha=2 * args.lora_rank) if args.lora else None,
        bf16=args.dtype != "float32",
        steps=args.warmup + args.steps,
        prompts_per_step=args.prompts,
        group_size=args.group_size,
        schedule=args.schedule,
        max_new_tokens=new_tokens or 2048,
        micro_batch_size=args.micro_batch_size,
        kl_coef=args.kl_coef,
        gradient_checkpointing=args.gradient_checkpointing,
        save_every=0,  # checkpoints are not part of a step
        log_every=10**9,
        generation_batch_size=args.generation_batch_size or 8,
        device=args.device,
    ).validate()


# -- what the benchmark changes in the VLM it hands over ------------------------------------------
def script_decoding(vlm, n_boxes: int) -> None:
    """Make ``vlm.decode`` answer the requests of the latest ``vlm.generate_ids`` call with
    scripted answers (``n_boxes`` boxes in stage 1, 3 points per box in stage 2); ids are kept."""
    generate_ids, decode = vlm.generate_ids, vlm.decode
    pending: list = []

    def generate_and_remember(requests, config=None):
        requests = list(requests)
        ids = generate_ids(requests, config)
        pending[:] = requests
        return ids

    def scripted_decode(ids):
        if len(pending) != len(ids):  # not right after a generation: decode for real
            return decode(ids)
        requests, pending[:] = list(pending), []
        return [scripted_answer(r, 2 if STAGE2_MARKER in r.text else 1, n_boxes) for r in requests]

    vlm.generate_ids, vlm.decode = generate_and_remember, scripted_decode


def describe(vlm, cfg, device) -> dict:
    """What was trained, for the report."""
    model = vlm.model
    return {
        "device": str(device) if device.type != "cuda" else f"{device} ({_gpu_name(device)})",
        "dtype": str(next(model.parameters()).dtype),
        "mixed_precision": "bf16" if (cfg.bf16 and device.type == "cuda") else "no",
        "vlm_parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "reference_copy": cfg.kl_coef > 0 and cfg.lora is None,
        "generation_batch_size": vlm.batch_size,
    }


def _gpu_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device)


# -- the run --------------------------------------------------------------------------------------
def run(args) -> dict:
    import torch

    import sociogeo
    from sociogeo.train import train_grpo

    sociogeo.options.progress = False
    device = training_device(args.device)
    random_weights = args.from_config or args.tiny
    script = args.script_answers if args.script_answers is not None else random_weights
    new_tokens = args.new_tokens if args.new_tokens is not None else (256 if random_weights else 0)
    with tempfile.TemporaryDirectory(prefix="sociogeo-bench-grpo-") as tmp:
        workdir = Path(tmp)
        n_samples = max(args.prompts, min(args.prompts * (args.warmup + args.steps), 64))
        data = synthetic_socioseg(workdir / "data", n=n_samples, size=args.image_size)
        t0 = time.perf_counter()
        model, vlm, sam = prepare_models(args, device)
        build_s = time.perf_counter() - t0
        if new_tokens:
            force_length(vlm, new_tokens)
        if script:
            script_decoding(vlm, args.boxes)
        cfg = grpo_config(args, model=model, sam=sam, data=data, output_dir=workdir / "run", new_tokens=new_tokens)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        steps: list[dict] = []
        start = time.perf_counter()
        train_grpo(cfg, vlm=vlm, sam=None if isinstance(sam, str) else sam, save_model=False,
                   callback=lambda step, m: steps.append(dict(m)), log=print if args.verbose else (lambda line: None))
        wall = time.perf_counter() - start
        seen = describe(vlm, cfg, device)
    timed = steps[args.warmup:]
    step_s = [m["time/step"] for m in steps]
    sequences = 2 * args.prompts * args.group_size  # stage 1 and stage 2, both schedules
    tokens = [m.get("stage1/completion_tokens", 0.0) * sequences / 2
              + m.get("stage2/completion_tokens", 0.0) * sequences / 2
              for m in timed]
    generate_s = [m["time/generate_stage1"] + m["time/generate_stage2"] for m in timed]
    parts = {key: _stats([m[f"time/{key}"] for m in timed]) for key in PARTS}
    parts["other"] = _stats([m["time/step"] - sum(m[f"time/{k}"] for k in PARTS) for m in timed])
    mean_step = float(np.mean([m["time/step"] for m in timed]))
    return {
        **seen,
        "vlm": (f"random Qwen2.5-VL-3B (from config{f', depth {args.depth}' if args.depth else ''})"
                if args.from_config else model),
        "sam": sam if isinstance(sam, str) else f"{sam.name} ({n_parameters(sam) / 1e6:,.1f} M parameters)",
        "lora": args.lora,
        "prompts": args.prompts,
        "group_size": args.group_size,
        "schedule": args.schedule,
        "image_size": args.image_size,
        "micro_batch_size": args.micro_batch_size,
        "new_tokens": new_tokens or "model decides",
        "scripted_answers": bool(script),
        "warmup_steps": args.warmup,
        "timed_steps": len(timed),
        "build_s": build_s,
        "setup_s": wall - sum(step_s),  # policy load, reference copy, SAM load, optimizer
        "parts_s": parts,
        "step_s": _stats([m["time/step"] for m in timed]),
        "sequences_per_step": sequences,
        "sequences_per_s": sequences / mean_step,
        "generated_tokens_per_s": float(np.sum(tokens) / np.sum(generate_s)) if np.sum(generate_s) > 0 else None,
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None,
        "peak_gpu_reserved_gb": torch.cuda.max_memory_reserved() / 1e9 if device.type == "cuda" else None,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,  # Linux: kilobytes
    }


def _stats(values) -> dict:
    """Mean and sample standard deviation (None for a single value) of seconds."""
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None}


def print_table(r: dict) -> None:
    def count(n):
        if n is None:
            return "?"
        return f"{n / 1e6:,.1f} M" if n >= 1e6 else f"{n / 1e3:,.1f} k"

    print(f"device: {r['device']}; weights {r['dtype']}, mixed precision {r['mixed_precision']}")
    print(f"vlm: {r['vlm']} ({count(r['vlm_parameters'])} parameters, {count(r['trainable_parameters'])} trained"
          f"{', LoRA' if r['lora'] else ', full fine-tuning'}{', reference copy' if r['reference_copy'] else ''})")
    print(f"sam: {r['sam']}")
    print(f"{r['prompts']} prompts x group of {r['group_size']} ({r['schedule']} schedule) = "
          f"{r['sequences_per_step']} sequences per step; images {r['image_size']} px; new tokens per completion: "
          f"{r['new_tokens']}; scripted answers: {r['scripted_answers']}; micro-batch {r['micro_batch_size']}, "
          f"generation batch {r['generation_batch_size']}")
    print(f"models built in {r['build_s']:.1f} s; trainer setup {r['setup_s']:.1f} s; "
          f"{r['timed_steps']} timed step(s) after {r['warmup_steps']} warm-up step(s)")
    mean_step = r["step_s"]["mean"]
    print(f"\n{'part':<18}{'mean s':>10}{'std s':>10}{'share':>8}")
    rows = [(PARTS.get(k, k), v) for k, v in r["parts_s"].items()] + [("step", r["step_s"])]
    for label, s in rows:
        std = "-" if s["std"] is None else f"{s['std']:.3f}"
        print(f"{label:<18}{s['mean']:>10.3f}{std:>10}{s['mean'] / mean_step:>8.1%}")
    print(f"\nsequences per second: {r['sequences_per_s']:.3f}")
    if r["generated_tokens_per_s"] is not None:
        print(f"generated tokens per second of generation time: {r['generated_tokens_per_s']:.1f}")
    if r["peak_gpu_memory_gb"] is not None:
        print(f"peak GPU memory: {r['peak_gpu_memory_gb']:.1f} GB allocated, "
              f"{r['peak_gpu_reserved_gb']:.1f} GB reserved")
    print(f"peak process RSS: {r['peak_rss_gb']:.1f} GB")


# -- construct only -------------------------------------------------------------------------------
def construct_only(args) -> dict:
    """Build the full-size architectures on the meta device (no memory, no weights) and estimate
    the training state's memory in bf16: weights, reference copy, gradients and AdamW's two
    moments of the trained parameters; activations, KV caches and SAM features come on top."""
    import torch

    meta = torch.device("meta")
    with reduced_depth(args.depth):
        vlm = bench_segment.full_size_vlm(meta, torch.bfloat16, 1)
        sam = bench_segment.full_size_sam(meta, args.sam_batch_size)
    params = sum(p.numel() for p in vlm.model.parameters())
    language = sum(p.numel() for n, p in vlm.model.named_parameters() if "visual" not in n.split("."))
    if args.lora:
        # peft adds r * (fan_in + fan_out) per adapted projection; the base stays frozen
        names = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
        trained = sum(args.lora_rank * (m.in_features + m.out_features) for n, m in vlm.model.named_modules()
                      if "language_model" in n and n.rsplit(".", 1)[-1] in names)
    else:
        trained = language
    reference = 0 if args.lora or args.kl_coef <= 0 else params
    state_gb = 2 * (params + reference + trained + 2 * trained) / 1e9
    return {"vlm_parameters": params, "language_parameters": language, "trained_parameters": trained,
            "sam_parameters": n_parameters(sam), "reference_copy": bool(reference), "training_state_gb": state_gb,
            "sam_weights_gb": 4 * n_parameters(sam) / 1e9}


def print_construct(r: dict, args) -> None:
    depth = f" (depth {args.depth})" if args.depth else ""
    print(f"built on the meta device{depth}: random Qwen2.5-VL-3B {r['vlm_parameters'] / 1e6:,.1f} M parameters "
          f"({r['language_parameters'] / 1e6:,.1f} M language model), "
          f"SAM 2 Hiera-Large {r['sam_parameters'] / 1e6:,.1f} M")
    how = f"LoRA r={args.lora_rank}" if args.lora else "full fine-tuning"
    print(f"trained: {r['trained_parameters'] / 1e6:,.1f} M ({how}); "
          f"reference copy: {r['reference_copy']}")
    print(f"training state in bf16 (weights, reference, gradients, AdamW moments): {r['training_state_gb']:.1f} GB "
          f"+ SAM float32 {r['sam_weights_gb']:.1f} GB, before activations and KV caches")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    models = parser.add_mutually_exclusive_group()
    models.add_argument("--tiny", action="store_true", help="tiny random test models (CPU smoke run)")
    models.add_argument("--from-config", action="store_true",
                        help="full-size Qwen2.5-VL-3B + SAM 2 Hiera-Large with random weights (no download)")
    parser.add_argument("--vlm", default=None,
                        help="policy to start from: hub id or folder (default Qwen/Qwen2.5-VL-3B-Instruct)")
    parser.add_argument("--sam", default=None, help="SAM hub id, folder or .pth (default facebook/sam2-hiera-large)")
    parser.add_argument("--depth", type=int, default=None,
                        help="--from-config: layers/blocks instead of the full depth "
                             "(widths unchanged; CPU smoke runs)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available); meta: build only")
    parser.add_argument("--dtype", default=None, choices=("bfloat16", "float32"),
                        help="training precision (default: bf16 on CUDA, float32 on CPU)")
    parser.add_argument("--prompts", type=int, default=4, help="prompts (samples) per step (default 4)")
    parser.add_argument("--group-size", type=int, default=8, help="completions per prompt and stage (default 8)")
    parser.add_argument("--schedule", default="release", choices=("release", "paper"))
    parser.add_argument("--steps", type=int, default=3, help="timed steps (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up steps first (default 1)")
    parser.add_argument("--image-size", type=int, default=768,
                        help="side of the synthetic chips in pixels (default 768)")
    parser.add_argument("--new-tokens", type=int, default=None,
                        help="force every completion to this many tokens "
                             "(default 256 for random weights; 0: the model decides)")
    answers = parser.add_mutually_exclusive_group()
    answers.add_argument("--script-answers", dest="script_answers", action="store_true", default=None,
                         help="score scripted answers instead of the decoded text (default for random weights)")
    answers.add_argument("--no-script-answers", dest="script_answers", action="store_false")
    parser.add_argument("--boxes", type=int, default=3, help="boxes per scripted stage-1 answer (default 3)")
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters instead of the full language model")
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--kl-coef", type=float, default=0.005,
                        help="KL weight; 0 drops the reference model (default 0.005)")
    parser.add_argument("--micro-batch-size", type=int, default=4,
                        help="sequences per forward/backward pass (default 4)")
    parser.add_argument("--generation-batch-size", type=int, default=None,
                        help="requests per generate call (default: the trainer's, 8)")
    parser.add_argument("--sam-batch-size", type=int, default=4, help="--from-config: images per SAM encoder call")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="print the trainer's log lines")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    if (args.tiny or args.from_config) and (args.vlm or args.sam):
        parser.error("--vlm/--sam cannot be combined with --tiny or --from-config")
    if args.depth and not args.from_config:
        parser.error("--depth only applies to --from-config")
    if args.device == "meta" and not args.from_config:
        parser.error("--device meta only builds the --from-config architectures")
    if args.depth is not None and args.depth < 1:
        parser.error("--depth must be at least 1")
    if min(args.prompts, args.steps, args.micro_batch_size) < 1 or args.group_size < 2 or args.warmup < 0:
        parser.error("--prompts, --steps and --micro-batch-size must be >= 1, --group-size >= 2, --warmup >= 0")
    if args.image_size < 56:
        parser.error("--image-size must be at least 56 pixels (the VLM's smallest image is 56 x 56)")

    if args.device == "meta":
        result = construct_only(args)
        print_construct(result, args)
    else:
        result = run(args)
        print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
