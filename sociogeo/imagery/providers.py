"""XYZ tile providers: named xyzservices providers, their objects, or plain URL templates.

``resolve_provider`` turns any of these into a :class:`TileProvider`, the one description the
fetcher, the cache and the GeoTIFF writer share (URL per tile, attribution, zoom limits and a
stable cache key).
"""

from __future__ import annotations

import difflib
import hashlib
import re
import string
from dataclasses import dataclass

from ..errors import ProviderError

# xyzservices leaves max_zoom unset for several imagery layers (Esri.WorldImagery among them);
# they serve at least zoom 19 over cities, which is what urban segmentation needs.
DEFAULT_MAX_ZOOM = 19
TEMPLATE_MAX_ZOOM = 22
_FIELDS = {"z", "x", "y", "-y", "s", "r"}
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class TileProvider:
    """Where the tiles of one layer come from.

    ``url_template`` holds ``{z}``, ``{x}``, ``{y}`` (or ``{-y}`` for TMS row order) and optionally
    ``{s}`` (one of ``subdomains``) and ``{r}`` (retina suffix, always empty here: sociogeo fetches
    ``tile_size`` pixel tiles).
    """

    name: str
    url_template: str
    attribution: str = ""
    max_zoom: int = DEFAULT_MAX_ZOOM
    min_zoom: int = 0
    tile_size: int = 256
    subdomains: tuple[str, ...] = ()
    #: True when the tiles are a synthetic stand-in (not imagery): pictures made from them say so
    synthetic: bool = False

    def url(self, z: int, x: int, y: int) -> str:
        """The URL of tile (z, x, y); subdomains rotate deterministically to spread load."""
        self.check_zoom(z)
        fields = {"z": z, "x": x, "y": y, "-y": 2**z - 1 - y, "r": ""}
        if self.subdomains:
            fields["s"] = self.subdomains[(x + y) % len(self.subdomains)]
        # str.format cannot take a field called "-y", so substitute by hand
        return re.sub(r"\{(-?\w+)\}", lambda m: str(fields[m.group(1)]), self.url_template)

    @property
    def host(self) -> str:
        """The host the tiles come from (``""`` for a URL without one)."""
        from urllib.parse import urlsplit

        return urlsplit(self.url_template).hostname or ""

    @property
    def served_here(self) -> bool:
        """Whether the tiles come from this machine (a loopback address): what a browser may be
        sent to offline.
        """
        return self.host in _LOOPBACK_HOSTS

    @property
    def key(self) -> str:
        """A stable, filesystem-safe cache key: the name plus a hash of the URL template.

        The hash keeps two layers that share a name (e.g. two local servers) apart in the cache.
        """
        digest = hashlib.sha1(self.url_template.encode()).hexdigest()[:10]
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.name).strip("._") or "tiles"
        return f"{safe}-{digest}"

    def check_zoom(self, zoom: int) -> None:
        """Raise :class:`ProviderError` if ``zoom`` is outside what this provider serves."""
        if not self.min_zoom <= zoom <= self.max_zoom:
            raise ProviderError(
                f"{self.name} serves zoom {self.min_zoom} to {self.max_zoom}, but zoom {zoom} was "
                f"requested; choose a zoom of at most {self.max_zoom} (e.g. Area.from_bbox(..., "
                f"zoom={min(max(zoom, self.min_zoom), self.max_zoom)}))"
            )

    def __str__(self) -> str:
        return self.name


