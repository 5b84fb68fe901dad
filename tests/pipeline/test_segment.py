"""From an area to polygons through the real model classes: tiny random Qwen2.5-VL and SAM (2 and
v1) saved to disk and loaded by ``SocioReasoner.from_pretrained``, imagery from the loopback tile
server, ``sociogeo.segment`` doing chips, both reasoning stages, mosaicking and vectorising.

What this proves and what it does not: random models answer gibberish, so with the real tiny VLM
the result is usually empty; those tests check the structure (columns, CRS, attrs, every chip
reasoned by the real model at the right size). The non-empty path is driven by a scripted VLM that
answers a fixed box, so the real tiny SAM's masks flow through mosaicking and vectorising; there
the polygons are checked against the masks SAM produced (area, place, chip ids). Nothing here
says the models find parks.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from sociogeo.pipeline.run import RESULT_COLUMNS, segment
from sociogeo.reasoner import SocioReasoner
from sociogeo.reasoner.vlm.base import GenerationConfig
from sociogeo.testing import ScriptedVLM, make_tiny_models

CHIP = 256  # pixels: small chips keep the run to a few seconds on a CPU
EARTH_CIRCUMFERENCE_M = 2 * math.pi * 6378137.0


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Tiny random models, shared by every test file of the session (created once)."""
    root = tmp_path_factory.getbasetemp() / "tiny-models"
    return {kind: make_tiny_models(root, sam=kind) for kind in ("sam2", "sam1")}


@pytest.fixture
def quiet(_reset_sociogeo_options):
    _reset_sociogeo_options.progress = False


def _imagery(tile_server):
    return {"satellite": tile_server.url_template("sat"), "map": tile_server.url_template("map"), "cache_dir": False}


def _expected_chips(grid):
    return math.ceil(grid.width / CHIP) * math.ceil(grid.height / CHIP)


def _check_frame(gdf, area):
    """What every result must satisfy, empty or not."""
    import geopandas as gpd
    from shapely.geometry import box

    assert isinstance(gdf, gpd.GeoDataFrame)
    assert list(gdf.columns) == RESULT_COLUMNS
    assert gdf.crs is not None and gdf.crs.to_epsg() == 4326
    if len(gdf):
        assert gdf.geometry.is_valid.all()
        assert set(gdf.geometry.geom_type) <= {"Polygon", "MultiPolygon"}
        # polygons stay inside the area's pixel grid (a hair of float slack)
        bounds = box(*area.grid.lonlat_bounds).buffer(1e-9)
        assert gdf.geometry.within(bounds).all()


def _check_attrs(attrs, area, *, vlm: str, sam_kind: str, trained: bool):
    assert attrs["vlm"] == vlm
    assert attrs["sam"].startswith(sam_kind)
    assert attrs["trained"] is trained
    assert ("warning" in attrs) is (not trained)
    assert attrs["zoom"] == area.zoom and attrs["chip_size"] == CHIP
    assert attrs["queries"] == ["park"]
    assert "127.0.0.1" in attrs["satellite"] and "127.0.0.1" in attrs["map"]
    np.testing.assert_allclose(attrs["bounds"], area.grid.lonlat_bounds)


@pytest.mark.parametrize("sam_kind", ["sam2", "sam1"])
def test_real_tiny_models_run_every_chip(sam_kind, tiny_models, tile_server, sf_area, quiet):
    """The real tiny VLM reasons every chip through both stages; whatever it answers, the
    result is a well-formed frame and the attrs describe the run."""
    models = tiny_models[sam_kind]
    reasoner = SocioReasoner.from_pretrained(
        str(models.vlm), str(models.sam), device="cpu", offline=True, trained=False,
        generation=GenerationConfig.greedy(max_new_tokens=32),
    )
    seen = []
    gdf = segment(sf_area, "park", reasoner=reasoner, chip_size=CHIP, batch_size=4,
                  callback=lambda chip, query, pred: seen.append((chip, query, pred)), **_imagery(tile_server))

    _check_frame(gdf, sf_area)
    _check_attrs(gdf.attrs, sf_area, vlm=str(models.vlm), sam_kind=sam_kind, trained=False)
    # both layers were fetched over HTTP, and every chip was reasoned once
    layers = {r.layer for r in tile_server.requests if r.status == 200}
    assert layers == {"sat", "map"}
    assert len(seen) == _expected_chips(sf_area.grid)
    assert len({chip.chip_id for chip, _, _ in seen}) == len(seen)
    for _chip, query, pred in seen:
        assert query == "park"
        # the model answered in its own pixel space: 256 px chips are 252 px for Qwen (factor 28)
        assert pred.model_size == (252, 252) and pred.image_size == (CHIP, CHIP)
        assert isinstance(pred.stage1_text, str) and isinstance(pred.stage2_text, str)
        assert pred.stage1_mask.shape == (252, 252) and pred.mask.shape == (CHIP, CHIP)
    # a polygon, if any, carries the reasoning of a chip the VLM actually answered
    answered = {chip.chip_id: pred.reasoning for chip, _, pred in seen}
    for chip_ids, _reasoning in zip(gdf["chip_id"], gdf["reasoning"]):
        assert set(chip_ids.split(",")) <= set(answered)


