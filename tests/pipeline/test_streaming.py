"""The streaming pipeline gives the polygons of the in-memory mosaic, polygon for polygon.

The reference below is how segment() worked before it streamed: every chip's mask pasted onto
one area-sized mosaic, connected components labelled with scipy (8-connectivity), each label
vectorised. The streaming path never builds that mosaic: it reads imagery per chip window,
vectorises each chip at once and unites polygons that touch across chip borders. Both run the
same content-driven stand-in models on real imagery (a Landsat crop served by a loopback tile
server) and on the OSM-rendered Helsinki sample, with and without chip overlap.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sociogeo.geo import modelspace
from sociogeo.imagery.pair import fetch_pair
from sociogeo.imagery.source import ImagerySource
from sociogeo.pipeline.run import RESULT_COLUMNS, segment
from sociogeo.reasoner import SocioReasoner
from sociogeo.testing.scripted import BlobVLM, BrightnessSegmenter


# -- stand-in models that look at the pixels --------------------------------------------------------
def _reasoner(level: float) -> SocioReasoner:
    return SocioReasoner(BlobVLM(level), BrightnessSegmenter(level))


# -- the in-memory reference ------------------------------------------------------------------------
def mosaic_reference(pair, query, reasoner, *, chip_size, overlap, min_area_m2=0.0):
    """segment() as it was: one mosaic of all chip masks, labelled, vectorised."""
    import geopandas as gpd
    from scipy import ndimage

    from sociogeo.imagery.chips import iter_chips
    from sociogeo.pipeline.vectorize import vectorize

    grid = pair.grid
    mosaic = np.zeros(grid.shape, bool)
    found = []  # (chip_id, window slices, mask, reasoning)
    for chip in iter_chips(pair, size=chip_size, overlap=overlap):
        if not chip.valid.any():
            continue
        pred = reasoner.predict(chip.map, chip.satellite, query)
        w = chip.window
        h, wd = min(w.height, grid.height - w.row_off), min(w.width, grid.width - w.col_off)
        inner = (pred.mask & chip.valid)[:h, :wd]
        if inner.any():
            where = (slice(w.row_off, w.row_off + h), slice(w.col_off, w.col_off + wd))
            mosaic[where] |= inner
            found.append((chip.chip_id, where, inner, pred.reasoning))
    labels, _ = ndimage.label(mosaic, structure=np.ones((3, 3), bool))
    frame = vectorize(labels, grid.transform, grid.crs, min_area_m2=min_area_m2)
    chip_ids, reasoning = [], []
    for lab in frame["label"]:
        members = [(cid, r) for cid, where, inner, r in found if (labels[where][inner] == lab).any()]
        chip_ids.append(",".join(cid for cid, _ in members))
        reasoning.append(members[0][1] if len(members) == 1 else "\n\n".join(f"[{c}] {r}" for c, r in members))
    frame["chip_id"], frame["reasoning"] = chip_ids, reasoning
    frame.insert(0, "query", query)
    return gpd.GeoDataFrame(frame[RESULT_COLUMNS], geometry="geometry", crs="EPSG:4326")


def assert_same_entities(streamed, reference):
    assert len(reference) > 3  # the comparison means something only with several entities
    assert len(streamed) == len(reference)
    assert list(streamed.columns) == RESULT_COLUMNS
    crossing = 0
    for (_, a), (_, b) in zip(streamed.iterrows(), reference.iterrows()):
        assert a["chip_id"] == b["chip_id"] and a["reasoning"] == b["reasoning"] and a["query"] == b["query"]
        # the same point set: differences are floating-point dust, not pixels (a pixel is ~1e-9 deg²)
        assert a.geometry.symmetric_difference(b.geometry).area < 1e-15
        assert a["area_m2"] == pytest.approx(b["area_m2"], rel=1e-6)  # float dust, far below a pixel
        crossing += "," in a["chip_id"]
    assert crossing >= 1  # at least one entity was cut by a chip border and united again


# -- the comparisons --------------------------------------------------------------------------------
@pytest.mark.parametrize("overlap", [0, 24])
def test_streamed_tiles_equal_the_mosaic(tile_server, sf_area, tile_cache_dir, overlap):
    source = ImagerySource(satellite=tile_server.url_template("sat"), map=tile_server.url_template("map"),
                           cache_dir=tile_cache_dir)
    reasoner = _reasoner(level=95)
    pair = fetch_pair(sf_area, imagery=source)
    reference = mosaic_reference(pair, "bright", reasoner, chip_size=96, overlap=overlap)
    streamed = segment(sf_area, "bright", reasoner=reasoner, imagery=source, chip_size=96, overlap=overlap,
                       min_area_m2=0)
    assert_same_entities(streamed, reference)
    # an ImagePair already in memory goes through the same streaming code, windows cut from it
    assert_same_entities(segment(pair, "bright", reasoner=reasoner, chip_size=96, overlap=overlap, min_area_m2=0),
                         reference)


def test_streamed_osm_map_and_synthetic_satellite_equal_the_mosaic(tmp_path):
    """The map rendered per chip window from OSM data equals the whole area's render."""
    from sociogeo.geo.area import Area
    from sociogeo.testing.helsinki import helsinki_pbf, write_rasters
    from sociogeo.testing.tileserver import TileServer

    area = Area.from_bbox((24.940, 60.166, 24.950, 60.171), zoom=16)
    rasters = write_rasters(tmp_path / "rasters", zoom=16)
    with TileServer({"sat": rasters["sat"]}) as server:
        source = ImagerySource(satellite=server.url_template("sat"), map="osm", osm_source=helsinki_pbf(),
                               cache_dir=tmp_path / "cache")
        # the map's dark blobs (POI markers and labels) drive the answers, so a map window that
        # differs from the whole render would change the polygons
        from sociogeo.testing.scripted import BoxSegmenter

        reasoner = SocioReasoner(BlobVLM(150, layer=0, dark=True), BoxSegmenter())
        pair = fetch_pair(area, imagery=source)
        reference = mosaic_reference(pair, "light", reasoner, chip_size=160, overlap=0)
        streamed = segment(area, "light", reasoner=reasoner, imagery=source, chip_size=160, min_area_m2=0)
    assert_same_entities(streamed, reference)


def test_model_space_round_trip_keeps_the_stand_ins_honest():
    # the stand-ins answer in model pixels; check the boxes land where the blobs are
    image = np.zeros((96, 96, 3), np.uint8)
    image[10:30, 40:60] = 255
    vlm = BlobVLM(100)
    m = modelspace.resize_image(image, modelspace.model_size(96, 96))
    answer = vlm.respond(type("R", (), {"images": [m, m], "text": "find"})())
    box = json.loads(answer.split("<answer>")[1].split("</answer>")[0])[0]["bbox_2d"]
    assert abs(box[0] - 40 * 84 / 96) <= 2 and abs(box[3] - 30 * 84 / 96) <= 2
