"""``sociogeo build-dataset``: SocioSeg-style training samples for an area from OpenStreetMap."""

from __future__ import annotations

from pathlib import Path

from .. import defaults
from ..datasets.osm_build import (
    DEFAULT_MAX_FRACTION,
    DEFAULT_MIN_AREA_M2,
    DEFAULT_MIN_PIXELS,
    DEFAULT_MIN_VISIBLE,
    DEFAULT_SPLIT,
    EDGE_POLICIES,
    LEVELS,
    SampleFilters,
    build_dataset,
)
from .args import add_area_arguments, add_imagery_arguments, check_output_dir, imagery_source, say


def add(subparsers, parents) -> None:
    """Register ``sociogeo build-dataset``."""
    p = subparsers.add_parser(
        "build-dataset",
        parents=parents,
        help="build SocioSeg-style training samples for an area from OpenStreetMap polygons",
        description=(
            "Fetch a satellite image and a map image of a bounding box, cut them into chips and write one "
            "sample per chip and query (socio-class, socio-function, OSM name) with the matching OSM polygons "
            "as the mask, in SocioSeg's raw layout: OUT/<split>/<id>/{map,sat,mask}.png + question.json, "
            "plus OUT/samples.csv and OUT/build.json. Exit status 1 when no sample passes the filters."
        ),
    )
    add_area_arguments(p)
    p.add_argument("--name", default=None, help="a short name for the area, used in sample ids")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    add_imagery_arguments(p, map_default="osm",
                          offline_help="use cached tiles and local OSM data only; never touch the network")
    p.add_argument("--levels", nargs="+", choices=LEVELS, default=list(LEVELS), help="query levels (default: all)")
    p.add_argument("--chip-size", type=int, default=defaults.CHIP_SIZE,
                   help=f"chip size in pixels (default {defaults.CHIP_SIZE}, as SocioSeg)")
    p.add_argument("--overlap", type=int, default=0, help="overlap between chips in pixels (default 0)")
    p.add_argument("--min-area-m2", type=float, default=DEFAULT_MIN_AREA_M2,
                   help=f"smallest polygon, ground square metres (default {DEFAULT_MIN_AREA_M2:g})")
    p.add_argument("--min-pixels", type=int, default=DEFAULT_MIN_PIXELS,
                   help=f"smallest visible part of a polygon in a chip, pixels (default {DEFAULT_MIN_PIXELS})")
    p.add_argument("--edge", choices=EDGE_POLICIES, default="drop",
                   help="polygons cut by the chip edge: drop the sample, keep it, or clip (keep if at least "
                        "--min-visible of every polygon is inside) (default drop)")
    p.add_argument("--min-visible", type=float, default=DEFAULT_MIN_VISIBLE,
                   help=f"with --edge clip: smallest visible fraction of a polygon (default {DEFAULT_MIN_VISIBLE:g})")
    p.add_argument("--max-fraction", type=float, default=DEFAULT_MAX_FRACTION,
                   help=f"skip masks covering more than this fraction of the chip (default {DEFAULT_MAX_FRACTION:g})")
    p.add_argument("--split", nargs=3, type=float, default=list(DEFAULT_SPLIT), metavar=("TRAIN", "VAL", "TEST"),
                   help="split ratios, assigned per chip (default 0.6 0.1 0.3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split assignment (default 0)")
    p.add_argument("--max-samples", type=int, default=None, help="stop after this many samples")
    p.add_argument("--hf", action="store_true", help="also save a datasets.DatasetDict under OUT/hf")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in OUT")
    p.set_defaults(handler=run)


def run(args) -> int:
    """``sociogeo build-dataset``: build, print the report; 0 when samples were written, else 1."""
    from ..geo.area import Area

    check_output_dir(args.out)
    area = Area.from_bbox(args.bbox, zoom=args.zoom, max_area_km2=args.max_area_km2, name=args.name)
    filters = SampleFilters(min_area_m2=args.min_area_m2, min_pixels=args.min_pixels, edge_policy=args.edge,
                            min_visible=args.min_visible, max_fraction=args.max_fraction)
    report = build_dataset(
        area, args.out, imagery=imagery_source(args), levels=args.levels, chip_size=args.chip_size,
        overlap=args.overlap, filters=filters, split=args.split, seed=args.seed,
        max_samples=args.max_samples, hf=args.hf, overwrite=args.overwrite,
    )
    say(args, report.summary())
    if getattr(args, "quiet", False) and report.samples_csv is not None:
        say(args, f"wrote {report.n_samples} samples to {report.out_dir}", always=True)
    return 0 if report.n_samples else 1
