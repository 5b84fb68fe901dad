"""Arguments and output shared by several subcommands (area and imagery options, messages)."""

from __future__ import annotations

from pathlib import Path

from .. import defaults


def add_area_arguments(p, *, max_area: bool = True) -> None:
    """``--bbox W S E N``, ``--zoom`` and (optionally) ``--max-area-km2``."""
    p.add_argument("--bbox", nargs=4, type=float, required=True, metavar=("W", "S", "E", "N"),
                   help="west south east north, in degrees (longitude first)")
    p.add_argument("--zoom", type=int, default=defaults.ZOOM,
                   help=f"XYZ zoom level (default {defaults.ZOOM}, ~1.2 m/px at the equator)")
    if max_area:
        add_max_area_argument(p)


def add_max_area_argument(p) -> None:
    """``--max-area-km2``."""
    p.add_argument("--max-area-km2", type=float, default=None,
                   help=f"accept areas up to this size (default {defaults.MAX_AREA_KM2:g} km², "
                        "or SOCIOGEO_MAX_AREA_KM2)")


def add_imagery_arguments(p, *, map_default: str = defaults.MAP,
                          offline_help: str = "use cached tiles only; never touch the network") -> None:
    """``--satellite``, ``--map``, ``--osm-source``, ``--cache-dir`` and ``--offline``."""
    p.add_argument("--satellite", default=defaults.SATELLITE,
                   help=f"satellite tile provider: xyzservices name or URL template (default {defaults.SATELLITE})")
    p.add_argument("--map", default=map_default,
                   help=f"map tile provider, or 'osm' to render one from OpenStreetMap data (default {map_default})")
    p.add_argument("--osm-source", type=Path, default=None,
                   help="with --map osm: an .osm or .osm.pbf file to render from (default: Overpass API)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="tile cache directory (default: sociogeo.options.cache_dir)")
    p.add_argument("--offline", action="store_true", help=offline_help)


def imagery_source(args, *, no_cache: bool = False):
    """The :class:`~sociogeo.imagery.ImagerySource` the imagery arguments describe."""
    from ..imagery.source import ImagerySource

    return ImagerySource(
        satellite=args.satellite, map=args.map, osm_source=args.osm_source,
        cache_dir=False if no_cache else args.cache_dir, offline=True if args.offline else None,
        osm_landuse=bool(getattr(args, "osm_landuse", False)),
    )


def say(args, message: str) -> None:
    """Print ``message`` unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(message)
