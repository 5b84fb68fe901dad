"""Offline means fast: Overpass unreachable by name fails in the first second, not after osmnx's
60-second rate-limit pause."""

from __future__ import annotations

import pytest

from sociogeo.errors import OSMDataError


def test_an_unresolvable_overpass_fails_before_osmnx_waits(monkeypatch):
    import osmnx

    from sociogeo.osm import data

    monkeypatch.setattr(osmnx.settings, "overpass_url", "https://overpass.sociogeo-test.invalid/api")
    waited = []
    monkeypatch.setattr("time.sleep", lambda s: waited.append(s))
    with pytest.raises(OSMDataError, match="does not resolve.*offline.*source="):
        data.load_features((24.94, 60.166, 24.95, 60.17), {"leisure": ["park"]})
    assert waited == []  # osmnx's pause was never reached


def test_long_tag_filters_stay_short_in_messages():
    from sociogeo.osm.data import _tags_text

    tags = {k: ["a" * 10] * 5 for k in ("amenity", "shop", "tourism", "office", "landuse", "leisure", "place")}
    text = _tags_text(tags)
    assert len(text) < 120 and "7 tag keys" in text and "amenity" in text
    assert _tags_text({"leisure": ["park"]}) == "features tagged {'leisure': ['park']}"
