"""Small pieces the interactive maps share."""

from __future__ import annotations


def tile_layer(ipyleaflet, provider, *, name: str):
    """A switchable base layer showing ``provider``'s tiles (upsampled beyond its max zoom);
    ``name`` is shown by Leaflet's layers control as HTML, so escape text that is not yours.
    """
    url = provider.url_template
    # Leaflet fills {s} from a, b, c; other subdomain sets get their first one
    if "{s}" in url and provider.subdomains and tuple(provider.subdomains) != ("a", "b", "c"):
        url = url.replace("{s}", provider.subdomains[0])
    return ipyleaflet.TileLayer(
        url=url, name=name, base=True, attribution=provider.attribution or None,
        min_zoom=provider.min_zoom, max_zoom=24, max_native_zoom=provider.max_zoom,
    )


def placeholder_base(ipyleaflet):
    """A base layer for leafmap to start from (it needs one), to be removed at once: it is never
    fetched (a loopback port nothing listens on).
    """
    return ipyleaflet.TileLayer(url="http://127.0.0.1:9/{z}/{x}/{y}.png", name="none", base=True)
