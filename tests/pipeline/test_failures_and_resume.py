"""A failed chip is recorded and retried, never fatal; a killed run keeps its chips and continues."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from sociogeo.imagery.source import ImagerySource
from sociogeo.pipeline.run import segment
from sociogeo.reasoner import SocioReasoner
from sociogeo.testing.scripted import BlobVLM, BrightnessSegmenter

CHIP = 96


class FlakyVLM(BlobVLM):
    """Fails (like a VLM server error) for chips whose satellite image sum is in ``bad``, ``times`` times."""

    def __init__(self, bad_sums: set, times: int):
        super().__init__(95)
        self.bad_sums, self.times, self.failures = bad_sums, times, 0

    def generate(self, requests, config=None):
        if any(int(r.images[1].sum()) in self.bad_sums for r in requests) and self.failures < self.times:
            self.failures += 1
            from sociogeo.errors import VLMServerError

            raise VLMServerError("HTTP 503 from the VLM server", url="http://vlm.example/v1", status=503)
        return super().generate(requests, config)


def _source(tile_server, cache):
    return ImagerySource(satellite=tile_server.url_template("sat"), map=tile_server.url_template("map"),
                         cache_dir=cache)


def _one_chip_sum(sf_area, source) -> int:
    """The model-space satellite sum of chip r1_c1 (how the flaky VLM recognises it)."""
    from sociogeo.imagery.windows import open_windows
    from sociogeo.pipeline.plan import plan_chips
    from sociogeo.reasoner import protocol

    task = next(t for t in plan_chips(sf_area.grid, CHIP) if t.chip_id == "r1_c1")
    with open_windows(source, sf_area.grid) as reader:
        images = reader.read(task.grid(sf_area.grid))
    return int(protocol.model_images(images.map, images.satellite).satellite.sum())


def test_a_failing_batch_is_retried_and_the_run_completes(tile_server, tile_cache_dir, sf_area):
    source = _source(tile_server, tile_cache_dir)
    expected = segment(sf_area, "b", reasoner=SocioReasoner(BlobVLM(95), BrightnessSegmenter(95)),
                       imagery=source, chip_size=CHIP, min_area_m2=0)
    flaky = FlakyVLM({_one_chip_sum(sf_area, source)}, times=1)
    result = segment(sf_area, "b", reasoner=SocioReasoner(flaky, BrightnessSegmenter(95)), imagery=source,
                     chip_size=CHIP, min_area_m2=0, batch_size=4)
    assert flaky.failures == 1  # it did fail once ...
    assert result.attrs["failed_chips"] == []  # ... and the retry filled it in
    assert list(result["chip_id"]) == list(expected["chip_id"])


def test_a_chip_that_keeps_failing_is_reported_and_retried_next_time(tile_server, tile_cache_dir, sf_area,
                                                                     tmp_path):
    source = _source(tile_server, tile_cache_dir)
    out = tmp_path / "b.parquet"
    broken = FlakyVLM({_one_chip_sum(sf_area, source)}, times=10**9)
    with pytest.warns(UserWarning, match=r"1 chip\(s\) failed .*r1_c1.*HTTP 503.*run again"):
        first = segment(sf_area, "b", reasoner=SocioReasoner(broken, BrightnessSegmenter(95)), imagery=source,
                        chip_size=CHIP, min_area_m2=0, batch_size=4, out=out)
    assert [f["chip_id"] for f in first.attrs["failed_chips"]] == ["r1_c1"]
    assert "VLMServerError" in first.attrs["failed_chips"][0]["error"]
    assert all("r1_c1" not in ids for ids in first["chip_id"])
    # the next run with the same output runs only the missing chip, now that the server is back
    healthy = BlobVLM(95)
    again = segment(sf_area, "b", reasoner=SocioReasoner(healthy, BrightnessSegmenter(95)), imagery=source,
                    chip_size=CHIP, min_area_m2=0, out=out)
    assert again.attrs["failed_chips"] == []
    assert any("r1_c1" in ids for ids in again["chip_id"])


def test_every_chip_failing_raises_the_cause(tile_server, tile_cache_dir, sf_area):
    from sociogeo.errors import VLMServerError

    always = FlakyVLM(set(), times=0)
    always.generate = lambda requests, config=None: (_ for _ in ()).throw(
        VLMServerError("connection refused", url="http://127.0.0.1:9/v1"))
    with pytest.raises(VLMServerError, match="connection refused"):
        segment(sf_area, "b", reasoner=SocioReasoner(always, BrightnessSegmenter(95)),
                imagery=_source(tile_server, tile_cache_dir), chip_size=CHIP)


@pytest.mark.slow
def test_a_killed_process_keeps_its_chips_and_the_rerun_finishes_the_rest(tile_server, tile_cache_dir,
                                                                           sf_area, tmp_path):
    """SIGKILL a real `segment` process mid-run, run again with the same output: every chip once."""
    import geopandas as gpd

    out = tmp_path / "killed.gpkg"
    script = textwrap.dedent(f"""
        import sociogeo
        from sociogeo.geo.area import Area
        from sociogeo.imagery.source import ImagerySource
        from sociogeo.pipeline.run import segment
        from sociogeo.reasoner import SocioReasoner
        from sociogeo.testing.scripted import BlobVLM, BrightnessSegmenter
        sociogeo.set_progress(False)
        area = Area.from_bbox({sf_area.bounds!r}, zoom={sf_area.zoom})
        source = ImagerySource(satellite={tile_server.url_template("sat")!r}, map={tile_server.url_template("map")!r},
                               cache_dir={str(tile_cache_dir)!r})
        segment(area, "b", reasoner=SocioReasoner(BlobVLM(95, delay_s=0.3), BrightnessSegmenter(95)),
                imagery=source, chip_size={CHIP}, min_area_m2=0, batch_size=1, out={str(out)!r})
    """)
    parts = tmp_path / "killed.gpkg.parts"
    process = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("part-*.parquet"))) < 3:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    kept = {p.name for p in parts.glob("part-*.parquet")}
    assert 3 <= len(kept) < 16 and not out.exists()  # killed mid-run: some chips kept, no result yet
    result = segment(sf_area, "b", reasoner=SocioReasoner(BlobVLM(95), BrightnessSegmenter(95)),
                     imagery=_source(tile_server, tile_cache_dir), chip_size=CHIP, min_area_m2=0, out=out)
    assert kept <= {p.name for p in parts.glob("part-*.parquet")}  # nothing kept was redone
    keys = []
    for part in sorted(parts.glob("part-*.parquet")):
        frame = gpd.read_parquet(part, columns=["query", "chip_id", "geometry"])
        keys.extend(zip(frame["query"], frame["chip_id"]))
    assert len(keys) == len(set(keys)) == 16
    expected = segment(sf_area, "b", reasoner=SocioReasoner(BlobVLM(95), BrightnessSegmenter(95)),
                       imagery=_source(tile_server, tile_cache_dir), chip_size=CHIP, min_area_m2=0)
    assert list(result["chip_id"]) == list(expected["chip_id"]) and out.is_file()
