"""``sociogeo fetch``: two streamed GeoTIFFs and a preview; errors are one line and exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sociogeo import __version__
from sociogeo.cli import main
from sociogeo.imagery import ImagePair, fetch_pair

BBOX = ["-122.4105", "37.7825", "-122.3965", "37.7925"]  # the sf_area fixture's box


@pytest.fixture
def no_progress(_reset_sociogeo_options):
    """Progress bars also write to stderr; keep it to the lines under test."""
    _reset_sociogeo_options.progress = False


def fetch_args(server, out, *extra):
    return ["fetch", "--bbox", *BBOX, "--zoom", "15", "--satellite", server.url_template("sat"),
            "--map", server.url_template("map"), "--out", str(out), *extra]


def test_fetch_writes_both_geotiffs_and_a_preview(tile_server, sf_area, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "out"
    status = main(fetch_args(tile_server, out, "--cache-dir", str(tmp_path / "cache")))
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["map.tif", "preview.png", "satellite.tif"]
    printed = capsys.readouterr().out
    assert "satellite.tif" in printed and "map.tif" in printed

    written = ImagePair.from_geotiff(out)
    assert written.grid == sf_area.grid
    in_memory = fetch_pair(sf_area, satellite=tile_server.url_template("sat"),
                           map=tile_server.url_template("map"), cache_dir=False)
    np.testing.assert_array_equal(written.satellite.values, in_memory.satellite.values)
    np.testing.assert_array_equal(written.map.values, in_memory.map.values)
    np.testing.assert_array_equal(written.valid, in_memory.valid)
    assert written.area.geometry.equals(sf_area.geometry)
    preview = Image.open(out / "preview.png")
    assert preview.size == (2 * sf_area.grid.width + 8, sf_area.grid.height)


def test_fetch_offline_from_the_cache_and_quiet(tile_server, tmp_path, capsys):
    cache = str(tmp_path / "cache")
    assert main(fetch_args(tile_server, tmp_path / "a", "--cache-dir", cache)) == 0
    capsys.readouterr()
    tile_server.reset_log()
    assert main(["--quiet", *fetch_args(tile_server, tmp_path / "b", "--cache-dir", cache, "--offline")]) == 0
    assert tile_server.n_requests == 0
    captured = capsys.readouterr()
    # --quiet drops progress and chatter but still says what was written, one line per file
    lines = captured.out.splitlines()
    assert [line.split()[0] for line in lines] == ["wrote"] * 3
    assert [Path(line.split()[1]).name for line in lines] == ["satellite.tif", "map.tif", "preview.png"]
    assert captured.err == ""
    assert (tmp_path / "b" / "satellite.tif").read_bytes() == (tmp_path / "a" / "satellite.tif").read_bytes()


def test_fetch_offline_without_tiles_is_one_line_and_status_2(tile_server, tmp_path, capsys, no_progress):
    status = main(fetch_args(tile_server, tmp_path / "out", "--cache-dir", str(tmp_path / "empty"), "--offline"))
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("sociogeo: error: offline mode") and err.count("\n") == 1
    assert "15/" in err  # names the missing tiles
    assert not (tmp_path / "out" / "satellite.tif").exists()


def test_missing_tiles_are_a_one_line_warning(tile_server, tmp_path, capsys, no_progress):
    tile_server.inject("404", tiles=[next(iter(_area_tiles()))], layer="map")
    assert main(fetch_args(tile_server, tmp_path / "out", "--no-cache")) == 0
    captured = capsys.readouterr()
    warning_lines = [line for line in captured.err.splitlines() if line.startswith("sociogeo: warning:")]
    assert len(warning_lines) == 1 and "1 of 6 tiles" in warning_lines[0]
    assert "1 tiles missing" in captured.out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fetch", "--bbox", "-122.39", "37.78", "-122.41", "37.79", "--out", "x"],
         "west (-122.39) must be less than east"),
        (["fetch", "--bbox", *BBOX, "--satellite", "Esri.WorldImagry", "--out", "x"],
         "Did you mean: Esri.WorldImagery"),
        (["fetch", "--bbox", *BBOX, "--zoom", "21", "--out", "x"], "at most 19"),
    ],
)
def test_errors_print_one_line_and_exit_2(argv, message, tmp_path, capsys, monkeypatch, no_progress):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sociogeo: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"sociogeo {__version__}"
    assert main([]) == 2  # no subcommand: usage on stderr
    assert "fetch" in capsys.readouterr().err


def test_exit_status_from_a_real_process(tmp_path):
    """The console script path: a separate interpreter, a bad bbox, status 2, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "sociogeo", "fetch", "--bbox", "0", "0", "200", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("sociogeo: error: east longitude 200.0 is outside [-180, 180]")
    assert "Traceback" not in proc.stderr


def _area_tiles():
    from sociogeo.geo.area import Area

    return Area.from_bbox([float(v) for v in BBOX], zoom=15).grid.tiles()
