"""The Ray engine on a real local Ray cluster: same polygons as the local engine, survives a killed
actor without losing or duplicating a chip, and reuses what an earlier run wrote."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

ray = pytest.importorskip("ray")

from sociogeo.imagery.source import ImagerySource  # noqa: E402
from sociogeo.pipeline.ray_engine import RayEngine  # noqa: E402
from sociogeo.pipeline.run import segment  # noqa: E402
from sociogeo.pipeline.store import ChipStore  # noqa: E402
from sociogeo.reasoner import SocioReasoner  # noqa: E402
from sociogeo.testing.scripted import BlobVLM, BrightnessSegmenter  # noqa: E402

pytestmark = pytest.mark.slow
CHIP = 96


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster for this module (logical CPUs: a reader and two model actors fit)."""
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def source(tile_server, tile_cache_dir):
    return ImagerySource(satellite=tile_server.url_template("sat"), map=tile_server.url_template("map"),
                         cache_dir=tile_cache_dir)


def _reasoner(delay_s: float = 0.0) -> SocioReasoner:
    return SocioReasoner(BlobVLM(95, delay_s=delay_s), BrightnessSegmenter(95))


def _stored_keys(folder) -> list[tuple[str, str]]:
    """Every (query, chip) row in every part file: duplicates would show up here."""
    import geopandas as gpd

    keys = []
    for part in sorted(folder.glob("part-*.parquet")):
        frame = gpd.read_parquet(part, columns=["query", "chip_id", "geometry"])
        keys.extend(zip(frame["query"], frame["chip_id"]))
    return keys


def _same(a, b) -> None:
    assert len(a) == len(b) > 3
    assert list(a["chip_id"]) == list(b["chip_id"]) and list(a["reasoning"]) == list(b["reasoning"])
    for ga, gb in zip(a.geometry, b.geometry):
        assert ga.symmetric_difference(gb).area < 1e-15


def test_ray_gives_the_local_polygons(cluster, source, sf_area, tmp_path):
    local = segment(sf_area, ["bright", "shiny"], reasoner=_reasoner(), imagery=source, chip_size=CHIP,
                    min_area_m2=0)
    distributed = segment(sf_area, ["bright", "shiny"], reasoner=_reasoner(), imagery=source, chip_size=CHIP,
                          min_area_m2=0, engine=RayEngine(num_actors=2, gpus_per_actor=0),
                          out=tmp_path / "ray.parquet")
    _same(distributed[distributed["query"] == "bright"], local[local["query"] == "bright"])
    assert distributed.attrs["engine"] == "ray" and (tmp_path / "ray.parquet").is_file()
    keys = _stored_keys(tmp_path / "ray.parquet.parts")
    assert len(keys) == len(set(keys)) == 2 * 16  # 4 x 4 chips, two queries, each once


def test_a_killed_actor_loses_and_duplicates_nothing(cluster, source, sf_area, tmp_path):
    out = tmp_path / "killed.gpkg"
    parts = tmp_path / "killed.gpkg.parts"
    killed = []

    def kill_a_model_actor():
        # wait until chips are being written, then SIGKILL one model actor's process
        deadline = time.time() + 60
        while time.time() < deadline and not list(parts.glob("part-*.parquet")):
            time.sleep(0.05)
        import psutil

        # Ray names an actor's process after its class: "ray::MapWorker(MapBatches(_ReasonChips))"
        for process in psutil.process_iter(["pid", "cmdline"]):
            if "_ReasonChips" in " ".join(process.info["cmdline"] or []):
                os.kill(process.info["pid"], signal.SIGKILL)
                killed.append(process.info["pid"])
                return

    watcher = threading.Thread(target=kill_a_model_actor)
    watcher.start()
    result = segment(sf_area, "bright", reasoner=_reasoner(delay_s=0.15), imagery=source, chip_size=CHIP,
                     min_area_m2=0, batch_size=1, out=out, engine=RayEngine(num_actors=2, gpus_per_actor=0))
    watcher.join()
    assert killed, "no model actor was found to kill"
    keys = _stored_keys(parts)
    assert len(keys) == len(set(keys)) == 16  # every chip exactly once
    assert result.attrs["failed_chips"] == []
    _same(result, segment(sf_area, "bright", reasoner=_reasoner(), imagery=source, chip_size=CHIP, min_area_m2=0))


def test_rerunning_a_finished_job_reuses_what_is_written(cluster, source, sf_area, tmp_path):
    out = tmp_path / "again.parquet"
    engine = RayEngine(gpus_per_actor=0)
    first = segment(sf_area, "bright", reasoner=_reasoner(), imagery=source, chip_size=CHIP, min_area_m2=0,
                    engine=engine, out=out)
    parts = sorted((tmp_path / "again.parquet.parts").glob("part-*"))
    # the second run finds every chip stored: no part is added, the result is the same
    again = segment(sf_area, "bright", reasoner=_reasoner(), imagery=source, chip_size=CHIP, min_area_m2=0,
                    engine=engine, out=out)
    assert sorted((tmp_path / "again.parquet.parts").glob("part-*")) == parts
    _same(again, first)
    # and the local engine reads the same store
    local = segment(sf_area, "bright", reasoner=_reasoner(), imagery=source, chip_size=CHIP, min_area_m2=0, out=out)
    _same(local, first)
    parts = tmp_path / "again.parquet.parts"
    assert len(ChipStore(parts, _manifest_of(parts)).finished()) == 16


def _manifest_of(folder):
    import json

    return json.loads((folder / "manifest.json").read_text())


def test_evaluation_on_ray_gives_the_local_numbers(cluster, tmp_path):
    """Tiny real models, sampled decoding (the paper's protocol): same batches, same seeds, same numbers."""
    import numpy as np

    from sociogeo.datasets.socioseg import Sample, load_socioseg, write_raw
    from sociogeo.reasoner.model import ReasonerSpec
    from sociogeo.reasoner.vlm.base import GenerationConfig
    from sociogeo.testing.tiny import make_tiny_models
    from sociogeo.train.evaluate import evaluate

    rng = np.random.default_rng(4)
    masks = [np.zeros((112, 112), bool) for _ in range(5)]
    for i, m in enumerate(masks):
        m[10 * i:10 * i + 40, 20:70] = True
    write_raw([Sample(f"s{i}", q, rng.integers(0, 255, (112, 112, 3), dtype=np.uint8),
                      rng.integers(0, 255, (112, 112, 3), dtype=np.uint8), masks[i], "class")
               for i, q in enumerate(["park", "school", "park", "Educational", "hospital"])], tmp_path / "data", "test")
    data = load_socioseg(tmp_path / "data", "test")
    models = make_tiny_models(tmp_path / "models")
    spec = ReasonerSpec(str(models.vlm), str(models.sam), device="cpu", trained=False,
                        generation=GenerationConfig.released(max_new_tokens=24, seed=5))
    gen = GenerationConfig.released(max_new_tokens=24, seed=5)
    local = evaluate(spec.load(), data, batch_size=2, generation=gen)
    distributed = evaluate(spec, data, batch_size=2, generation=gen, engine=RayEngine(num_actors=2, gpus_per_actor=0))
    assert [r["id"] for r in distributed.records] == [r["id"] for r in local.records]
    assert [r["stage1_text"] for r in distributed.records] == [r["stage1_text"] for r in local.records]
    assert [r["iou"] for r in distributed.records] == [r["iou"] for r in local.records]
    assert distributed.scores["all"].giou == local.scores["all"].giou
