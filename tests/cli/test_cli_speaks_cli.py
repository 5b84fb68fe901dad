"""The command line speaks command line: one line per error, exit status 2, no traceback, flags
named as flags, suggestions for misspelt options, output paths checked before any work."""

from __future__ import annotations

import argparse

import pytest

from sociogeo.cli import COMMANDS, _subparser, build_parser, main


@pytest.fixture
def no_models(monkeypatch):
    from sociogeo.reasoner.model import ReasonerSpec

    monkeypatch.setattr(ReasonerSpec, "load", lambda *a, **k: pytest.fail("no model may load for a bad argument"))


def _run(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


BBOX = ["--bbox", "24.94", "60.166", "24.95", "60.17"]


@pytest.mark.parametrize("argv,expected", [
    (["segment", *BBOX, "--query", "park", "--out", "x.gpkg", "--chip-size", "0"], "--chip-size"),
    (["segment", *BBOX, "--query", "park", "--out", "x.gpkg", "--batch-size", "0"], "--batch-size"),
    (["segment", *BBOX, "--query", "park", "--out", "x.gpkg", "--min-area-m2", "nan"], "--min-area-m2"),
    (["segment", *BBOX, "--query", "park", "--out", "x.gpkg", "--max-area-km2", "0"], "--max-area-km2"),
    (["fetch", "--bbox", "-170", "-80", "170", "80", "--out", "o"], "--max-area-km2"),
    (["segment", "--bboxx", "1", "2", "3", "4", "--query", "park", "--out", "x.gpkg"], "did you mean --bbox"),
    (["evaluate", "--batch-size", "0"], "--batch-size"),
    (["train", "--config", "sft", "--steps", "-1"], "steps"),
])
def test_bad_arguments_are_one_line_with_the_flag(argv, expected, capsys, no_models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = _run(capsys, argv)
    assert code == 2 and "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("sociogeo")
    assert expected in err
    assert "max_area_km2" not in err and "sociogeo.options" not in err  # the user's words, not Python's


@pytest.mark.parametrize("command", ["fetch", "segment", "demo", "build-dataset"])
def test_output_paths_are_checked_before_any_work(command, capsys, no_models, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / ("x.gpkg" if command == "segment" else "out")
    argv = {"segment": ["segment", *BBOX, "--query", "park", "--out", str(out)],
            "fetch": ["fetch", *BBOX, "--out", str(out)], "demo": ["demo", "--offline", "--out", str(out)],
            "build-dataset": ["build-dataset", *BBOX, "--out", str(out)]}[command]
    code, err = _run(capsys, argv)
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    assert "cannot create" in err and str(blocker) in err


def test_an_unexpected_error_is_one_line_too_and_debug_shows_it(capsys, monkeypatch):
    import sociogeo.cli.fetch as fetch

    def boom(args):
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(fetch, "run", boom)
    code, err = _run(capsys, ["fetch", *BBOX, "--out", "o"])
    assert code == 2 and err.count("\n") == 0 and "RuntimeError: something nobody expected" in err
    monkeypatch.setenv("SOCIOGEO_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["fetch", *BBOX, "--out", "o"])


def test_bbox_takes_commas_and_warns_about_latitude_first():
    parser = build_parser()
    assert parser.parse_args(["fetch", "--bbox", "24.94,60.166,24.95,60.17", "--out", "o"]).bbox == \
        [24.94, 60.166, 24.95, 60.17]
    with pytest.warns(UserWarning, match="latitude/longitude order.*--bbox 24.938 60.165 24.952 60.172"):
        parser.parse_args(["fetch", "--bbox", "60.165", "24.938", "60.172", "24.952", "--out", "o"])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a right-way-round Helsinki box does not warn
        parser.parse_args(["fetch", "--bbox", "24.938", "60.165", "24.952", "60.172", "--out", "o"])


def test_every_option_has_help_and_shows_its_default():
    parser = build_parser()
    missing = []
    for command in COMMANDS:
        for action in _subparser(parser, command)._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            text = (action.help or "").lower()
            trivial = action.default in (None, False, [], argparse.SUPPRESS)
            if not text or (not trivial and "default" not in text):
                missing.append(f"{command} {action.option_strings[0]}")
    assert missing == []


def test_quiet_still_says_what_was_written_and_warns(tile_server, tmp_path, capsys, sf_area):
    west, south, east, north = sf_area.bounds
    code = main(["-q", "fetch", "--bbox", str(west), str(south), str(east), str(north), "--zoom", "15",
                 "--satellite", tile_server.url_template("sat"), "--map", tile_server.url_template("map"),
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0 and "wrote" in out and "satellite.tif" in out
    assert "px," not in out  # the informational size line stays quiet
