"""Tile provider resolution: xyzservices names and objects, URL templates, zoom limits, cache keys."""

from __future__ import annotations

import pytest
import xyzservices.providers as xyz

from sociogeo.errors import ProviderError
from sociogeo.imagery.providers import TileProvider, resolve_provider


def test_named_providers_resolve_to_their_urls_and_attribution():
    esri = resolve_provider("Esri.WorldImagery")
    assert esri.name == "Esri.WorldImagery"
    assert esri.url(17, 20971, 50657) == (
        "https://server.arcgisonline.com/ArcGIS/rest/services/World_Imagery/MapServer/tile/17/50657/20971"
    )
    assert "Esri" in esri.attribution
    osm = resolve_provider("OpenStreetMap.Mapnik")
    assert osm.url(17, 20971, 50657) == "https://tile.openstreetmap.org/17/20971/50657.png"
    assert "OpenStreetMap" in osm.attribution
    assert osm.max_zoom == 19


def test_xyzservices_object_and_case_insensitive_name_match_the_canonical_name():
    by_object = resolve_provider(xyz.OpenStreetMap.Mapnik)
    by_loose_name = resolve_provider("openstreetmap mapnik")
    assert by_object == resolve_provider("OpenStreetMap.Mapnik") == by_loose_name


def test_url_template_fills_subdomains_tms_rows_and_drops_retina_suffix():
    p = resolve_provider("https://{s}.tiles.example.org/base/{z}/{x}/{-y}{r}.png")
    assert p.subdomains == ("a", "b", "c")
    url = p.url(3, 1, 2)
    # TMS counts rows from the south: row 2 of 8 at zoom 3 is TMS row 5
    assert url.endswith("/base/3/1/5.png")
    assert url.split(".")[0] in {"https://a", "https://b", "https://c"}
    # the subdomain choice is deterministic (same tile -> same host, so HTTP caches work)
    assert p.url(3, 1, 2) == url
    assert {p.url(3, x, 0).split(".")[0] for x in range(6)} == {"https://a", "https://b", "https://c"}


def test_unknown_name_lists_close_matches():
    with pytest.raises(ProviderError, match="Esri.WorldImagery") as info:
        resolve_provider("Esri.WorldImagry")
    assert "unknown tile provider 'Esri.WorldImagry'" in str(info.value)
    with pytest.raises(ProviderError, match="OpenStreetMap.Mapnik"):
        resolve_provider("Mapnik")


@pytest.mark.parametrize(
    "template, complaint",
    [
        ("ftp://tiles.example.org/{z}/{x}/{y}.png", "http"),
        ("https://tiles.example.org/{z}/{x}.png", "lacks {y}"),
        ("https://tiles.example.org/{x}/{y}.png", "lacks {z}"),
        ("https://tiles.example.org/{z}/{x}/{y}.png?key={apikey}", "{apikey}"),
        ("https://tiles.example.org/{z/{x}/{y}.png", "malformed"),
    ],
)
def test_bad_templates_say_what_is_wrong(template, complaint):
    with pytest.raises(ProviderError) as info:
        resolve_provider(template)
    assert complaint in str(info.value)


def test_providers_needing_a_key_ask_for_it_and_use_it_once_given():
    import xyzservices

    keyed = xyzservices.TileProvider(
        name="Example.Keyed", url="https://tiles.example.org/{z}/{x}/{y}.png?key={apikey}",
        attribution="(C) Example", apikey="<insert your api key here>",
    )
    with pytest.raises(ProviderError, match="API key.*apikey"):
        resolve_provider(keyed)
    p = resolve_provider(keyed(apikey="s3cret"))
    assert p.url(1, 0, 1) == "https://tiles.example.org/1/0/1.png?key=s3cret"


def test_non_provider_types_are_rejected():
    with pytest.raises(ProviderError, match="int"):
        resolve_provider(42)


def test_zoom_above_the_provider_limit_is_a_clear_error():
    osm = resolve_provider("OpenStreetMap.Mapnik")
    osm.check_zoom(19)
    with pytest.raises(ProviderError, match="zoom 0 to 19.*zoom 20"):
        osm.url(20, 0, 0)
    capped = resolve_provider("https://t.example.org/{z}/{x}/{y}.png", max_zoom=12)
    with pytest.raises(ProviderError, match="at most 12"):
        capped.check_zoom(13)


def test_cache_keys_are_stable_filesystem_safe_and_distinct():
    a = resolve_provider("http://127.0.0.1:8000/sat/{z}/{x}/{y}.png")
    b = resolve_provider("http://127.0.0.1:8000/map/{z}/{x}/{y}.png")
    c = resolve_provider("http://127.0.0.1:8001/sat/{z}/{x}/{y}.png")
    assert len({a.key, b.key, c.key}) == 3
    assert a.key == resolve_provider("http://127.0.0.1:8000/sat/{z}/{x}/{y}.png").key
    for p in (a, b, c, resolve_provider("Esri.WorldImagery")):
        assert all(ch.isalnum() or ch in "._-" for ch in p.key), p.key


def test_overrides_and_passthrough():
    p = resolve_provider("http://127.0.0.1:9/x/{z}/{x}/{y}.png", name="local", attribution="(C) me")
    assert (p.name, p.attribution) == ("local", "(C) me")
    assert resolve_provider(p) is p
    assert isinstance(p, TileProvider)
