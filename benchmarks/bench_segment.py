"""Where the time of ``sociogeo.segment`` goes, per chip: imagery, VLM stage 1, SAM, render,
VLM stage 2, SAM, vectorize; and chips per second, for one model pair and batch size.

The pipeline is not re-implemented here: ``segment()`` runs as usual on a reasoner whose VLM and
SAM backends are wrapped in timing proxies (the VLM proxy also tells the SAM proxy which stage
it is in), and the reasoner's render step and segment's mask-to-polygon step are wrapped for the
run. On a GPU every stage boundary calls ``torch.cuda.synchronize()``, so asynchronous kernels are
charged to the stage that launched them.

Models (one of):
- ``--vlm ID|PATH --sam ID|PATH``: real checkpoints (default: the released pair);
- ``--from-config``: FULL-SIZE architectures with random weights built from their known
  hyperparameters (Qwen2.5-VL-3B-Instruct: 36 x 2048 text layers, 32 x 1280 vision blocks;
  SAM 2 Hiera-Large: 48 Hiera blocks, 144-1152 channels), nothing downloaded. The tokenizer and
  processor come from the tiny test model (same image processing, a smaller vocabulary);
- ``--tiny``: the tiny random test models (a CPU smoke run).

Random weights never stop by themselves and answer gibberish, so by default (with
``--from-config`` and ``--tiny``) every answer is forced to ``--new-tokens`` tokens
(min_new_tokens = max_new_tokens), and the answer text is then replaced by a scripted one with
``--boxes`` boxes (stage 1) and 3 points per box (stage 2), so SAM does the work it does on real
answers. ``--script-answers``/``--no-script-answers`` and ``--new-tokens 0`` (the model decides)
override this.

Imagery is the bundled Helsinki sample (read from GeoTIFF, laid out as a strip of ``--chips``
distinct chips); download speed is what ``bench_fetch.py`` measures.

Usage::

    python benchmarks/bench_segment.py --tiny --device cpu --chips 4 --batch-size 2
    python benchmarks/bench_segment.py --from-config --device cuda --dtype bfloat16 --chips 16 --batch-size 4
    python benchmarks/bench_segment.py --from-config --device cuda --chips 4 16 32 --batch-size 1 8 32 --json out.json
    python benchmarks/bench_segment.py --vlm vvangfaye/SocioReasoner-3B --sam facebook/sam2-hiera-large --chips 16
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("imagery", "sam embed", "vlm stage 1", "sam stage 1", "render", "vlm stage 2", "sam stage 2", "vectorize")

# Qwen/Qwen2.5-VL-3B-Instruct's config.json (text and vision towers).
QWEN25_VL_3B_TEXT = {
    "vocab_size": 151936,
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
}
QWEN25_VL_3B_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "hidden_act": "silu",
    "out_hidden_size": 2048,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
}
# SAM 2 (2.0) Hiera-Large, sam2_hiera_l.yaml: trunk and FPN neck; 1024-pixel input.
SAM2_HIERA_LARGE = {
    "hidden_size": 144,
    "num_attention_heads": 2,
    "blocks_per_stage": [2, 6, 36, 4],
    "embed_dim_per_stage": [144, 288, 576, 1152],
    "num_attention_heads_per_stage": [2, 4, 8, 16],
    "window_size_per_stage": [8, 4, 16, 8],
    "global_attention_blocks": [23, 33, 43],
    "window_positional_embedding_background_size": [7, 7],
}
SAM2_LARGE_CHANNELS = [1152, 576, 288, 144]


# -- timing ---------------------------------------------------------------------------------------
class Clock:
    """Seconds per stage; ``phase`` is the reasoning stage the VLM proxy last finished (0, 1, 2)."""

    def __init__(self, device):
        self.device = device
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self.phase = 0
        self.tokens = 0  # generated tokens, both stages

    def sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    @contextmanager
    def time(self, stage: str):
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds[stage] += time.perf_counter() - start
            self.calls[stage] += 1

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()
        self.phase = 0
        self.tokens = 0


class TimedVLM:
    """A VLM backend proxy: times ``generate`` per stage; optionally swaps in scripted answers."""

    def __init__(self, inner, clock: Clock, *, script_boxes: int | None, forced_tokens: int = 0):
        self.inner = inner
        self.clock = clock
        self.script_boxes = script_boxes
        self.forced_tokens = forced_tokens
        self.name = getattr(inner, "name", type(inner).__name__)

    def generate(self, requests, config=None):
        stage = 2 if any("have been rendered on these two images" in r.text for r in requests) else 1
        with self.clock.time(f"vlm stage {stage}"):
            answers = self.inner.generate(requests, config)
        self.clock.phase = stage
        self.clock.tokens += self._count(answers)
        if self.script_boxes is None:
            return answers
        return [scripted_answer(r, stage, self.script_boxes) for r in requests]


    def _count(self, answers) -> int:
        if self.forced_tokens:
            return self.forced_tokens * len(answers)
        tokenizer = getattr(getattr(self.inner, "processor", None), "tokenizer", None)
        return sum(len(tokenizer(a)["input_ids"]) for a in answers) if tokenizer is not None else 0


class TimedSAM:
    """A segmenter proxy: times ``embed`` and ``predict`` (charged to the stage the VLM is in)."""

    def __init__(self, inner, clock: Clock):
        self.inner = inner
        self.clock = clock
        self.name = getattr(inner, "name", type(inner).__name__)

    def embed(self, images):
        with self.clock.time("sam embed"):
            return self.inner.embed(images)

    def predict(self, embedding, prompts):
        with self.clock.time(f"sam stage {max(self.clock.phase, 1)}"):
            return self.inner.predict(embedding, prompts)


def scripted_answer(request, stage: int, n_boxes: int) -> str:
    """A well-formed answer in the request's model-pixel space: ``n_boxes`` boxes on a diagonal
    (stage 1), or the stage-1 boxes from the prompt with 3 points each (stage 2)."""
    h, w = np.asarray(request.images[1]).shape[:2]
    if stage == 1:
        items = []
        step_x, step_y = w / (n_boxes + 1), h / (n_boxes + 1)
        for k in range(n_boxes):
            x0, y0 = (k + 0.5) * step_x, (k + 0.5) * step_y
            items.append({"bbox_2d": [round(x0), round(y0), round(x0 + step_x), round(y0 + step_y)]})
        return f"<think>scripted</think><answer>{json.dumps(items)}</answer>"
    found = re.search(r"The found bbox\(s\) are: (.*?)\.Please add", request.text, re.DOTALL)
    try:
        boxes = [item["bbox_2d"] for item in json.loads(found.group(1))] if found else []
    except (ValueError, KeyError, TypeError):
        boxes = []
    items = []
    for x0, y0, x1, y1 in boxes:
        points = [[round(x0 + (x1 - x0) * f), round(y0 + (y1 - y0) * f)] for f in (0.3, 0.5, 0.7)]
        items.append({"bbox_2d": [x0, y0, x1, y1], "points": points})
    return f"<think>scripted</think><answer>{json.dumps(items)}</answer>"


@contextmanager
def timed_render_and_vectorize(clock: Clock):
    """Wrap the reasoner's stage-2 rendering and segment's mask-to-polygon step for the run."""
    import sociogeo.pipeline.engine as segmentation_module
    import sociogeo.reasoner.protocol as reasoner_module

    render, polygons = reasoner_module.render_stage2, segmentation_module.chip_polygons

    def timed_render(*args, **kwargs):
        with clock.time("render"):
            return render(*args, **kwargs)

    def timed_polygons(*args, **kwargs):
        with clock.time("vectorize"):
            return polygons(*args, **kwargs)

    reasoner_module.render_stage2, segmentation_module.chip_polygons = timed_render, timed_polygons
    try:
        yield
    finally:
        reasoner_module.render_stage2, segmentation_module.chip_polygons = render, polygons


def force_length(vlm, n_tokens: int) -> None:
    """Make a TransformersVLM generate exactly ``n_tokens`` tokens per answer (EOS suppressed
    until then), so random weights give a fixed, comparable amount of decoding."""
    build = vlm._generation_config

    def fixed(config):
        settings = build(config)
        settings.max_new_tokens = settings.min_new_tokens = int(n_tokens)
        return settings

    vlm._generation_config = fixed


# -- models ---------------------------------------------------------------------------------------
def resolve_dtype(name: str | None):
    import torch

    if name is None:
        return None
    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype):
        raise SystemExit(f"unknown --dtype {name!r}; use bfloat16, float16 or float32")
    return value


def tiny_paths(sam: str = "sam2"):
    from sociogeo.options import options
    from sociogeo.testing.tiny import make_tiny_models

    return make_tiny_models(Path(options.cache_dir) / "tiny-models", sam=sam)


def full_size_vlm(device, dtype, batch_size: int):
    """Qwen2.5-VL-3B's architecture with random weights, on ``device``, with the tiny model's
    processor (Qwen's image processing; token ids of the tiny tokenizer)."""
    import torch
    from transformers import (
        AutoProcessor,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
    )

    from sociogeo.geo.modelspace import MAX_PIXELS, MIN_PIXELS
    from sociogeo.reasoner.vlm.transformers_backend import TransformersVLM, _bound_pixels

    processor = AutoProcessor.from_pretrained(tiny_paths().vlm)
    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                      "<|vision_end|>", "<|im_end|>", "<|endoftext|>")}
    config = Qwen2_5_VLConfig(
        text_config={**QWEN25_VL_3B_TEXT, "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
                     "pad_token_id": ids["<|endoftext|>"]},
        vision_config=QWEN25_VL_3B_VISION,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype).eval()
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    _bound_pixels(processor.image_processor, MIN_PIXELS, MAX_PIXELS)
    return TransformersVLM(model, processor, name="random Qwen2.5-VL-3B (from config)", batch_size=batch_size)


