"""The ``sociogeo`` command line: one module per command, each with ``add(subparsers, parents)``
registering its arguments and ``run(args) -> int`` doing the work.

Errors sociogeo raises on purpose print one line to stderr and exit with status 2.

Result files (``sociogeo segment``, ``sociogeo demo``): the polygons go to a GeoPackage
(``.gpkg``), GeoJSON (``.geojson``) or GeoParquet (``.parquet``) file chosen by the extension;
the run's metadata (``GeoDataFrame.attrs``: models, zoom, imagery providers, attribution, whether
the models were trained) goes to a sidecar JSON file next to it, ``<file>.json`` (e.g.
``schools.gpkg.json``), the same for every format, since GeoJSON has nowhere to keep it.
:func:`sociogeo.pipeline.results.read_result` reads both back.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from .._version import __version__
from ..errors import SociogeoError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

# command name -> module (in this package) with add() and run()
COMMANDS = {
    "fetch": "fetch",
    "segment": "segment",
    "demo": "demo",
    "train": "train",
    "evaluate": "evaluate",
    "build-dataset": "build_dataset",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``sociogeo`` argument parser with every command registered."""
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
    for module in COMMANDS.values():
        importlib.import_module(f"{__name__}.{module}").add(subparsers, [common])
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    args.quiet = getattr(args, "quiet", False)

    from ..options import options

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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # warnings are for the user here, not for a developer: no file names or source lines
    print(f"sociogeo: warning: {_one_line(message) if isinstance(message, Warning) else message}", file=sys.stderr)


__all__ = ["COMMANDS", "build_parser", "main"]