def resolve_provider(
    spec,
    *,
    name: str | None = None,
    attribution: str | None = None,
    max_zoom: int | None = None,
) -> TileProvider:
    """A :class:`TileProvider` from a name, an xyzservices provider, a URL template or a provider.

    ``spec`` may be an xyzservices name (``"Esri.WorldImagery"``, ``"OpenStreetMap.Mapnik"``),
    an ``xyzservices.TileProvider``, or a URL template such as
    ``"https://tiles.example.org/{z}/{x}/{y}.png"``. Keyword arguments override what the spec says.
    """
    if isinstance(spec, TileProvider):
        provider = spec
    elif _is_xyzservices_provider(spec):
        provider = _from_xyzservices(spec)
    elif isinstance(spec, str) and "{" in spec:
        provider = _from_template(spec)
    elif isinstance(spec, str):
        provider = _from_xyzservices(_lookup_name(spec))
    else:
        raise ProviderError(
            f"cannot use a {type(spec).__name__} as a tile provider; pass an xyzservices name such as "
            "'Esri.WorldImagery', an xyzservices.TileProvider, or a URL template with {z}/{x}/{y}"
        )
    changes = {"name": name, "attribution": attribution, "max_zoom": max_zoom}
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes:
        from dataclasses import replace

        provider = replace(provider, **changes)
    return provider


def _is_xyzservices_provider(spec) -> bool:
    try:
        import xyzservices
    except ImportError:
        return False
    return isinstance(spec, xyzservices.TileProvider)


def _lookup_name(name: str):
    import xyzservices.providers as xyz

    try:
        return xyz.query_name(name)
    except ValueError:
        pass
    known = list(xyz.flatten())
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
    if not close:
        # a case-insensitive substring match catches "WorldImagery" or "mapnik"
        close = [k for k in known if name.lower().replace(" ", "") in k.lower()][:5]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ProviderError(
        f"unknown tile provider {name!r}.{hint} Use an xyzservices name (see "
        "xyzservices.providers.flatten()) or a URL template with {z}/{x}/{y}."
    )


def _from_xyzservices(p) -> TileProvider:
    if p.requires_token():
        raise ProviderError(
            f"{p.name} needs an API key; pass the provider with its key filled in, e.g. "
            f"xyzservices.providers.{p.name}(apikey='...') (the field name is in its URL: {p.url})"
        )
    # build_url fills every provider-specific field ({variant}, {ext}, ...) and drops {r}
    template = p.build_url(fill_subdomain=False)
    names = _check_template(template)
    return TileProvider(
        name=p.name,
        url_template=template,
        attribution=p.get("attribution", ""),
        max_zoom=int(p.get("max_zoom", DEFAULT_MAX_ZOOM)),
        min_zoom=int(p.get("min_zoom", 0)),
        subdomains=tuple(p.get("subdomains", "abc")) if "s" in names else (),
    )


def _from_template(template: str) -> TileProvider:
    names = _check_template(template)
    # name it after host and fixed path ("127.0.0.1:8000/sat"), for messages
    fixed = re.sub(r"^https?://", "", template.split("{")[0]).rstrip("/.") or template
    return TileProvider(
        name=fixed,
        url_template=template,
        subdomains=("a", "b", "c") if "s" in names else (),
        # the server's real limit is unknown; let it answer for deep zooms
        max_zoom=TEMPLATE_MAX_ZOOM,
    )


def _check_template(template: str) -> set[str]:
    """The placeholders of a URL template, or a :class:`ProviderError` saying what is wrong."""
    if not re.match(r"^https?://", template):
        raise ProviderError(
            f"tile URL template must start with http:// or https://, got {template!r}"
        )
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ProviderError(f"malformed tile URL template {template!r}: {exc}") from None
    unknown = names - _FIELDS
    if unknown:
        raise ProviderError(
            f"tile URL template {template!r} has unknown placeholder(s) "
            f"{', '.join('{' + u + '}' for u in sorted(unknown))}; only {{z}}, {{x}}, {{y}} (or {{-y}}), "
            "{s} and {r} are filled in. Fill API keys and variants into the string first."
        )
    missing = [f for f in ("z", "x") if f not in names]
    if not ({"y", "-y"} & names):
        missing.append("y")
    if missing:
        raise ProviderError(
            f"tile URL template {template!r} lacks {', '.join('{' + m + '}' for m in missing)}; "
            "it needs {z}, {x} and {y}, e.g. https://tiles.example.org/{z}/{x}/{y}.png"
        )
    return names