def full_size_sam(device, batch_size: int):
    """SAM 2 Hiera-Large's architecture with random weights (float32, as Sam2Segmenter loads it)."""
    import torch
    import transformers

    from sociogeo.reasoner.sam.sam2_hf import Sam2Segmenter

    backbone = transformers.Sam2HieraDetConfig(image_size=[1024, 1024], **SAM2_HIERA_LARGE)
    vision = transformers.Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=SAM2_LARGE_CHANNELS)
    config = transformers.Sam2Config(vision_config=vision)
    with torch.device(device):
        model = transformers.Sam2Model(config).eval()
    processor = transformers.Sam2Processor(image_processor=transformers.Sam2ImageProcessor())
    segmenter = Sam2Segmenter(model, processor, name="random SAM 2 Hiera-Large (from config)")
    segmenter.batch_size = batch_size
    return segmenter


def load_backends(args, device):
    from sociogeo.defaults import SAM as DEFAULT_SAM
    from sociogeo.defaults import VLM as DEFAULT_VLM
    from sociogeo.reasoner.sam.registry import load_sam
    from sociogeo.reasoner.vlm.registry import load_vlm

    dtype = resolve_dtype(args.dtype)
    if args.from_config:
        return full_size_vlm(device, dtype, args.batch_size[0]), full_size_sam(device, args.batch_size[0])
    if args.tiny:
        paths = tiny_paths()
        vlm_spec, sam_spec = str(paths.vlm), str(paths.sam)
    else:
        vlm_spec, sam_spec = args.vlm or DEFAULT_VLM, args.sam or DEFAULT_SAM
    vlm_kwargs = {} if vlm_spec.startswith(("http://", "https://")) else {
        "device": device, "dtype": dtype, "batch_size": args.batch_size[0]}
    vlm = load_vlm(vlm_spec, **vlm_kwargs)
    sam = load_sam(sam_spec, device=device)
    if hasattr(sam, "batch_size"):
        sam.batch_size = args.batch_size[0]
    return vlm, sam


