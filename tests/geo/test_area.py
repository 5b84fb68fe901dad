import json

import geopandas as gpd
import pytest
from shapely.geometry import LineString, Point, Polygon, box, mapping

import sociogeo
from sociogeo import Area
from sociogeo.errors import AreaTooLargeError, InvalidAreaError

HELSINKI = (24.938, 60.166, 24.950, 60.172)


def test_from_bbox_basics():
    a = Area.from_bbox(HELSINKI)
    assert a.zoom == 17 and a.crs == "EPSG:4326"
    assert a.bounds == pytest.approx(HELSINKI)
    assert 0.4 < a.area_km2 < 0.5
    assert a.resolution_m == pytest.approx(1.1943 * 0.4979, rel=1e-3)
    assert "km²" in repr(a)


def test_resolution_picks_zoom():
    a = Area.from_bbox(HELSINKI, resolution=0.3)
    assert a.resolution_m <= 0.3
    assert Area.from_bbox(HELSINKI, zoom=a.zoom - 1).resolution_m > 0.3
    with pytest.raises(InvalidAreaError, match="either zoom or resolution"):
        Area.from_bbox(HELSINKI, zoom=17, resolution=1)


@pytest.mark.parametrize(
    "bbox, match",
    [
        ((24.95, 60.166, 24.938, 60.172), "west .* less than east"),
        ((24.938, 60.172, 24.95, 60.166), "south .* less than north"),
        ((60.166, 24.938, 60.172, 24.95, 1), "four numbers"),
        ((200, 10, 201, 11), "longitude 200.0 is outside"),
        ((10, -95, 11, 0), "latitude -95.0 is outside"),
        ((10, 86, 11, 87), "Web Mercator"),
        ((float("nan"), 1, 2, 3), "non-finite"),
        ("not a bbox", "four numbers"),
    ],
)
def test_invalid_bboxes(bbox, match):
    with pytest.raises(InvalidAreaError, match=match):
        Area.from_bbox(bbox)


def test_invalid_zoom():
    with pytest.raises(InvalidAreaError, match="zoom"):
        Area.from_bbox(HELSINKI, zoom=25)
    with pytest.raises(InvalidAreaError, match="integer"):
        Area.from_bbox(HELSINKI, zoom=16.5)


def test_size_limit_is_configurable():
    big = (24.8, 60.1, 25.1, 60.3)  # ~370 km²
    with pytest.raises(AreaTooLargeError, match="max_area_km2="):
        Area.from_bbox(big)
    assert Area.from_bbox(big, max_area_km2=1000).area_km2 > 300
    with sociogeo.options.context(max_area_km2=1000):
        Area.from_bbox(big)
    assert isinstance(AreaTooLargeError("x"), InvalidAreaError)


def test_from_geojson_variants(tmp_path):
    poly = box(*HELSINKI)
    geom = mapping(poly)
    feature = {"type": "Feature", "properties": {}, "geometry": geom}
    fc = {"type": "FeatureCollection", "features": [feature]}
    path = tmp_path / "a.geojson"
    path.write_text(json.dumps(fc))
    for src in (geom, feature, fc, json.dumps(feature), path, str(path)):
        a = Area.from_geojson(src)
        assert a.geometry.equals(poly)
    with pytest.raises(InvalidAreaError, match="not found"):
        Area.from_geojson(tmp_path / "missing.geojson")
    with pytest.raises(InvalidAreaError, match="no geometries"):
        Area.from_geojson({"type": "FeatureCollection", "features": []})
    with pytest.raises(InvalidAreaError, match="Polygon or MultiPolygon"):
        Area.from_geojson(mapping(Point(24.94, 60.17)))
    with pytest.raises(InvalidAreaError, match="malformed"):
        Area.from_geojson("{not json")


def test_from_geometry_reprojects():
    poly_utm = gpd.GeoSeries([box(*HELSINKI)], crs="EPSG:4326").to_crs("EPSG:3067").iloc[0]
    a = Area.from_geometry(poly_utm, crs="EPSG:3067")
    assert a.bounds == pytest.approx(HELSINKI, abs=2e-4)
    with pytest.raises(InvalidAreaError, match="buffer"):
        Area.from_geometry(LineString([(0, 0), (1, 1)]))
    with pytest.raises(InvalidAreaError, match="empty"):
        Area.from_geometry(Polygon())
    bowtie = Polygon([(24.94, 60.166), (24.95, 60.172), (24.95, 60.166), (24.94, 60.172)])
    assert Area.from_geometry(bowtie).geometry.is_valid


def test_from_geodataframe():
    gdf = gpd.GeoDataFrame(geometry=[box(24.938, 60.166, 24.944, 60.172), box(24.944, 60.166, 24.95, 60.172)],
                           crs="EPSG:4326")
    a = Area.from_geodataframe(gdf.to_crs("EPSG:3857"))
    assert a.bounds == pytest.approx(HELSINKI, abs=1e-6)
    with pytest.raises(InvalidAreaError, match="no CRS"):
        Area.from_geodataframe(gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)]))
    with pytest.raises(InvalidAreaError, match="empty"):
        Area.from_geodataframe(gdf.iloc[:0])


def test_from_leafmap_uses_drawn_shape():
    class FakeMap:  # the two attributes leafmap's Map exposes for drawings
        user_roi = None
        draw_features = []

    m = FakeMap()
    with pytest.raises(InvalidAreaError, match="draw"):
        Area.from_leafmap(m)
    m.draw_features = [{"type": "Feature", "geometry": mapping(box(*HELSINKI)), "properties": {}}]
    assert Area.from_leafmap(m).bounds == pytest.approx(HELSINKI)


def test_area_grid_matches_bounds():
    a = Area.from_bbox(HELSINKI)
    g = a.grid
    gw, gs, ge, gn = g.lonlat_bounds
    assert gw <= HELSINKI[0] and ge >= HELSINKI[2]
    assert g.zoom == 17 and g.width > 1000
