"""Small pieces the interactive maps share."""

from __future__ import annotations


def placeholder_base(ipyleaflet):
    """A base layer for leafmap to start from (it needs one), to be removed at once: it is never
    fetched (a loopback port nothing listens on).
    """
    return ipyleaflet.TileLayer(url="http://127.0.0.1:9/{z}/{x}/{y}.png", name="none", base=True)
