"""Arguments and output shared by several subcommands (area and imagery options, messages)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import defaults


def add_area_arguments(p, *, max_area: bool = True) -> None:
    """``--bbox W S E N``, ``--zoom`` and (optionally) ``--max-area-km2``."""
    p.add_argument("--bbox", nargs="+", required=True, metavar="W S E N", action=_Bbox,
                   help="west south east north, in degrees (longitude first); also W,S,E,N")
    p.add_argument("--zoom", type=int, default=None,
                   help=f"XYZ zoom level of the imagery grid (default {defaults.ZOOM}, ~1.2 m/px at the equator; with "
                        "a --satellite raster, the zoom nearest the raster's own resolution). The model was trained "
                        "on zoom 17-18 imagery (about 0.6-1.2 m/px)")
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
    p.add_argument("--satellite", default=defaults.SATELLITE, metavar="PROVIDER|PATH|URL|STAC",
                   help="satellite layer: a tile provider (xyzservices name or {z}/{x}/{y} URL template), or your own "
                        "imagery: a GeoTIFF/COG path, an http(s):// or s3:// COG URL (read by windows), or a STAC "
                        f"item .json file; repeat for a mosaic of files (default {defaults.SATELLITE})",
                   action=_Satellite)
    p.add_argument("--satellite-bands", type=int, nargs="+", default=None, metavar="BAND",
                   help="with a raster --satellite: the 1-based bands shown as red green blue (or one, grey); "
                        "default: the bands marked red/green/blue, else 1 2 3")
    p.add_argument("--satellite-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="with a raster --satellite: the value range stretched to 0-255 (default: 8-bit data as is, "
                        "else the 2nd-98th percentile of each band)")
    p.add_argument("--satellite-nodata", type=float, default=None, metavar="VALUE",
                   help="with a raster --satellite: a value to treat as missing when the file declares none")
    p.add_argument("--map", default=map_default,
                   help=f"map tile provider, or 'osm' to render one from OpenStreetMap data (default {map_default})")
    p.add_argument("--osm-source", type=Path, default=None,
                   help="with --map osm: an .osm or .osm.pbf file to render from (default: Overpass API)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="tile cache directory (default: sociogeo.options.cache_dir)")
    p.add_argument("--offline", action="store_true", help=offline_help)


class _Bbox(argparse.Action):
    """``--bbox W S E N`` or ``--bbox W,S,E,N``: four numbers, longitude first."""

    def __call__(self, parser, namespace, values, option_string=None):
        parts = [p for v in values for p in v.replace(",", " ").split()]
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            parser.error(f"argument --bbox: expected four numbers W S E N (or W,S,E,N), got {' '.join(values)!r}")
        if len(numbers) != 4:
            parser.error(f"argument --bbox: expected four numbers W S E N (or W,S,E,N), got {len(numbers)}")
        _warn_if_swapped(numbers)
        setattr(namespace, self.dest, numbers)


def _warn_if_swapped(bbox: list[float]) -> None:
    """Warn when the bbox reads better as (south, west, north, east): latitude first, as maps and
    many web tools write coordinates. Heuristic: both orders are valid boxes, and the other order
    is much closer to square on the ground (areas people draw are roughly square).
    """
    import math
    import warnings

    west, south, east, north = bbox
    if not (all(abs(v) <= 90 for v in bbox) and west < east and south < north):
        return

    def aspect(w, s, e, n):  # ground width / height, as a distance from square on a log scale
        width = (e - w) * math.cos(math.radians((s + n) / 2))
        return abs(math.log(max(width, 1e-12) / max(n - s, 1e-12)))

    given, swapped = aspect(west, south, east, north), aspect(south, west, north, east)
    if given > math.log(1.6) and swapped < given / 3:
        warnings.warn(
            f"--bbox {west:g} {south:g} {east:g} {north:g} looks like latitude/longitude order; sociogeo reads "
            f"west south east north (longitude first): did you mean --bbox {south:g} {west:g} {north:g} {east:g}?",
            stacklevel=2,
        )


class _Satellite(argparse.Action):
    """``--satellite``: one value, or several (a mosaic of rasters) when repeated."""

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, self.dest)
        if isinstance(current, list):
            current.append(values)
        elif current is None or current == self.default:
            setattr(namespace, self.dest, values)
        else:
            setattr(namespace, self.dest, [current, values])


def imagery_source(args, *, no_cache: bool = False):
    """The :class:`~sociogeo.imagery.ImagerySource` the imagery arguments describe."""
    from ..errors import ConfigError
    from ..imagery.raster import RasterSource, is_raster
    from ..imagery.source import ImagerySource

    satellite = args.satellite
    raster_options = {"bands": getattr(args, "satellite_bands", None),
                      "stretch": getattr(args, "satellite_range", None),
                      "nodata": getattr(args, "satellite_nodata", None)}
    if is_raster(satellite):
        given = {k: v for k, v in raster_options.items() if v is not None}
        satellite = RasterSource(satellite, **given)
    elif any(v is not None for v in raster_options.values()):
        raise ConfigError("--satellite-bands, --satellite-range and --satellite-nodata only apply when --satellite "
                          "is a raster (a GeoTIFF/COG path or URL, or a STAC item .json)")
    return ImagerySource(
        satellite=satellite, map=args.map, osm_source=args.osm_source,
        cache_dir=False if no_cache else args.cache_dir, offline=True if args.offline else None,
        osm_landuse=bool(getattr(args, "osm_landuse", False)),
    )


def say(args, message: str, *, always: bool = False) -> None:
    """Print ``message`` unless ``--quiet``; ``always`` (what was written) prints even then."""
    if always or not getattr(args, "quiet", False):
        print(message)


def report(args, lines) -> None:
    """Summary lines: all of them, or under ``--quiet`` only those saying what was written."""
    for line in lines:
        say(args, line, always=line.startswith("wrote "))


def check_output_dir(path: Path, flag: str = "--out") -> Path:
    """``path`` as a folder that can be created or written, checked before any work (nothing is
    created here, so a run that fails early leaves no empty folder behind).
    """
    from ..pipeline.results import check_writable_folder

    return check_writable_folder(path, flag)
