"""segment() on your own imagery, end to end and offline: the real Rotterdam raster as the
satellite layer, the map rendered from an OSM file, content-driven stand-in models, and the entity
mask written as a cloud-optimised GeoTIFF from the chip store. The mask is checked against the
result's polygons rasterised independently, and against the bright pixels of rasterio's own warp
of the raster (what the stand-in models segment)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROTTERDAM_BBOX, ROTTERDAM_MS

from sociogeo.errors import ConfigError
from sociogeo.imagery.raster import RasterSource
from sociogeo.pipeline.run import segment
from sociogeo.reasoner import SocioReasoner
from sociogeo.testing.scripted import BlobVLM, BrightnessSegmenter

RGB = (3, 2, 1)
LEVEL = 80.0  # brightness (0-255 after the 0-800 stretch) of what the stand-ins find: roofs, roads, paths
HIGH = 800.0


def _reasoner() -> SocioReasoner:
    return SocioReasoner(BlobVLM(LEVEL), BrightnessSegmenter(LEVEL))


@pytest.mark.parametrize("overlap", [0, 64])
def test_segment_a_raster_and_write_the_entity_mask(overlap, rotterdam_osm, reference_warp, tmp_path):
    import rasterio
    from rasterio.features import rasterize
    from rio_cogeo.cogeo import cog_validate

    out, mask_path = tmp_path / "found.gpkg", tmp_path / "found_mask.tif"
    gdf = segment(ROTTERDAM_BBOX, ["bright roof", "road"], reasoner=_reasoner(),
                  satellite=RasterSource(ROTTERDAM_MS, bands=RGB, stretch=(0, HIGH)), map="osm",
                  osm_source=rotterdam_osm, offline=True, chip_size=256, overlap=overlap, min_area_m2=0,
                  out=out, mask_out=mask_path)
    assert len(gdf) > 0 and set(gdf["query"]) == {"bright roof", "road"}
    assert gdf.attrs["zoom"] == 17 and gdf.attrs["satellite"] == "rotterdam_ms.tif"
    assert "SpaceNet 6" in gdf.attrs["attribution"] and "OpenStreetMap" in gdf.attrs["attribution"]
    assert gdf.attrs["mask"] == str(mask_path)

    assert cog_validate(str(mask_path))[0]
    with rasterio.open(mask_path) as src:
        assert src.count == 2 and src.descriptions == ("bright roof", "road") and src.dtypes[0] == "uint8"
        assert src.crs.to_epsg() == 3857 and src.overviews(1)
        mask = src.read(1).astype(bool)
        np.testing.assert_array_equal(src.read(1), src.read(2))  # the stand-ins answer every query alike
        transform, shape = src.transform, src.shape
    from sociogeo.geo.area import Area

    grid = Area.from_bbox(ROTTERDAM_BBOX, zoom=17).grid
    assert shape == grid.shape and transform.almost_equals(grid.transform, precision=1e-6)

    # the vector result, rasterised by rasterio on its own: the same pixels
    polygons = gdf[gdf["query"] == "bright roof"].to_crs(3857).geometry
    burnt = rasterize(((g, 1) for g in polygons), out_shape=shape, transform=transform).astype(bool)
    agree = (burnt == mask).mean()
    assert agree > 0.995, agree

    # what the stand-ins segment: the bright pixels of the raster warped by rasterio directly
    values = reference_warp(ROTTERDAM_MS, grid, RGB, resampling="bilinear")
    bright = np.clip(values / HIGH * 255, 0, 255).mean(axis=0) > LEVEL
    iou = (bright & mask).sum() / (bright | mask).sum()
    assert 0.02 < mask.mean() < 0.6
    # not 1.0: the stand-ins see the chip resized to the model's 252 px and their mask comes back
    # with the release's OpenCV-nearest resize (floor sampling), which moves thin roads by a pixel
    assert iou > 0.78, iou


def test_mask_out_must_be_a_geotiff_and_is_checked_first(tmp_path):
    with pytest.raises(ConfigError, match=r"\.tif.*--mask-out"):
        segment(ROTTERDAM_BBOX, "roof", reasoner=_reasoner(), satellite=str(ROTTERDAM_MS),
                mask_out=tmp_path / "mask.png")
    assert not any(tmp_path.iterdir())
