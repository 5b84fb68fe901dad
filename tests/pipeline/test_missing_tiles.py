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


@pytest.mark.parametrize(("fault", "index", "layer", "kind", "suffix"), [
    ("404", 1, "satellite", "missing", ".gpkg"),  # a tile the server does not have
    ("500", 2, "map", "server", ".parquet"),  # a server error that lasts
])
def test_tiles_that_stay_missing_are_in_attrs_and_sidecar(fault, index, layer, kind, suffix, tile_server,  # noqa: PLR0913
                                                         tile_cache_dir, sf_area, tmp_path, _reset_sociogeo_options):
    _reset_sociogeo_options.retries = 0
    gone = list(sf_area.grid.tiles())[index]
    tile_server.inject(fault, tiles=[gone], layer="sat" if layer == "satellite" else "map")
    out = tmp_path / f"gaps{suffix}"
    with pytest.warns(MissingTilesWarning):
        result = _run(tile_server, tile_cache_dir, sf_area, out)
    other = "map" if layer == "satellite" else "satellite"
    assert _tiles(result.attrs["missing_tiles"][layer]) == {gone}
    assert result.attrs["missing_tiles"][other] == []
    assert result.attrs["missing_tiles"][layer][0]["kind"] == kind
    meta = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    assert _tiles(meta["attrs"]["missing_tiles"][layer]) == {gone}
    assert meta["attrs"]["missing_tiles"][layer][0]["kind"] == kind


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