def _box_vlm():
    """Stage 1: one box over the middle half of the chip; stage 2: that box and its centre point."""

    def respond(request):
        h, w = np.asarray(request.images[1]).shape[:2]
        box = [w // 4, h // 4, 3 * w // 4, 3 * h // 4]
        if "Please find" in request.text:
            return f'<think>one box</think><answer>[{{"bbox_2d": {box}}}]</answer>'
        return f'<think>one point</think><answer>[{{"bbox_2d": {box}, "points": [[{w // 2}, {h // 2}]]}}]</answer>'

    return ScriptedVLM(respond)


@pytest.mark.parametrize("sam_kind", ["sam2", "sam1"])
def test_real_tiny_sam_masks_become_the_polygons(sam_kind, tiny_models, tile_server, sf_area, quiet):
    """Non-empty path: boxes come from a scripted VLM, masks from the real tiny SAM. The polygons
    must be exactly those masks, georeferenced: total area = masked pixels x pixel area, each
    polygon's area_m2 its geodesic area, each inside a chip it names."""
    from pyproj import Geod
    from shapely.geometry import box

    models = tiny_models[sam_kind]
    vlm = _box_vlm()
    reasoner = SocioReasoner.from_pretrained(vlm, str(models.sam), device="cpu", offline=True, trained=False)
    seen = []
    gdf = segment(sf_area, "park", reasoner=reasoner, chip_size=CHIP, batch_size=3, min_area_m2=0.0,
                  callback=lambda chip, query, pred: seen.append((chip, pred)), **_imagery(tile_server))

    _check_frame(gdf, sf_area)
    _check_attrs(gdf.attrs, sf_area, vlm="scripted-vlm", sam_kind=sam_kind, trained=False)
    assert len(seen) == _expected_chips(sf_area.grid)
    # two VLM calls per batch of 3 chips (stage 1, stage 2)
    assert len(vlm.calls) == 2 * math.ceil(len(seen) / 3)
    masked = sum(int((pred.mask & chip.valid).sum()) for chip, pred in seen)
    assert masked > 0, "the tiny SAM gave no foreground for a box prompt"
    assert len(gdf) > 0

    # every masked pixel became polygon area: Web-Mercator pixel side times cos(latitude)
    lat = (sf_area.grid.lonlat_bounds[1] + sf_area.grid.lonlat_bounds[3]) / 2
    pixel_m = EARTH_CIRCUMFERENCE_M / (256 * 2**sf_area.zoom) * math.cos(math.radians(lat))
    assert gdf["area_m2"].sum() == pytest.approx(masked * pixel_m**2, rel=0.01)

    geod = Geod(ellps="WGS84")
    footprints = {chip.chip_id: box(*chip.grid.lonlat_bounds) for chip, _ in seen}
    for geometry, area_m2, chip_ids, reasoning in zip(gdf.geometry, gdf["area_m2"], gdf["chip_id"], gdf["reasoning"]):
        assert area_m2 == pytest.approx(abs(geod.geometry_area_perimeter(geometry)[0]), rel=0.01)
        ids = chip_ids.split(",")
        assert all(re.fullmatch(r"r\d+_c\d+", i) for i in ids)
        assert any(geometry.intersects(footprints[i]) for i in ids)
        assert "one box" in reasoning and "one point" in reasoning
