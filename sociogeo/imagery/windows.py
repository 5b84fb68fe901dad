"""Both images of an area read one chip window at a time, so memory does not grow with the area.

:func:`open_windows` gives a reader for an :class:`~sociogeo.imagery.source.ImagerySource` (tiles
through the on-disk cache, your own raster warped onto each window once, or the street map
rendered from OpenStreetMap data per window) or for an :class:`~sociogeo.imagery.pair.ImagePair`
already in memory. ``reader.read(window)`` returns the
window's satellite image, map image and validity mask, exactly as cutting the window out of the
whole area's pair would (padding past the area's edge is zero and invalid).

Decoded tiles are kept in a small least-recently-used cache, so neighbouring chips that share a
tile decode it once; the cache is bounded (``max_tiles``), whatever the area.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..geo.grid import PixelGrid
from .tiles import NODATA, TileFailure, TileFetcher

#: Decoded tiles kept per layer (256 x 256 RGB + mask each: 64 tiles are about 17 MB).
MAX_TILES = 64


@dataclass
class WindowImages:
    """One window of both layers: ``satellite`` and ``map`` H x W x 3 uint8, ``valid`` H x W bool
    (False where a layer has no data, and past the area's edge), ``missing`` the tiles that could
    not be had for it.
    """

    satellite: np.ndarray
    map: np.ndarray
    valid: np.ndarray
    missing: list[TileFailure] = field(default_factory=list)


class _TileLayer:
    """Tiles of one provider pasted into windows, with a bounded cache of decoded tiles."""

    def __init__(self, provider, *, cache_dir, offline, max_tiles: int = MAX_TILES):
        self.fetcher = TileFetcher(provider, cache_dir=cache_dir, offline=offline)
        self.provider = self.fetcher.provider
        self.max_tiles = max_tiles
        self._tiles: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=self.fetcher.max_workers, thread_name_prefix="sociogeo-windows")
        self.n_ok = 0
        self.failures: dict[str, TileFailure] = {}

    def _tile(self, t):
        with self._lock:
            if t in self._tiles:
                self._tiles.move_to_end(t)
                return self._tiles[t]
        result = self.fetcher.get_tile(*t)
        with self._lock:
            if isinstance(result, TileFailure) and result.kind != "missing":
                return result  # a failure that may pass: a chip's retry asks the server again
            self._tiles[t] = result
            while len(self._tiles) > self.max_tiles:
                self._tiles.popitem(last=False)
        return result

    def read(self, window: PixelGrid):
        """``(image, valid, missing)`` of ``window``."""
        image = np.full((window.height, window.width, 3), NODATA, dtype=np.uint8)
        valid = np.zeros(window.shape, dtype=bool)
        missing = []
        tiles = list(window.tiles())
        for t, result in zip(tiles, self._pool.map(self._tile, tiles)):
            name = f"{t[0]}/{t[1]}/{t[2]}"
            if isinstance(result, TileFailure):
                missing.append(result)
                self.failures[name] = result
                continue
            self.failures.pop(name, None)  # it failed before, and came on a retry: not missing
            self.n_ok += 1
            tr, tc, gr, gc = window.tile_placement(t[1], t[2])
            image[gr, gc] = result.rgb[tr, tc]
            valid[gr, gc] = result.valid[tr, tc]
        if missing and self.n_ok == 0 and all(f.kind != "missing" for f in missing):
            # nothing has worked so far and the server is failing: stop now, not after every chip
            raise self.fetcher._all_failed(missing)
        if missing and self.n_ok == 0 and self.fetcher.offline:
            raise self.fetcher._all_failed(missing)
        return image, valid, missing

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.fetcher.close()


class _RasterLayer:
    """Your own raster (:class:`~sociogeo.imagery.raster.RasterSource`) warped onto each window."""

    def __init__(self, raster, *, offline):
        from .raster import RasterReader

        self.reader = RasterReader(raster, offline=offline)
        self.provider = raster
        self.failures: dict = {}

    def read(self, window: PixelGrid):
        image, valid = self.reader.read(window)
        return image, valid, []

    def close(self) -> None:
        self.reader.close()


class _OSMLayer:
    """The street map rendered from OpenStreetMap data, one window at a time; the data is loaded
    once for the whole area and labels are placed for the whole area, so every window shows
    exactly what rendering the whole area at once would.
    """

    def __init__(self, grid: PixelGrid, *, source, landuse: bool):
        from ..osm.render import MapRenderer

        self.renderer = MapRenderer.for_area(grid, source=source, landuse=landuse)

    def read(self, window: PixelGrid):
        image = self.renderer.render(window)
        return image, np.ones(window.shape, dtype=bool), []

    def close(self) -> None:
        pass


class WindowReader:
    """Reads windows of ``grid`` from an :class:`~sociogeo.imagery.source.ImagerySource`.

    Use it as a context manager (it holds an HTTP session and a thread pool), or call
    :meth:`close`. :attr:`attrs` describes the layers (providers, attribution, missing tiles so far)
    in the same keys as :attr:`ImagePair.attrs <sociogeo.imagery.pair.ImagePair.attrs>`.
    """

    def __init__(self, source, grid: PixelGrid):
        self.source = source
        self.grid = grid
        sat_provider, map_provider = source.providers()
        source.check(grid.zoom)
        self._layers = []
        try:
            if source.raster is not None:
                self.satellite = _RasterLayer(source.raster, offline=source.offline)
            else:
                self.satellite = _TileLayer(sat_provider, cache_dir=source.cache_dir, offline=source.offline)
            self._layers.append(self.satellite)
            if map_provider is None:
                self.map = _OSMLayer(grid, source=source.osm_source, landuse=source.osm_landuse)
            else:
                self.map = _TileLayer(map_provider, cache_dir=source.cache_dir, offline=source.offline)
            self._layers.append(self.map)
        except BaseException:
            self.close()
            raise

    def read(self, window: PixelGrid) -> WindowImages:
        """Both layers of ``window`` (a window of :attr:`grid`; it may run past the grid's edge)."""
        inner = _inner(self.grid, window)
        sat = np.zeros((window.height, window.width, 3), dtype=np.uint8)
        mp = np.zeros_like(sat)
        valid = np.zeros(window.shape, dtype=bool)
        missing: list[TileFailure] = []
        if inner is not None:
            rows, cols, part = inner
            sat_image, sat_valid, sat_missing = self.satellite.read(part)
            map_image, map_valid, map_missing = self.map.read(part)
            sat[rows, cols], mp[rows, cols] = sat_image, map_image
            valid[rows, cols] = sat_valid & map_valid
            missing = sat_missing + map_missing
        return WindowImages(sat, mp, valid, missing)

    @property
    def attrs(self) -> dict:
        """Providers, attribution, zoom and the tiles missing so far, as in ``ImagePair.attrs``."""
        sat = self.satellite.provider
        if isinstance(self.map, _TileLayer):
            map_name, map_credit = self.map.provider.name, self.map.provider.attribution
            map_missing = [f.as_dict() for f in self.map.failures.values()]
        else:
            from ..osm.data import ATTRIBUTION

            map_name, map_credit, map_missing = "osm", ATTRIBUTION, []
        return {
            "satellite_provider": sat.name,
            "map_provider": map_name,
            "satellite_attribution": sat.attribution,
            "map_attribution": map_credit,
            "zoom": self.grid.zoom,
            "missing_tiles": {"satellite": [f.as_dict() for f in self.satellite.failures.values()],
                              "map": map_missing},
        }

    def close(self) -> None:
        """Release the HTTP sessions and threads."""
        for layer in self._layers:
            layer.close()
        self._layers = []

    def __enter__(self) -> WindowReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PairReader:
    """Windows cut out of an :class:`~sociogeo.imagery.pair.ImagePair` already in memory."""

    def __init__(self, pair):
        from .arrays import as_rgb

        self.grid = pair.grid
        self._sat = as_rgb(pair.satellite, "satellite")
        # a pair without a map (e.g. only a satellite image to preview) reads as a black map
        self._map = as_rgb(pair.map, "map") if getattr(pair, "map", None) is not None else None
        valid = getattr(pair, "valid", None)
        self._valid = np.ones(self.grid.shape, bool) if valid is None else np.asarray(valid, bool)
        self.attrs = dict(getattr(pair, "attrs", {}) or {})
        shapes = [self._sat.shape[:2]] + ([] if self._map is None else [self._map.shape[:2]])
        if any(shape != self.grid.shape for shape in shapes):
            raise ValueError(f"the images {shapes} must match the grid {self.grid.shape}")

    def read(self, window: PixelGrid) -> WindowImages:
        """The pair's pixels under ``window``, zero and invalid past the grid's edge."""
        sat = np.zeros((window.height, window.width, 3), dtype=np.uint8)
        mp = np.zeros_like(sat)
        valid = np.zeros(window.shape, dtype=bool)
        inner = _inner(self.grid, window)
        if inner is not None:
            rows, cols, part = inner
            r0, c0 = part.row_off - self.grid.row_off, part.col_off - self.grid.col_off
            src = (slice(r0, r0 + part.height), slice(c0, c0 + part.width))
            sat[rows, cols], valid[rows, cols] = self._sat[src], self._valid[src]
            if self._map is not None:
                mp[rows, cols] = self._map[src]
        return WindowImages(sat, mp, valid)

    def close(self) -> None:
        """Nothing to release: the pair stays the caller's."""

    def __enter__(self) -> PairReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_windows(source_or_pair, grid: PixelGrid | None = None):
    """A window reader: :class:`PairReader` for an ImagePair, :class:`WindowReader` for an
    :class:`~sociogeo.imagery.source.ImagerySource` on ``grid``.
    """
    if hasattr(source_or_pair, "satellite") and hasattr(source_or_pair, "grid"):
        return PairReader(source_or_pair)
    if grid is None:
        raise ValueError("open_windows needs the area's grid with an ImagerySource")
    return WindowReader(source_or_pair, grid)


def overview(reader, grid: PixelGrid, max_size: int, *, block: int = 2048):
    """The satellite layer of ``grid`` at most ``max_size`` pixels along its longer side, read
    block by block through ``reader`` (nearest-neighbour sampling): ``(H' x W' x 3 uint8, valid)``.
    Memory holds one block and the small result, whatever the area.
    """
    scale = min(1.0, max_size / max(grid.height, grid.width))
    height, width = max(1, round(grid.height * scale)), max(1, round(grid.width * scale))
    # which source row/column each output pixel samples (its centre, in the grid's pixels)
    src_rows = np.minimum(((np.arange(height) + 0.5) * grid.height / height).astype(np.int64), grid.height - 1)
    src_cols = np.minimum(((np.arange(width) + 0.5) * grid.width / width).astype(np.int64), grid.width - 1)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    valid = np.zeros((height, width), dtype=bool)
    for r0 in range(0, grid.height, block):
        rows = np.flatnonzero((src_rows >= r0) & (src_rows < r0 + block))
        if not len(rows):
            continue
        for c0 in range(0, grid.width, block):
            cols = np.flatnonzero((src_cols >= c0) & (src_cols < c0 + block))
            if not len(cols):
                continue
            window = grid.window(c0, r0, min(block, grid.width - c0), min(block, grid.height - r0))
            part = reader.read(window)
            sub = np.ix_(src_rows[rows] - r0, src_cols[cols] - c0)
            image[np.ix_(rows, cols)] = part.satellite[sub]
            valid[np.ix_(rows, cols)] = part.valid[sub]
    return image, valid


def _inner(grid: PixelGrid, window: PixelGrid):
    """``(rows, cols, part)``: where ``window`` overlaps ``grid`` (slices into the window, and the
    overlap as a grid), or None.
    """
    c0 = max(window.col_off, grid.col_off)
    r0 = max(window.row_off, grid.row_off)
    c1 = min(window.col_off + window.width, grid.col_off + grid.width)
    r1 = min(window.row_off + window.height, grid.row_off + grid.height)
    if c1 <= c0 or r1 <= r0:
        return None
    part = PixelGrid(grid.zoom, c0, r0, c1 - c0, r1 - r0, grid.tile_size)
    rows = slice(r0 - window.row_off, r1 - window.row_off)
    cols = slice(c0 - window.col_off, c1 - window.col_off)
    return rows, cols, part


__all__ = ["MAX_TILES", "PairReader", "WindowImages", "WindowReader", "open_windows", "overview"]