def model_dtype(backend) -> str:
    model = getattr(backend, "model", None)
    return str(next(model.parameters()).dtype) if hasattr(model, "parameters") else "n/a"


def n_parameters(backend) -> int | None:
    model = getattr(backend, "model", None)
    return sum(p.numel() for p in model.parameters()) if model is not None and hasattr(model, "parameters") else None


# -- imagery --------------------------------------------------------------------------------------
def strip_pair(n_chips: int, chip_size: int):
    """The bundled Helsinki sample cut into ``n_chips`` distinct chip-sized windows laid side by
    side, as one ImagePair of chip_size x (n_chips * chip_size) pixels."""
    from sociogeo.cli.demo import sample_pair
    from sociogeo.geo.grid import PixelGrid
    from sociogeo.imagery import ImagePair, to_dataarray

    sample = sample_pair()
    h, w = sample.grid.shape
    layers = {}
    for layer in ("satellite", "map"):
        image = np.moveaxis(np.asarray(getattr(sample, layer).values), 0, -1)
        # wrap-pad so every window fits even when chip_size exceeds the sample
        image = np.pad(image, ((0, chip_size), (0, chip_size), (0, 0)), mode="wrap")
        strips = []
        for k in range(n_chips):
            row, col = (k * 89) % max(1, h - 1), (k * 137) % max(1, w - 1)
            strips.append(image[row:row + chip_size, col:col + chip_size])
        layers[layer] = np.concatenate(strips, axis=1)
    grid = PixelGrid(sample.grid.zoom, sample.grid.col_off, sample.grid.row_off, n_chips * chip_size, chip_size)
    arrays = {k: to_dataarray(v, grid, name=k, attrs={"provider": f"sample-{k}", "attribution": ""})
              for k, v in layers.items()}
    masks = {k: np.ones(grid.shape, dtype=bool) for k in layers}
    return ImagePair(arrays["satellite"], arrays["map"], grid, None, masks, {"zoom": grid.zoom})


