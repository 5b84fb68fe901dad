"""``offline_world`` hands out the shipped demo model by default, with stand-in tiles at the zoom it
was trained on, and tiny untrained models on request; each kind of model is labelled for what it is.

The rasters here are the bundled sample's (no rendering of the whole extract), served by the real
loopback tile server.
"""

from __future__ import annotations

import pytest

from sociogeo.cli.demo import SAMPLE_DIR as SAMPLE
from sociogeo.reasoner.kind import reasoner_kind
from sociogeo.testing import helsinki
from sociogeo.testing.demo_model import demo_model


@pytest.fixture
def rendered(monkeypatch):
    """Record the zoom ``offline_world`` renders at; serve the bundled sample instead."""
    zooms = []

    def write_rasters(directory, *, zoom=16, **_):
        zooms.append(zoom)
        return {"sat": SAMPLE / "satellite.tif", "map": SAMPLE / "map.tif"}

    monkeypatch.setattr(helsinki, "write_rasters", write_rasters)
    monkeypatch.setattr(helsinki, "helsinki_pbf", lambda: SAMPLE / "no.osm.pbf")
    return zooms


def test_the_demo_model_by_default_at_its_zoom(rendered, tmp_path):
    model = demo_model()
    with helsinki.offline_world(tmp_path) as world:
        assert (world.vlm, world.sam) == (model.vlm, model.sam)
        assert world.models == "demo" and world.zoom == model.info["zoom"] == 17
        assert reasoner_kind(world.vlm, world.sam) == "demo"
        assert world.satellite.synthetic and world.satellite_url.startswith("http://127.0.0.1:")
    assert rendered == [17]
    assert not (tmp_path / "models").exists()  # nothing is made: the demo model ships in the package


@pytest.mark.parametrize("zoom", [None, 15])
def test_tiny_untrained_models_on_request(rendered, tmp_path, zoom):
    pytest.importorskip("transformers")
    with helsinki.offline_world(tmp_path, models="tiny", zoom=zoom) as world:
        assert world.vlm.parent == world.sam.parent == tmp_path / "models"
        assert reasoner_kind(world.vlm, world.sam) == "untrained"
        assert world.models == "tiny" and world.zoom == (zoom or 16)
    assert rendered == [zoom or 16]


def test_unknown_models_are_refused_before_anything_runs(rendered, tmp_path):
    with pytest.raises(ValueError, match="demo, tiny"), helsinki.offline_world(tmp_path, models="released"):
        pass
    assert rendered == []
