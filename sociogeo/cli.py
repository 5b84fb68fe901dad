"""The ``sociogeo`` command line.

Each subcommand is one ``add_<name>(subparsers)`` function that registers its arguments and sets
``handler`` to a ``run_<name>(args) -> int`` function; :data:`COMMANDS` lists them, so adding a
command is adding two functions and one entry. Errors sociogeo raises on purpose print one line to
stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ._version import __version__
from .errors import SociogeoError

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
    p.add_argument("--bbox", nargs=4, type=float, required=True, metavar=("W", "S", "E", "N"),
                   help="west south east north, in degrees (longitude first)")
    p.add_argument("--zoom", type=int, default=17, help="XYZ zoom level (default 17, ~1.2 m/px at the equator)")
    p.add_argument("--satellite", default="Esri.WorldImagery",
                   help="satellite tile provider: xyzservices name or URL template (default Esri.WorldImagery)")
    p.add_argument("--map", default="OpenStreetMap.Mapnik",
                   help="map tile provider, or 'osm' to render one from OpenStreetMap data "
                        "(default OpenStreetMap.Mapnik)")
    p.add_argument("--osm-source", type=Path, default=None,
                   help="with --map osm: an .osm.pbf file to render from (default: Overpass API)")
    p.add_argument("--osm-landuse", action="store_true", help="with --map osm: colour land use")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="tile cache directory (default: sociogeo.options.cache_dir)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the tile cache")
    p.add_argument("--offline", action="store_true", help="use cached tiles only; never touch the network")
    p.add_argument("--max-area-km2", type=float, default=None,
                   help="accept areas up to this size (default: sociogeo.options.max_area_km2)")
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


# -- plumbing ---------------------------------------------------------------------------------------
# name -> function adding the subcommand; each sets `handler` on its parser
COMMANDS = {
    "fetch": add_fetch,
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