# -- the run --------------------------------------------------------------------------------------
def run(args) -> dict:
    import torch

    import sociogeo
    from sociogeo.reasoner import SocioReasoner
    from sociogeo.reasoner.vlm.base import GenerationConfig

    sociogeo.options.progress = False
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    clock = Clock(device)
    t0 = time.perf_counter()
    vlm, sam = load_backends(args, device)
    load_s = time.perf_counter() - t0
    random_weights = args.from_config or args.tiny
    script = args.script_answers if args.script_answers is not None else random_weights
    new_tokens = args.new_tokens if args.new_tokens is not None else (256 if random_weights else 0)
    if new_tokens and hasattr(vlm, "_generation_config"):
        force_length(vlm, new_tokens)
    generation = GenerationConfig.greedy(max_new_tokens=new_tokens or 2048)
    reasoner = SocioReasoner(TimedVLM(vlm, clock, script_boxes=args.boxes if script else None,
                                      forced_tokens=new_tokens if hasattr(vlm, "_generation_config") else 0),
                             TimedSAM(sam, clock), generation=generation, trained=not random_weights)

    results = []
    note(f"models ready in {load_s:.1f} s")
    for i, (batch_size, n_chips) in enumerate(zip(args.batch_size, args.chips)):
        for backend in (vlm, sam):
            if hasattr(backend, "batch_size"):
                backend.batch_size = batch_size
        # the warm-up (CUDA context, kernels, allocator) runs once, before the first batch size
        warmup = args.warmup if i == 0 else 0
        results.append(_timed(args, reasoner, clock, device, batch_size, n_chips, warmup) | {
            "vlm": vlm.name if hasattr(vlm, "name") else str(vlm),
            "sam": sam.name if hasattr(sam, "name") else str(sam),
            "vlm_parameters": n_parameters(vlm),
            "sam_parameters": n_parameters(sam),
            "dtype": model_dtype(vlm),
            "new_tokens": new_tokens or "model decides",
            "scripted_answers": bool(script),
            "load_s": load_s,
        })
        print_table(results[-1])  # as each batch size finishes: a run cut short keeps what it measured
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
    return results


def note(message: str) -> None:
    """A progress line with the time, flushed at once (long GPU runs show where they are)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _timed(args, reasoner, clock, device, batch_size: int, n_chips: int, warmup: int) -> dict:  # noqa: PLR0913
    """Warm up, then time ``segment`` over ``n_chips`` chips at ``batch_size`` chips per model call."""
    import torch

    from sociogeo.pipeline.run import segment

    def one_run(n: int):
        clock.reset()
        with clock.time("imagery"):
            pair = strip_pair(n, args.chip_size)
        with timed_render_and_vectorize(clock):
            start = time.perf_counter()
            segment(pair, args.query, reasoner=reasoner, chip_size=args.chip_size, batch_size=batch_size)
            clock.sync()
            return time.perf_counter() - start

    for _ in range(warmup):  # CUDA context, kernels, allocator: not part of steady state
        note(f"warm-up: {min(batch_size, n_chips)} chip(s) at batch size {batch_size}")
        note(f"warm-up done in {one_run(min(batch_size, n_chips)):.1f} s")
    note(f"timing {n_chips} chip(s) at batch size {batch_size}")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    wall = one_run(n_chips)
    stages = {s: clock.seconds.get(s, 0.0) for s in STAGES}
    accounted = sum(v for k, v in stages.items() if k != "imagery")
    return {
        "device": str(device) if device.type != "cuda" else f"{device} ({torch.cuda.get_device_name(device)})",
        "chips": n_chips,
        "chip_size": args.chip_size,
        "batch_size": batch_size,
        "stages_s": stages,
        "other_s": max(0.0, wall - accounted),  # chip cutting, parsing, batching, mosaicking
        "segment_wall_s": wall,
        "seconds_per_chip": wall / n_chips,
        "chips_per_s": n_chips / wall,
        "chips_per_s_with_imagery": n_chips / (wall + stages["imagery"]),
        "generated_tokens_per_s": clock.tokens / max(stages["vlm stage 1"] + stages["vlm stage 2"], 1e-9),
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None,
    }


def print_summary(results: list[dict]) -> None:
    """One line per batch size: seconds per chip, the VLM's share, tokens/s, peak memory."""
    print(f"\n{'batch':>6}{'chips':>7}{'s / chip':>10}{'vlm s / chip':>14}{'sam s / chip':>14}{'tokens/s':>10}"
          f"{'peak GB':>9}")
    for r in results:
        st = r["stages_s"]
        vlm = (st["vlm stage 1"] + st["vlm stage 2"]) / r["chips"]
        sam = (st["sam embed"] + st["sam stage 1"] + st["sam stage 2"]) / r["chips"]
        peak = "n/a" if r["peak_gpu_memory_gb"] is None else f"{r['peak_gpu_memory_gb']:.1f}"
        print(f"{r['batch_size']:>6}{r['chips']:>7}{r['seconds_per_chip']:>10.3f}{vlm:>14.3f}{sam:>14.3f}"
              f"{r['generated_tokens_per_s']:>10.0f}{peak:>9}")
    print("paper (Table 8): 2.71 s per sample; issue 15's goal: 0.27 s per chip")


