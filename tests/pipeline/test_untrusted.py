"""Untrusted text and files in a run: model text with lone surrogates and NUL is written and read
back; broken resume folders and sidecars are recomputed or typed errors; missing tiles reach the
result's metadata and sidecar."""

from __future__ import annotations

import json

import pytest

from sociogeo.errors import VLMServerError
from sociogeo.imagery.source import ImagerySource
from sociogeo.pipeline.results import read_result, sidecar_path
from sociogeo.pipeline.run import segment
from sociogeo.reasoner import SocioReasoner
from sociogeo.testing.scripted import BoxSegmenter, ScriptedVLM

CHIP = 160
NASTY = "caf\u00e9 \ud800 lone \udfff surrogates and a \x00 NUL"


def _nasty_answer(request) -> str:
    if "Please add some points" in request.text:
        return f'<think>{NASTY}</think><answer>[{{"bbox_2d": [10, 10, 80, 80], "points": [[40, 40]]}}]</answer>'
    return f"<think>{NASTY}</think><answer>[{{\"bbox_2d\": [10, 10, 80, 80]}}] trailing {NASTY}</answer>"


def _source(tile_server, cache):
    return ImagerySource(satellite=tile_server.url_template("sat"), map=tile_server.url_template("map"),
                         cache_dir=cache)


class _NastyFailures(ScriptedVLM):
    """Answers with surrogates and NUL, and fails the first batch with a server error quoting them."""

    def __init__(self):
        super().__init__(_nasty_answer)
        self.failed = False

    def generate(self, requests, config=None):
        if not self.failed:
            self.failed = True
            raise VLMServerError(f"HTTP 500: {NASTY}", url="http://vlm.example/v1")
        return super().generate(requests, config)


@pytest.mark.parametrize("suffix", [".gpkg", ".parquet", ".geojson"])
def test_surrogates_and_nul_in_model_text_are_written_and_read_back(tile_server, tile_cache_dir, sf_area,
                                                                    tmp_path, suffix):
    out = tmp_path / f"nasty{suffix}"
    vlm = _NastyFailures()
    result = segment(sf_area, "b", reasoner=SocioReasoner(vlm, BoxSegmenter()), imagery=_source(tile_server,
                     tile_cache_dir), chip_size=CHIP, min_area_m2=0, out=out, batch_size=2)
    assert len(result) > 0 and vlm.failed
    back = read_result(out)
    assert len(back) == len(result)
    text = " ".join(back["reasoning"])
    assert "\ud800" not in text and "\x00" not in text and "caf\u00e9" in text and "\ufffd" in text
    meta = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    assert meta["n_entities"] == len(result)
    # the first batch failed once with a server error quoting model text, and was retried
    assert meta["attrs"]["failed_chips"] == []


def test_a_chip_failing_with_surrogates_in_its_error_is_still_recorded(tile_server, tile_cache_dir, sf_area,
                                                                      tmp_path):
    class Always(ScriptedVLM):
        def generate(self, requests, config=None):
            if len(self.calls) >= 2:  # the first chip (two stages) works, the rest fail
                raise VLMServerError(f"HTTP 500: {NASTY}", url="http://vlm.example/v1")
            return super().generate(requests, config)

    out = tmp_path / "failing.gpkg"
    with pytest.warns(UserWarning, match="failed"):
        segment(sf_area, "b", reasoner=SocioReasoner(Always(_nasty_answer), BoxSegmenter()),
                imagery=_source(tile_server, tile_cache_dir), chip_size=CHIP, min_area_m2=0, out=out, batch_size=1)
    meta = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    errors = [f["error"] for f in meta["attrs"]["failed_chips"]]
    assert errors and all("lone" in e and "\ud800" not in e and "\x00" not in e for e in errors)


def test_write_result_cleans_any_text_cell_and_attr(tmp_path):
    import geopandas as gpd
    import pandas as pd
    from shapely.geometry import box

    from sociogeo.pipeline.results import write_result

    text = pd.Series([NASTY], dtype=object)  # arrow-backed strings cannot even hold a lone surrogate
    gdf = gpd.GeoDataFrame({"query": text, "area_m2": [1.0], "chip_id": ["r0_c0"], "reasoning": text},
                           geometry=[box(0, 0, 0.001, 0.001)], crs="EPSG:4326")
    gdf.attrs = {"note": NASTY, NASTY: [NASTY, {"deep": NASTY}]}
    paths = write_result(gdf, tmp_path / "r.gpkg")
    back = read_result(paths["result"])
    assert back["reasoning"][0] == back["query"][0] == NASTY.replace("\x00", "").replace("\ud800", "\ufffd").replace(
        "\udfff", "\ufffd")
    assert "\ufffd" in back.attrs["note"] and isinstance(back.attrs["note"], str)
    assert gdf["query"][0] == NASTY  # the caller's frame is left alone
