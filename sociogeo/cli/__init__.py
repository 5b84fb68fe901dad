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
import os
import re
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
    argv = sys.argv[1:] if argv is None else list(argv)
    unknown = _unknown_option(parser, argv)
    if unknown:
        print(f"sociogeo: error: {unknown}", file=sys.stderr)
        return EXIT_ERROR
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
            print(f"sociogeo: error: {in_cli_words(_one_line(exc), _flags(parser, args.command))}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print("sociogeo: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as exc:  # noqa: BLE001 (a command line shows one line, not a traceback)
            if os.environ.get("SOCIOGEO_DEBUG"):
                raise
            print(f"sociogeo: error: {type(exc).__name__}: {_one_line(exc)} (set SOCIOGEO_DEBUG=1 to see where; "
                  "please report it if the input looks right)", file=sys.stderr)
            return EXIT_ERROR


# Python argument names whose command-line flag is not simply the name with dashes
_ALIASES = {"edge_policy": "--edge", "max_area_km2": "--max-area-km2", "resume_dir": "--out"}


def _flags(parser, command) -> dict[str, str]:
    """Python option name -> flag, for the options of ``command``."""
    flags: dict[str, str] = {}
    sub = _subparser(parser, command)
    for action in (sub or parser)._actions:
        long = [o for o in action.option_strings if o.startswith("--")]
        if long:
            flags[action.dest] = long[0]
            flags[long[0][2:].replace("-", "_")] = long[0]
    for name, flag in _ALIASES.items():
        flags.setdefault(name, flag)
    return flags


def in_cli_words(message: str, flags: dict[str, str]) -> str:
    """An error message in the command line's words: ``chip_size=512`` becomes ``--chip-size 512``,
    ``offline=True`` ``--offline``, ``sociogeo.options.max_area_km2`` and ``max_area_km2`` become
    ``--max-area-km2``. Plain words are left alone (``zoom`` may be prose).
    """
    def flag(name: str) -> str | None:
        return flags.get(name)

    def keyword(match):
        name, value = match.group(1), match.group(2)
        f = flag(name)
        if f is None:
            return match.group(0)
        return f if value in ("True", "true") else f"{f} {value}"

    # "(or set sociogeo.options.x)" is Python advice; the flag says it on the command line
    out = re.sub(r" \(or set sociogeo\.options\.([a-z0-9_]+)\)", lambda m: "" if flag(m.group(1)) else m.group(0),
                 message)
    out = re.sub(r"(?:sociogeo\.options\.)?\b([a-z][a-z0-9_]*)=([^\s,;)]+)", keyword, out)
    out = re.sub(r"sociogeo\.options\.([a-z0-9_]+)", lambda m: flag(m.group(1)) or m.group(0), out)
    out = re.sub(r"\b([a-z][a-z0-9]*_[a-z0-9_]+)\b", lambda m: flag(m.group(1)) or m.group(0), out)
    return re.sub(r"(--[a-z0-9-]+) \((?:or )?\1\)", r"\1", out)  # "--x (--x)" once translated


def _subparser(parser, command):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(command)
    return None


def _unknown_option(parser, argv: list[str]) -> str | None:
    """An error naming the first option the command does not have, with the closest ones, or None."""
    import difflib

    command = next((a for a in argv if not a.startswith("-")), None)
    sub = _subparser(parser, command)
    if sub is None:
        return None
    known = {o for action in sub._actions for o in action.option_strings}
    known |= {o for action in parser._actions for o in action.option_strings}
    for token in argv:
        name = token.split("=", 1)[0]
        if not name.startswith("--") or name in known or name == "--":
            continue
        close = difflib.get_close_matches(name, sorted(known), n=2, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else f"; see sociogeo {command} --help"
        return f"sociogeo {command} has no option {name}{hint}"
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # warnings are for the user here, not for a developer: no file names or source lines
    print(f"sociogeo: warning: {_one_line(message) if isinstance(message, Warning) else message}", file=sys.stderr)


__all__ = ["COMMANDS", "build_parser", "main"]
