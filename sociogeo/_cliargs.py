"""Command-line arguments shared by several subcommands (area and imagery options)."""

from __future__ import annotations

from pathlib import Path


def add_area_arguments(p, *, max_area: bool = True) -> None:
    """``--bbox W S E N``, ``--zoom`` and (optionally) ``--max-area-km2``."""
    p.add_argument("--bbox", nargs=4, type=float, required=True, metavar=("W", "S", "E", "N"),
                   help="west south east north, in degrees (longitude first)")
    p.add_argument("--zoom", type=int, default=17, help="XYZ zoom level (default 17, ~1.2 m/px at the equator)")
    if max_area:
        p.add_argument("--max-area-km2", type=float, default=None,
                       help="accept areas up to this size (default: sociogeo.options.max_area_km2)")


def add_imagery_arguments(p, *, map_default: str = "OpenStreetMap.Mapnik",
                          offline_help: str = "use cached tiles only; never touch the network") -> None:
    """``--satellite``, ``--map``, ``--osm-source``, ``--cache-dir`` and ``--offline``."""
    p.add_argument("--satellite", default="Esri.WorldImagery",
                   help="satellite tile provider: xyzservices name or URL template (default Esri.WorldImagery)")
    p.add_argument("--map", default=map_default,
                   help=f"map tile provider, or 'osm' to render one from OpenStreetMap data (default {map_default})")
    p.add_argument("--osm-source", type=Path, default=None,
                   help="with --map osm: an .osm or .osm.pbf file to render from (default: Overpass API)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="tile cache directory (default: sociogeo.options.cache_dir)")
    p.add_argument("--offline", action="store_true", help=offline_help)