def print_table(r: dict) -> None:
    def count(n):
        return "?" if n is None else f"{n / 1e6:,.1f} M"

    print(f"device: {r['device']}; dtype {r['dtype']}")
    print(f"vlm: {r['vlm']} ({count(r['vlm_parameters'])} parameters)")
    print(f"sam: {r['sam']} ({count(r['sam_parameters'])} parameters)")
    print(f"{r['chips']} chips of {r['chip_size']} px, batch size {r['batch_size']}, new tokens per answer: "
          f"{r['new_tokens']}, scripted answers: {r['scripted_answers']}; models loaded in {r['load_s']:.1f} s")
    total = r["segment_wall_s"] + r["stages_s"]["imagery"]
    print(f"\n{'stage':<14}{'total s':>10}{'ms / chip':>12}{'share':>8}")
    rows = list(r["stages_s"].items()) + [("other", r["other_s"])]
    for stage, seconds in rows:
        print(f"{stage:<14}{seconds:>10.3f}{1000 * seconds / r['chips']:>12.1f}{seconds / total:>8.1%}")
    print(f"{'total':<14}{total:>10.3f}{1000 * total / r['chips']:>12.1f}{1:>8.0%}")
    print(f"\nchips per second: {r['chips_per_s']:.3f} (segment), {r['chips_per_s_with_imagery']:.3f} (with imagery); "
          f"{r['seconds_per_chip']:.3f} s per chip; generated tokens per second: {r['generated_tokens_per_s']:.0f}")
    if r["peak_gpu_memory_gb"] is not None:
        print(f"peak GPU memory: {r['peak_gpu_memory_gb']:.1f} GB")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    models = parser.add_mutually_exclusive_group()
    models.add_argument("--tiny", action="store_true", help="tiny random test models (CPU smoke run)")
    models.add_argument("--from-config", action="store_true",
                        help="full-size Qwen2.5-VL-3B + SAM 2 Hiera-Large with random weights (no download)")
    parser.add_argument("--vlm", default=None, help="VLM hub id, folder or server URL (default: the released model)")
    parser.add_argument("--sam", default=None, help="SAM hub id, folder or .pth (default: facebook/sam2-hiera-large)")
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    parser.add_argument("--dtype", default=None, help="VLM dtype: bfloat16, float16, float32 (default: bf16 on CUDA)")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[4],
                        help="chips per model call; several values are timed one after another on the same "
                             "loaded models (default 4)")
    parser.add_argument("--chips", type=int, nargs="+", default=[8],
                        help="chips to time: one value, or one per --batch-size (default 8)")
    parser.add_argument("--chip-size", type=int, default=768, help="chip side in pixels (default 768)")
    parser.add_argument("--new-tokens", type=int, default=None,
                        help="force every answer to this many tokens "
                             "(default 256 for random weights; 0: the model decides)")
    answers = parser.add_mutually_exclusive_group()
    answers.add_argument("--script-answers", dest="script_answers", action="store_true", default=None,
                         help="replace answers with scripted boxes/points (default for random weights)")
    answers.add_argument("--no-script-answers", dest="script_answers", action="store_false")
    parser.add_argument("--boxes", type=int, default=3, help="boxes per scripted stage-1 answer (default 3)")
    parser.add_argument("--query", default="park")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed warm-up runs before the first batch size (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    if (args.tiny or args.from_config) and (args.vlm or args.sam):
        parser.error("--vlm/--sam cannot be combined with --tiny or --from-config")
    if len(args.chips) == 1:
        args.chips = args.chips * len(args.batch_size)
    if len(args.chips) != len(args.batch_size):
        parser.error("--chips takes one value or one per --batch-size")
    if min(args.chips) < 1 or min(args.batch_size) < 1:
        parser.error("--chips and --batch-size must be at least 1")

    results = run(args)
    if len(results) > 1:
        print_summary(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
