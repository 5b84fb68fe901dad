"""Your own raster on the Explorer's map, without a tile server.

A :class:`RasterView` keeps one ipyleaflet ``ImageOverlay`` showing the part of the raster in the
map's current view: when the view changes (the map's ``bounds``), the kernel reads that window
of the raster onto the Web-Mercator grid at the view's zoom (at most :data:`VIEW_MAX_PX` pixels a
side, so a zoomed-out view reads a coarser grid, and a COG answers from its overviews), renders
it to a PNG data URL (transparent where the raster has no data) and sets it as the overlay's
image. The picture travels to the browser through the widget's own comm channel, like every
other widget state: no HTTP server, no port to open, so it works on remote Jupyter (JupyterHub,
Binder, Colab, VS Code over SSH), where a tile server on the kernel's ``localhost`` is not
reachable from the browser. The price is one read per view change instead of per-tile caching.
"""

from __future__ import annotations

import base64
import html
import io
import math

from ..geo.grid import MAX_LATITUDE, PixelGrid, mercator_to_lonlat

#: Longest side of the rendered view, in pixels.
VIEW_MAX_PX = 1024
#: Shown before the browser reports the view: the raster's whole footprint, at most this size.
OVERVIEW_PX = 512


class RasterView:
    """An ImageOverlay named ``name`` showing ``raster`` (a RasterSource) in the map's view."""

    def __init__(self, raster, *, name: str, offline=None):
        from .._optional import require
        from ..imagery.raster import RasterReader

        ipyleaflet = require("ipyleaflet", purpose="the map explorer")
        self.raster = raster
        self.reader = RasterReader(raster, offline=offline)
        self.renders = 0  # how many windows were rendered (tests, and a hint when profiling)
        self.grid = None  # the grid of the picture shown
        # Leaflet's layer control shows names as HTML; a raster's name is a file name or URL
        self.layer = ipyleaflet.ImageOverlay(url=_blank(), bounds=self._footprint_bounds(), name=html.escape(name))
        self.show_all()

    def _footprint_bounds(self):
        west, south, east, north = self.raster.lonlat_bounds()
        return [[south, west], [north, east]]

    def show_all(self) -> None:
        """The raster's whole footprint, at most :data:`OVERVIEW_PX` pixels a side."""
        (south, west), (north, east) = self._footprint_bounds()
        self.render((west, south, east, north), zoom=self.raster.native_zoom(), max_px=OVERVIEW_PX)

    def on_bounds(self, change) -> None:
        """The map's ``bounds`` observer: render the view when the browser reports it."""
        bounds = change.get("new") if isinstance(change, dict) else change
        if not bounds or len(bounds) != 2:
            return
        (south, west), (north, east) = bounds
        zoom = getattr(change.get("owner"), "zoom", None) if isinstance(change, dict) else None
        self.render((west, south, east, north), zoom=round(zoom) if zoom is not None else self.raster.native_zoom())

    def render(self, lonlat_bounds, *, zoom: int, max_px: int = VIEW_MAX_PX) -> bool:
        """Show the raster inside ``(west, south, east, north)`` at ``zoom`` (coarser if the window
        would exceed ``max_px``); False when the view does not touch the raster.
        """
        west, south, east, north = lonlat_bounds
        south, north = max(south, -MAX_LATITUDE), min(north, MAX_LATITUDE)
        west, east = max(west, -180.0), min(east, 180.0)
        (fs, fw), (fn, fe) = self._footprint_bounds()
        west, south, east, north = max(west, fw), max(south, fs), min(east, fe), min(north, fn)
        if west >= east or south >= north:
            return False
        zoom = int(min(max(zoom, 0), self.raster.native_zoom() + 1))  # no point in magnifying further
        grid = PixelGrid.from_lonlat_bounds(west, south, east, north, zoom=zoom)
        while max(grid.width, grid.height) > max_px and zoom > 0:
            zoom -= 1
            grid = PixelGrid.from_lonlat_bounds(west, south, east, north, zoom=zoom)
        image, valid = self.reader.read(grid)
        w, s, e, n = grid.lonlat_bounds
        self.layer.url = png_data_url(image, valid=valid, max_px=max_px)
        self.layer.bounds = [[s, w], [n, e]]
        self.grid = grid
        self.renders += 1
        return True

    def close(self) -> None:
        """Close the raster's files."""
        self.reader.close()


def png_data_url(image, *, valid=None, max_px: int = 512) -> str:
    """A ``data:image/png;base64,...`` URL of an H x W x 3 uint8 image, at most ``max_px`` pixels
    along its longer side; pixels where ``valid`` (H x W bool) is False are transparent.
    """
    import numpy as np
    from PIL import Image

    rgb = np.asarray(image, dtype=np.uint8)
    alpha = (
        np.full(rgb.shape[:2], 255, np.uint8)
        if valid is None
        else np.where(np.asarray(valid, bool), 255, 0).astype(np.uint8)
    )
    picture = Image.fromarray(np.dstack([rgb[..., :3], alpha]), "RGBA")
    picture.thumbnail((max_px, max_px), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    picture.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _union(bounds_list):
    return (min(b[0] for b in bounds_list), min(b[1] for b in bounds_list), max(b[2] for b in bounds_list),
            max(b[3] for b in bounds_list))


def _blank() -> str:
    # a 1 x 1 transparent PNG until the first picture is ready
    return ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
            "60e6kgAAAABJRU5ErkJggg==")


def view_center(raster) -> tuple[float, float]:
    """(lat, lon) of the raster's footprint centre, for the map's first view."""
    left, bottom, right, top = _union(raster.info["bounds"])
    lon, lat = mercator_to_lonlat((left + right) / 2, (bottom + top) / 2)
    return float(lat), float(lon)


def view_zoom(raster, map_px: int = 800) -> int:
    """A map zoom at which the raster's footprint fits in about ``map_px`` screen pixels."""
    left, bottom, right, top = _union(raster.info["bounds"])
    metres = max(right - left, top - bottom)
    world = 2 * math.pi * 6378137.0
    return int(max(1, min(19, math.floor(math.log2(map_px * world / (256 * metres))))))


__all__ = ["OVERVIEW_PX", "VIEW_MAX_PX", "RasterView", "png_data_url", "view_center", "view_zoom"]
