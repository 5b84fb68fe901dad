"""``sociogeo segment``: find entities in an area; write polygons, a preview and metadata."""

from __future__ import annotations

from pathlib import Path

from .. import defaults
from ..errors import ConfigError
from .args import add_area_arguments, add_imagery_arguments, add_max_area_argument, imagery_source, report, say


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
    p.add_argument("--mask-out", type=Path, default=None, metavar="MASK.tif",
                   help="also write the entity mask as a cloud-optimised GeoTIFF (one band per query, 1 = entity)")
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
    engines = p.add_argument_group(
        "engine", "where chips run; finished chips are kept in OUT.parts/ as they arrive, so running the "
                  "same command again continues an interrupted run")
    engines.add_argument("--engine", choices=("local", "ray"), default="local",
                         help="local: this process, streaming (default); ray: Ray Data on a Ray cluster")
    engines.add_argument("--ray-address", default=None,
                         help="with --engine ray: the cluster to join, e.g. auto or ray://head:10001 "
                              "(default: RAY_ADDRESS, else a local cluster on this machine)")
    engines.add_argument("--num-actors", type=int, default=1,
                         help="with --engine ray: model actors, one copy of the models each (default 1)")
    engines.add_argument("--gpus-per-actor", type=float, default=None,
                         help="with --engine ray: GPUs per model actor (default 1 when the cluster has GPUs, else 0)")
    engines.add_argument("--readers", type=int, default=1,
                         help="with --engine ray: imagery reader actors (default 1)")
    engines.add_argument("--vlm-url", action="append", default=[], metavar="URL",
                         help="with --engine ray: an OpenAI-compatible VLM server (e.g. vLLM); repeat for a "
                              "fleet spread over the model actors")
    p.set_defaults(handler=run, sample=False)


def run(args) -> int:
    """``sociogeo segment``: segment every query chip by chip, write polygons, metadata, preview; 0."""
    from ..analysis.plots import write_result_preview
    from ..geo.area import Area
    from ..pipeline.mask_raster import check_mask_path
    from ..pipeline.results import check_result_path, preview_path, sidecar_path, summary_lines
    from ..pipeline.run import ChipRun, check_polygon_options, segment
    from ..reasoner.model import ReasonerSpec
    from ..reasoner.vlm.base import GenerationConfig

    # everything that can be checked cheaply is checked before models load or tiles download
    out = check_result_path(args.out)
    mask_out = None if args.mask_out is None else check_mask_path(args.mask_out)
    queries = check_queries(args.query)
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    ChipRun(args.chip_size, args.overlap, args.batch_size)  # chip and batch sizes, before any model loads
    check_polygon_options(args.min_area_m2, args.simplify_m)
    source = imagery_source(args)
    area = source.choose_zoom(Area.from_bbox(args.bbox, zoom=args.zoom, max_area_km2=args.max_area_km2))
    source.check(area.zoom)
    engine = _engine(args)
    generation = (GenerationConfig.released(max_new_tokens=args.max_new_tokens) if args.sample
                  else GenerationConfig.greedy(max_new_tokens=args.max_new_tokens))

    grid = area.grid
    say(args, f"{area}: {grid.width} x {grid.height} px")
    spec = ReasonerSpec(args.vlm or defaults.VLM, args.sam or defaults.SAM, device=args.device, dtype=args.dtype,
                        offline=source.offline, generation=generation, parse=args.parse)
    reasoner = spec if engine.loads_models_itself else spec.load()
    result = segment(area, queries, reasoner=reasoner, imagery=source, out=out, mask_out=mask_out, engine=engine,
                     chip_size=args.chip_size, overlap=args.overlap, batch_size=args.batch_size,
                     min_area_m2=args.min_area_m2, simplify_m=args.simplify_m)
    paths = {"result": out, "metadata": sidecar_path(out), "chips": out.with_name(out.name + ".parts")}
    if mask_out is not None:
        paths["mask"] = mask_out
    paths["preview"] = write_result_preview(preview_path(out), source, result, grid=grid)
    report(args, summary_lines(result, paths))
    return 0


def _engine(args):
    """The engine the flags ask for; the Ray flags without ``--engine ray`` are an error."""
    from ..pipeline.engine import LocalEngine

    ray_flags = {"--ray-address": args.ray_address is not None, "--num-actors": args.num_actors != 1,
                 "--gpus-per-actor": args.gpus_per_actor is not None, "--readers": args.readers != 1,
                 "--vlm-url": bool(args.vlm_url)}
    if args.engine == "local":
        given = [flag for flag, set_ in ray_flags.items() if set_]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply with --engine ray")
        return LocalEngine()
    from ..pipeline.ray_engine import RayEngine

    return RayEngine(address=args.ray_address, num_actors=args.num_actors, gpus_per_actor=args.gpus_per_actor,
                     readers=args.readers, vlm_urls=args.vlm_url)


def check_queries(values) -> list[str]:
    """The ``--query`` values, stripped and de-duplicated; ConfigError for an empty one."""
    queries = [v.strip() for v in values or []]
    if not queries or not all(queries):
        raise ConfigError("every --query needs a text, e.g. --query school")
    return list(dict.fromkeys(queries))
