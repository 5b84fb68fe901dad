"""Missing tiles reach the result: segment()'s ``attrs["missing_tiles"]`` and the sidecar list the
tiles that stayed missing, and only those (a tile that failed once and came on the chip's retry is
not missing)."""

from __future__ import annotations

import json

import pytest

from sociogeo.errors import MissingTilesWarning
from sociogeo.imagery.source import ImagerySource
from sociogeo.pipeline.results import sidecar_path
from sociogeo.pipeline.run import segment
from sociogeo.reasoner import SocioReasoner
from sociogeo.testing.scripted import BlobVLM, BrightnessSegmenter

CHIP = 96


def _run(tile_server, cache, area, out):
    source = ImagerySource(satellite=tile_server.url_template("sat"), map=tile_server.url_template("map"),
                           cache_dir=cache)
    return segment(area, "b", reasoner=SocioReasoner(BlobVLM(95), BrightnessSegmenter(95)), imagery=source,
                   chip_size=CHIP, min_area_m2=0, batch_size=4, out=out)


def _tiles(entries) -> set:
    return {(m["z"], m["x"], m["y"]) for m in entries}


def test_tiles_the_server_does_not_have_are_in_attrs_and_sidecar(tile_server, tile_cache_dir, sf_area, tmp_path):
    gone = list(sf_area.grid.tiles())[1]
    tile_server.inject("404", tiles=[gone], layer="sat")
    out = tmp_path / "gaps.gpkg"
    with pytest.warns(MissingTilesWarning):
        result = _run(tile_server, tile_cache_dir, sf_area, out)
    assert _tiles(result.attrs["missing_tiles"]["satellite"]) == {gone}
    assert result.attrs["missing_tiles"]["map"] == []
    meta = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    assert _tiles(meta["attrs"]["missing_tiles"]["satellite"]) == {gone}
    assert meta["attrs"]["missing_tiles"]["satellite"][0]["kind"] == "missing"


def test_a_server_error_that_lasts_is_recorded_as_missing(tile_server, tile_cache_dir, sf_area, tmp_path,
                                                          _reset_sociogeo_options):
    _reset_sociogeo_options.retries = 0
    broken = list(sf_area.grid.tiles())[2]
    tile_server.inject("500", tiles=[broken], layer="map")
    out = tmp_path / "broken.parquet"
    with pytest.warns(MissingTilesWarning):
        result = _run(tile_server, tile_cache_dir, sf_area, out)
    assert _tiles(result.attrs["missing_tiles"]["map"]) == {broken}
    assert result.attrs["missing_tiles"]["map"][0]["kind"] == "server"
    meta = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    assert _tiles(meta["attrs"]["missing_tiles"]["map"]) == {broken}


def test_a_tile_that_fails_once_is_fetched_again_when_its_chip_is_retried(tile_server, tile_cache_dir, sf_area,
                                                                         tmp_path, _reset_sociogeo_options):
    """Its chip fails on the first pass (the tile's fetch gave up), is retried at the end, the tile
    comes: the result is complete and lists no missing tile."""
    _reset_sociogeo_options.retries = 0
    expected = _run(tile_server, tile_cache_dir / "clean", sf_area, tmp_path / "clean.parquet")
    flaky = list(sf_area.grid.tiles())[2]
    tile_server.inject("500", tiles=[flaky], layer="sat", first=1)
    result = _run(tile_server, tile_cache_dir / "flaky", sf_area, tmp_path / "flaky.parquet")
    assert result.attrs["failed_chips"] == []
    assert result.attrs["missing_tiles"] == {"satellite": [], "map": []}
    assert list(result["chip_id"]) == list(expected["chip_id"])
