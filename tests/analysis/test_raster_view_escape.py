"""A raster's name is shown by Leaflet's layer control as HTML: RasterView escapes it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ipyleaflet")

from sociogeo.analysis.raster_view import RasterView  # noqa: E402
from sociogeo.imagery.raster import RasterSource  # noqa: E402

ROTTERDAM_MS = Path(__file__).parents[1] / "data" / "rotterdam_ms.tif"


def test_the_overlay_name_is_escaped():
    view = RasterView(RasterSource(ROTTERDAM_MS, bands=(3, 2, 1), stretch=(0, 800)),
                      name='Satellite (<b onmouseover="x()">city</b>.tif)')
    assert view.layer.name == "Satellite (&lt;b onmouseover=&quot;x()&quot;&gt;city&lt;/b&gt;.tif)"
