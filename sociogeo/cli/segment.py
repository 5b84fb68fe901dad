"""``sociogeo segment``: find entities in an area; write polygons, a preview and metadata."""

from __future__ import annotations

from pathlib import Path

from .. import defaults
from ..errors import ConfigError
from .args import add_area_arguments, add_imagery_arguments, add_max_area_argument, imagery_source, say


def add(subparsers, parents) -> None:
    """Register ``sociogeo segment``."""
    p = subparsers.add_parser(
        "segment",
        parents=parents,
        help="find entities (e.g. schools) in an area; write polygons, a preview and metadata",
        description=(
            "Fetch a satellite image and a street map of a bounding box, run SocioReasoner "
            "(Qwen2.5-VL + SAM) chip by chip for each query, and write the entities as polygons to "
            "OUT (.gpkg, .geojson or .parquet), the run's metadata to OUT.json and a preview "
            "(polygons over the satellite image) to OUT without its extension + .preview.png."
        ),
    )
    add_area_arguments(p, max_area=False)
    p.add_argument("--query", action="append", required=True, metavar="TEXT",
                   help="what to find, e.g. school; repeat for several queries")
    p.add_argument("--out", type=Path, required=True,
                   help="output file: .gpkg (GeoPackage), .geojson or .parquet (GeoParquet)")
    models = p.add_argument_group("models")
    models.add_argument("--vlm", default=None,
                        help="Qwen2.5-VL: hub id, local folder or http(s):// OpenAI-compatible server "
                             f"(default {defaults.VLM})")
    models.add_argument("--sam", default=None,
                        help="SAM: hub id or folder of a SAM 2 model, or a SAM v1 .pth file "
                             f"(default {defaults.SAM})")
    models.add_argument("--device", default=None, help="cuda, cuda:1, cpu, ... (default: cuda when available)")
    models.add_argument("--dtype", default=None, help="VLM dtype, e.g. bfloat16 or float32 (default: bfloat16 on CUDA)")
    decoding = models.add_mutually_exclusive_group()
    decoding.add_argument("--greedy", dest="sample", action="store_false",
                          help="greedy decoding: reproducible answers (default)")
    decoding.add_argument("--sample", dest="sample", action="store_true",
                          help="the authors' evaluation sampling (temperature 1.0, top_p 0.8, top_k 100)")
    models.add_argument("--parse", choices=("strict", "repair"), default="strict",
                        help="read answers as the release does (strict, default) or with sociogeo's tolerant "
                             "parser (repair: malformed JSON repaired, boxes clipped; recorded per chip)")
    models.add_argument("--max-new-tokens", type=int, default=defaults.MAX_NEW_TOKENS,
                        help=f"longest answer, in tokens (default {defaults.MAX_NEW_TOKENS})")
    imagery = p.add_argument_group("imagery")
    add_imagery_arguments(imagery,
                          offline_help="never touch the network: cached tiles and locally available weights only")
    add_max_area_argument(imagery)
    running = p.add_argument_group("run")
    running.add_argument("--chip-size", type=int, default=defaults.CHIP_SIZE,
                     help=f"chip side in pixels (default {defaults.CHIP_SIZE}, as in SocioSeg)")
    running.add_argument("--overlap", type=int, default=0, help="chip overlap in pixels (default 0)")
    running.add_argument("--batch-size", type=int, default=defaults.BATCH_SIZE,
                     help=f"chips per model call (default {defaults.BATCH_SIZE})")
    running.add_argument("--min-area-m2", type=float, default=defaults.MIN_AREA_M2,
                     help=f"drop polygons smaller than this, in square metres (default {defaults.MIN_AREA_M2:g})")
    running.add_argument("--simplify-m", type=float, default=None,
                     help="simplify polygons with this tolerance in metres (default: no simplification)")
    running.add_argument("--resume-dir", type=Path, default=None,
                     help="keep per-chip results here, so an interrupted run continues where it stopped")
    p.set_defaults(handler=run, sample=False)


def run(args) -> int:
    """``sociogeo segment``: fetch, segment every query, write the polygons, metadata and preview; returns 0."""
    from ..analysis.plots import write_result_preview
    from ..geo.area import Area
    from ..imagery.pair import fetch_pair
    from ..pipeline.results import check_result_path, preview_path, summary_lines, write_result
    from ..pipeline.run import segment
    from ..reasoner.model import SocioReasoner
    from ..reasoner.vlm.base import GenerationConfig

    # everything that can be checked cheaply is checked before models load or tiles download
    out = check_result_path(args.out)
    area = Area.from_bbox(args.bbox, zoom=args.zoom, max_area_km2=args.max_area_km2)
    queries = check_queries(args.query)
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    source = imagery_source(args)
    source.check(area.zoom)
    generation = (GenerationConfig.released(max_new_tokens=args.max_new_tokens) if args.sample
                  else GenerationConfig.greedy(max_new_tokens=args.max_new_tokens))

    grid = area.grid
    say(args, f"{area}: {grid.width} x {grid.height} px")
    reasoner = SocioReasoner.from_pretrained(
        args.vlm or defaults.VLM, args.sam or defaults.SAM, device=args.device, dtype=args.dtype,
        offline=source.offline, generation=generation, parse=args.parse,
    )
    pair = fetch_pair(area, imagery=source)
    result = segment(pair, queries, reasoner=reasoner, chip_size=args.chip_size, overlap=args.overlap,
                     batch_size=args.batch_size, min_area_m2=args.min_area_m2, simplify_m=args.simplify_m,
                     resume_dir=args.resume_dir)
    paths = write_result(result, out)
    paths["preview"] = write_result_preview(preview_path(out), pair, result)
    for line in summary_lines(result, paths):
        say(args, line)
    return 0


def check_queries(values) -> list[str]:
    """The ``--query`` values, stripped and de-duplicated; ConfigError for an empty one."""
    queries = [v.strip() for v in values or []]
    if not queries or not all(queries):
        raise ConfigError("every --query needs a text, e.g. --query school")
    return list(dict.fromkeys(queries))
