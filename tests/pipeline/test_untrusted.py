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


# -- resume folders: checked before use, recomputed when wrong ----------------------------------
RESUME_CHIP = 96


def _blob_run(tile_server, cache, sf_area, out, **kwargs):
    from sociogeo.testing.scripted import BlobVLM, BrightnessSegmenter

    return segment(sf_area, "b", reasoner=SocioReasoner(BlobVLM(95), BrightnessSegmenter(95)),
                   imagery=_source(tile_server, cache), chip_size=RESUME_CHIP, min_area_m2=0, batch_size=4,
                   out=out, **kwargs)


@pytest.fixture()
def finished_run(tile_server, tile_cache_dir, sf_area, tmp_path):
    """A finished run's output, its parts folder and its result (which the reruns must reproduce)."""
    out = tmp_path / "b.parquet"
    result = _blob_run(tile_server, tile_cache_dir, sf_area, out)
    parts = tmp_path / "b.parquet.parts"
    assert len(sorted(parts.glob("part-*.parquet"))) == 4
    return out, parts, result


def _rewrite(path, change):
    import geopandas as gpd

    frame = gpd.read_parquet(path)
    frame = change(frame)
    frame.to_parquet(path, index=False)


def _wrong_type(frame):
    frame["row"] = frame["row"].astype(str)
    return frame


def _bad_status(frame):
    frame["status"] = "done"
    return frame


def _short_mask(frame):
    frame["mask"] = frame["mask"].map(lambda m: m[:-1])
    return frame


def _huge_mask_size(frame):
    frame["mask_height"] = 10**9
    frame["mask_width"] = 10**9
    return frame


def _not_a_chip(frame):
    frame["chip_id"] = "r0_c0; DROP TABLE"
    return frame


@pytest.mark.parametrize("change", [_wrong_type, _bad_status, _short_mask, _huge_mask_size, _not_a_chip])
def test_a_part_with_wrong_values_is_set_aside_and_recomputed(change, finished_run, tile_server, tile_cache_dir,
                                                               sf_area):
    out, parts, expected = finished_run
    victim = sorted(parts.glob("part-*.parquet"))[1]
    _rewrite(victim, change)
    with pytest.warns(UserWarning, match=f"ignoring unreadable result part {victim.name}"):
        again = _blob_run(tile_server, tile_cache_dir, sf_area, out)
    assert (parts / (victim.name + ".unreadable")).is_file()
    assert list(again["chip_id"]) == list(expected["chip_id"])
    assert list(again["area_m2"]) == pytest.approx(list(expected["area_m2"]))


def test_a_truncated_part_is_recomputed(finished_run, tile_server, tile_cache_dir, sf_area):
    out, parts, expected = finished_run
    victim = sorted(parts.glob("part-*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:300])
    with pytest.warns(UserWarning, match="unreadable result part"):
        again = _blob_run(tile_server, tile_cache_dir, sf_area, out)
    assert list(again["chip_id"]) == list(expected["chip_id"])


def test_a_part_declaring_a_huge_uncompressed_size_is_not_decompressed(finished_run, tile_server,
                                                                       tile_cache_dir, sf_area, monkeypatch):
    """A zip-bomb-like part: 64 MB of text compressed to a few kB; the limit is lowered to 16 MB."""
    from sociogeo.pipeline import store

    out, parts, expected = finished_run
    victim = sorted(parts.glob("part-*.parquet"))[2]
    _rewrite(victim, lambda f: f.assign(reasoning="\u00e9" * (32 * 2**20)))
    assert victim.stat().st_size < 4 * 2**20
    monkeypatch.setattr(store, "MAX_PART_BYTES", 16 * 2**20)
    with pytest.warns(UserWarning, match=r"unreadable result part .*declares [\d,]+ bytes uncompressed"):
        again = _blob_run(tile_server, tile_cache_dir, sf_area, out)
    assert list(again["chip_id"]) == list(expected["chip_id"])


@pytest.mark.parametrize("manifest", [b'{"grid": [15, 1', b'["a", "list"]', b"[" * 100_000, b" " * (2 << 20)],
                         ids=["truncated", "list", "nested", "oversized"])
def test_an_unreadable_manifest_cannot_vouch_for_the_parts(manifest, finished_run, tile_server, tile_cache_dir,
                                                            sf_area):
    out, parts, expected = finished_run
    (parts / "manifest.json").write_bytes(manifest)
    with pytest.warns(UserWarning, match=r"manifest.json .*set aside"):
        again = _blob_run(tile_server, tile_cache_dir, sf_area, out)
    assert len(list(parts.glob("*.unverified"))) == 4
    assert list(again["chip_id"]) == list(expected["chip_id"])
    assert json.loads((parts / "manifest.json").read_text())["chip_size"] == RESUME_CHIP


@pytest.mark.parametrize("sidecar", [b'{"attrs": ', b'["not", "an", "object"]', b'{"attrs": [1, 2]}',
                                     b"[" * 100_000], ids=["truncated", "list", "attrs-list", "nested"])
def test_a_damaged_sidecar_is_a_typed_error(sidecar, tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    from sociogeo.errors import ConfigError
    from sociogeo.pipeline.results import write_result

    gdf = gpd.GeoDataFrame({"query": ["q"]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:4326")
    paths = write_result(gdf, tmp_path / "r.gpkg")
    paths["metadata"].write_bytes(sidecar)
    with pytest.raises(ConfigError, match=r"r\.gpkg\.json.*delete it"):
        read_result(paths["result"])


def test_an_oversized_sidecar_is_not_read(tmp_path, monkeypatch):
    import geopandas as gpd
    from shapely.geometry import box

    from sociogeo.errors import ConfigError
    from sociogeo.pipeline import results

    gdf = gpd.GeoDataFrame({"query": ["q"]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:4326")
    paths = results.write_result(gdf, tmp_path / "r.parquet")
    monkeypatch.setattr(results, "MAX_SIDECAR_BYTES", 100)
    with pytest.raises(ConfigError, match="bytes"):
        read_result(paths["result"])


def test_a_real_server_failing_once_and_answering_surrogates(tile_server, tile_cache_dir, sf_area, tmp_path):
    """OpenAIVLM over HTTP: the first request gets HTTP 500 (not retried by the client), so its batch
    fails and is retried at the end; every answer carries lone surrogates and NUL as JSON escapes."""
    from sociogeo.reasoner.vlm.openai_backend import OpenAIVLM
    from sociogeo.testing.chat_server import ChatServer

    out = tmp_path / "served.gpkg"
    with ChatServer() as server:
        server.inject("500", first=1)
        server.inject("text", text=f"<think>{NASTY}</think><answer>[]</answer>")
        vlm = OpenAIVLM(server.url, model=server.model, backoff_s=0.01)
        result = segment(sf_area, "b", reasoner=SocioReasoner(vlm, BoxSegmenter()),
                         imagery=_source(tile_server, tile_cache_dir), chip_size=CHIP, out=out, batch_size=2)
    assert result.attrs["failed_chips"] == []
    meta = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    assert meta["attrs"]["failed_chips"] == [] and meta["n_entities"] == 0
    from sociogeo.pipeline.store import ChipStore

    stored = ChipStore(tmp_path / "served.gpkg.parts", json.loads((tmp_path / "served.gpkg.parts" /
                                                                    "manifest.json").read_text())).read()
    assert len(stored) == 6 and all("\ufffd" in t and "\x00" not in t for t in stored["stage1_text"])
