"""The ``sociogeo`` command line.

Each subcommand is one ``add_<name>(subparsers)`` function that registers its arguments and sets
``handler`` to a ``run_<name>(args) -> int`` function; :data:`COMMANDS` lists them, so adding a
command is adding two functions and one entry. Errors sociogeo raises on purpose print one line to
stderr and exit with status 2.

Result files (``sociogeo segment``, ``sociogeo demo``): the polygons go to a GeoPackage
(``.gpkg``), GeoJSON (``.geojson``) or GeoParquet (``.parquet``) file chosen by the extension;
the run's metadata (``GeoDataFrame.attrs``: models, zoom, imagery providers, attribution, whether
the models were trained) goes to a sidecar JSON file next to it, ``<file>.json`` (e.g.
``schools.gpkg.json``), the same for every format, since GeoJSON has nowhere to keep it.
:func:`read_result` reads both back.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ._cliargs import add_area_arguments, add_imagery_arguments
from ._version import __version__
from .errors import ConfigError, SociogeoError
from .results import (  # noqa: F401  (re-exported: the CLI's result files)
    UNTRAINED_TITLE, check_result_path, preview_path, read_result, sidecar_path, summary_lines,
    write_result, write_result_preview,
)

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

# -- fetch ------------------------------------------------------------------------------------------
def add_fetch(subparsers, parents) -> None:
    p = subparsers.add_parser(
        "fetch",
        parents=parents,
        help="download a satellite image and a map image of an area on one grid, as GeoTIFFs",
        description=(
            "Fetch a satellite image and a street-map image of a bounding box on one Web-Mercator "
            "pixel grid and write OUT/satellite.tif, OUT/map.tif and OUT/preview.png. Tiles are "
            "streamed to disk, so memory does not grow with the area."
        ),
    )
    add_area_arguments(p)
    add_imagery_arguments(p)
    p.add_argument("--osm-landuse", action="store_true", help="with --map osm: colour land use")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the tile cache")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.set_defaults(handler=run_fetch)


def run_fetch(args) -> int:
    from .area import Area
    from .imagery import FILENAMES, write_array_geotiff, write_geotiff, write_preview
    from .providers import resolve_provider

    area = Area.from_bbox(args.bbox, zoom=args.zoom, max_area_km2=args.max_area_km2)
    cache_dir = False if args.no_cache else args.cache_dir
    offline = True if args.offline else None
    osm = args.map.strip().lower() == "osm"
    # resolve and check both providers first, so a typo fails before minutes of downloading
    satellite = resolve_provider(args.satellite)
    map_provider = None if osm else resolve_provider(args.map)
    for provider in (satellite, map_provider):
        if provider is not None:
            provider.check_zoom(area.zoom)

    out = args.out.expanduser()
    out.mkdir(parents=True, exist_ok=True)
    grid = area.grid
    _say(args, f"{area}: {grid.width} x {grid.height} px, {grid.n_tiles()} tiles per layer")
    results = [write_geotiff(area, satellite, out / FILENAMES["satellite"], cache_dir=cache_dir,
                             offline=offline, desc="satellite tiles", layer="satellite")]
    if osm:
        from .maprender import render_osm_map

        image, attribution = render_osm_map(grid, source=args.osm_source, landuse=args.osm_landuse)
        map_path = write_array_geotiff(out / FILENAMES["map"], image, grid, area=area, tags={
            "LAYER": "map", "PROVIDER": "osm", "ATTRIBUTION": attribution, "MISSING_TILES": "[]"})
    else:
        results.append(write_geotiff(area, map_provider, out / FILENAMES["map"], cache_dir=cache_dir,
                                     offline=offline, desc="map tiles", layer="map"))
        map_path = results[-1].path
    preview = write_preview(results[0].path, map_path, out / "preview.png")

    for result in results:
        note = f", {len(result.missing)} tiles missing" if result.missing else ""
        _say(args, f"wrote {result.path} ({result.provider.name}, {result.valid_fraction:.1%} valid{note})")
    if osm:
        _say(args, f"wrote {map_path} (rendered from OpenStreetMap data)")
    _say(args, f"wrote {preview}")
    return 0


# -- segment ----------------------------------------------------------------------------------------
def add_segment(subparsers, parents) -> None:
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
                             "(default vvangfaye/SocioReasoner-3B)")
    models.add_argument("--sam", default=None,
                        help="SAM: hub id or folder of a SAM 2 model, or a SAM v1 .pth file "
                             "(default facebook/sam2-hiera-large)")
    models.add_argument("--device", default=None, help="cuda, cuda:1, cpu, ... (default: cuda when available)")
    models.add_argument("--dtype", default=None, help="VLM dtype, e.g. bfloat16 or float32 (default: bfloat16 on CUDA)")
    decoding = models.add_mutually_exclusive_group()
    decoding.add_argument("--greedy", dest="sample", action="store_false",
                          help="greedy decoding: reproducible answers (default)")
    decoding.add_argument("--sample", dest="sample", action="store_true",
                          help="the authors' evaluation sampling (temperature 1.0, top_p 0.8, top_k 100)")
    models.add_argument("--max-new-tokens", type=int, default=2048, help="longest answer, in tokens (default 2048)")
    imagery = p.add_argument_group("imagery")
    add_imagery_arguments(imagery, offline_help="never touch the network: cached tiles and locally available weights only")
    imagery.add_argument("--max-area-km2", type=float, default=None,
                         help="accept areas up to this size (default: sociogeo.options.max_area_km2)")
    run = p.add_argument_group("run")
    run.add_argument("--chip-size", type=int, default=768, help="chip side in pixels (default 768, as in SocioSeg)")
    run.add_argument("--overlap", type=int, default=0, help="chip overlap in pixels (default 0)")
    run.add_argument("--batch-size", type=int, default=4, help="chips per model call (default 4)")
    run.add_argument("--min-area-m2", type=float, default=10.0,
                     help="drop polygons smaller than this, in square metres (default 10)")
    run.add_argument("--simplify-m", type=float, default=None,
                     help="simplify polygons with this tolerance in metres (default: no simplification)")
    run.add_argument("--resume-dir", type=Path, default=None,
                     help="keep per-chip results here, so an interrupted run continues where it stopped")
    p.set_defaults(handler=run_segment, sample=False)


def run_segment(args) -> int:
    from .area import Area
    from .imagery import fetch_pair
    from .providers import resolve_provider
    from .reasoner import DEFAULT_SAM, DEFAULT_VLM, SocioReasoner
    from .segmentation import segment
    from .vlm.base import GenerationConfig

    # everything that can be checked cheaply is checked before models load or tiles download
    out = check_result_path(args.out)
    area = Area.from_bbox(args.bbox, zoom=args.zoom, max_area_km2=args.max_area_km2)
    queries = _queries(args.query)
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    osm = args.map.strip().lower() == "osm"
    for spec in (args.satellite, None if osm else args.map):
        if spec is not None:
            resolve_provider(spec).check_zoom(area.zoom)
    offline = True if args.offline else None
    generation = (GenerationConfig.released(max_new_tokens=args.max_new_tokens) if args.sample
                  else GenerationConfig.greedy(max_new_tokens=args.max_new_tokens))

    grid = area.grid
    _say(args, f"{area}: {grid.width} x {grid.height} px")
    reasoner = SocioReasoner.from_pretrained(
        args.vlm or DEFAULT_VLM, args.sam or DEFAULT_SAM, device=args.device, dtype=args.dtype,
        offline=offline, generation=generation,
    )
    pair = fetch_pair(area, satellite=args.satellite, map=args.map, cache_dir=args.cache_dir,
                      offline=offline, osm_source=args.osm_source)
    result = segment(pair, queries, reasoner=reasoner, chip_size=args.chip_size, overlap=args.overlap,
                     batch_size=args.batch_size, min_area_m2=args.min_area_m2, simplify_m=args.simplify_m,
                     resume_dir=args.resume_dir)
    paths = write_result(result, out)
    paths["preview"] = write_result_preview(preview_path(out), pair, result)
    for line in summary_lines(result, paths):
        _say(args, line)
    return 0


def _queries(values) -> list[str]:
    queries = [v.strip() for v in values or []]
    if not queries or not all(queries):
        raise ConfigError("every --query needs a text, e.g. --query school")
    return list(dict.fromkeys(queries))


# -- demo -------------------------------------------------------------------------------------------
def add_demo(subparsers, parents) -> None:
    from .demo import DEFAULT_OUT, DEMO_QUERY

    p = subparsers.add_parser(
        "demo",
        parents=parents,
        help="run the whole pipeline on central Helsinki (offline fallback with tiny untrained models)",
        description=(
            "Segment 'park' (or --query) in central Helsinki with the released models and Esri "
            "imagery, writing results.gpkg, preview.png and reasoning.png to --out. When the "
            "weights or the imagery cannot be reached, or with --offline, it runs on bundled sample "
            "data with tiny UNTRAINED models instead, and labels every output as such."
        ),
    )
    p.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help=f"output directory (default ./{DEFAULT_OUT})")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    p.add_argument("--offline", action="store_true",
                   help="skip the network: bundled sample data and tiny untrained models")
    p.add_argument("--query", default=DEMO_QUERY, help=f"what to find (default {DEMO_QUERY!r})")
    p.set_defaults(handler=run_demo)


def run_demo(args) -> int:
    from .demo import run_demo as demo

    query = _queries([args.query])[0]
    # the demo prints its own notices and summary, one line each
    demo(args.out, device=args.device, offline=args.offline, query=query, echo=lambda message: _say(args, message))
    return 0


# -- plumbing ---------------------------------------------------------------------------------------
# name -> function adding the subcommand; each sets `handler` on its parser
def add_build_dataset(subparsers, parents) -> None:
    """``sociogeo build-dataset``, defined in sociogeo.osm_dataset."""
    from .osm_dataset import add_build_dataset as add

    add(subparsers, parents)


def add_train(subparsers, parents) -> None:
    """``sociogeo train`` (GRPO / SFT), defined in sociogeo.train.commands."""
    from .train.commands import add_train as add

    add(subparsers, parents)


def add_evaluate(subparsers, parents) -> None:
    """``sociogeo evaluate`` (Table 1 scores), defined in sociogeo.train.commands."""
    from .train.commands import add_evaluate as add

    add(subparsers, parents)


COMMANDS = {
    "fetch": add_fetch,
    "segment": add_segment,
    "demo": add_demo,
    "train": add_train,
    "evaluate": add_evaluate,
    "build-dataset": add_build_dataset,
}


def build_parser() -> argparse.ArgumentParser:
    # --quiet works before or after the subcommand; SUPPRESS keeps the subparser from resetting it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars or messages (errors still go to stderr)")
    parser = argparse.ArgumentParser(
        prog="sociogeo",
        description="Urban socio-semantic segmentation from satellite imagery and street maps.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"sociogeo {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for add in COMMANDS.values():
        add(subparsers, [common])
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    args.quiet = getattr(args, "quiet", False)

    from .options import options

    with options.context(progress=options.progress and not args.quiet), warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return int(args.handler(args) or 0)
        except SociogeoError as exc:
            print(f"sociogeo: error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print("sociogeo: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED


def _say(args, message: str) -> None:
    if not args.quiet:
        print(message)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # warnings are for the user here, not for a developer: no file names or source lines
    print(f"sociogeo: warning: {_one_line(message) if isinstance(message, Warning) else message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
