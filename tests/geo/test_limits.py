"""Limits that really limit: the size check measures what gets imaged (the grid over the bounds),
antimeridian-wrapping areas are refused, and no numeric setting can switch a check off by
being 0 or NaN. Every option is checked before a model loads or a tile is fetched."""

from __future__ import annotations

import math

import pytest

from sociogeo.errors import AreaTooLargeError, ConfigError, InvalidAreaError
from sociogeo.geo.area import Area, box_area_km2


def test_a_world_bbox_is_refused_for_its_size():
    with pytest.raises(AreaTooLargeError, match=r"bounding box.*above the limit"):
        Area.from_bbox((-180, -85, 180, 85))


def test_the_box_measure_matches_an_independent_geodesic_area():
    from pyproj import Geod
    from shapely import segmentize
    from shapely.geometry import box

    # edges densified along the parallels: the ellipsoidal area of the lon/lat box
    shape = segmentize(box(24.0, 60.0, 25.0, 60.5), 0.01)
    geodesic = abs(Geod(ellps="WGS84").geometry_area_perimeter(shape)[0]) / 1e6
    # within 1 %: the check uses a sphere, the reference the WGS84 ellipsoid
    assert box_area_km2(24.0, 60.0, 25.0, 60.5) == pytest.approx(geodesic, rel=0.01)


def test_a_polygon_across_the_antimeridian_is_refused_not_allocated():
    thin = {"type": "Polygon", "coordinates": [[[179.99, 0], [-179.99, 0], [-179.99, 0.01], [179.99, 0.01],
                                                 [179.99, 0]]]}
    with pytest.raises(InvalidAreaError, match="antimeridian.*split it"):
        Area.from_geojson(thin, max_area_km2=math.inf)


@pytest.mark.parametrize("limit", [0, -1, math.nan, "lots", True])
def test_a_limit_that_is_not_a_positive_number_is_an_error(limit):
    with pytest.raises(InvalidAreaError, match="max_area_km2 must be a positive number"):
        Area.from_bbox((24.94, 60.16, 24.95, 60.17), max_area_km2=limit)


def test_an_infinite_limit_switches_the_check_off_on_purpose():
    assert Area.from_bbox((0, 0, 10, 10), zoom=5, max_area_km2=math.inf).area_km2 > 1e5


@pytest.mark.parametrize("name,value", [("max_area_km2", 0), ("max_area_km2", math.nan), ("retries", -1),
                                        ("retries", 1.5), ("max_workers", 0), ("timeout_s", 0), ("backoff_s", -1)])
def test_bad_settings_are_refused(name, value):
    import sociogeo

    with pytest.raises(ConfigError, match=f"sociogeo.options.{name} must be"):
        setattr(sociogeo.options, name, value)


def test_a_bad_environment_limit_warns_instead_of_breaking_the_import():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import sociogeo; print(sociogeo.options.max_area_km2)"],
                         capture_output=True, text=True, env={**__import__("os").environ,
                                                               "SOCIOGEO_MAX_AREA_KM2": "nan"}, check=True)
    assert out.stdout.strip() == "25.0" and "SOCIOGEO_MAX_AREA_KM2" in out.stderr


@pytest.mark.parametrize("resolution", [math.inf, math.nan, 0, -2])
def test_a_bad_resolution_is_refused(resolution):
    with pytest.raises(ValueError, match="resolution must be a positive number"):
        Area.from_bbox((24.94, 60.16, 24.95, 60.17), resolution=resolution)


@pytest.mark.parametrize("kwargs,match", [
    ({"min_area_m2": math.nan}, "min_area_m2"), ({"simplify_m": -1}, "simplify_m"), ({"chip_size": 0}, "chip_size"),
    ({"overlap": 900}, "overlap"), ({"batch_size": 0}, "batch_size")])
def test_segment_options_are_checked_before_any_model_or_tile(kwargs, match, monkeypatch):
    from sociogeo.pipeline.run import segment
    from sociogeo.reasoner.model import ReasonerSpec

    monkeypatch.setattr(ReasonerSpec, "load", lambda *a, **k: pytest.fail("no model may load"))
    with pytest.raises(ConfigError, match=match):
        segment((24.94, 60.16, 24.95, 60.17), "park", satellite="http://tiles.sociogeo-test.invalid/{z}/{x}/{y}.png",
                **kwargs)
