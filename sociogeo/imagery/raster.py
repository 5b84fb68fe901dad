"""Your own imagery as the satellite layer: GeoTIFF/COG files and URLs, mosaics, STAC items, DataArrays.

A :class:`RasterSource` describes one raster layer, whatever holds it:

- a local GeoTIFF / COG (any CRS, any dtype, any number of bands);
- an ``http(s)://`` or ``s3://`` URL of a cloud-optimised GeoTIFF, read through GDAL's virtual
  file systems (``/vsicurl/``, ``/vsis3/``): only the blocks under each window are requested,
  the file is never downloaded whole;
- a list of such files or URLs: a mosaic (where files overlap, the first one listed wins);
- a STAC Item, an ItemCollection, a ``pystac_client`` search, a STAC Item dict or the path/URL
  of a STAC Item JSON file: the visual/RGB asset of each item (see :func:`stac_hrefs`);
- an ``xarray.DataArray`` with a CRS (rioxarray's ``.rio.crs``): ``(band, y, x)`` or ``(y, x)``.

Reading (:class:`RasterReader`) warps the raster onto a window of the Web-Mercator pixel grid
once per window (``rasterio.warp.reproject`` of just that window; ``resampling`` bilinear by
default, which suits imagery; ``"nearest"`` keeps the source's values), keeps the source's
nodata, internal masks, alpha and NaN as invalid pixels, picks three bands and scales them to
uint8 with one :class:`Stretch` for every window:

- ``stretch="auto"`` (default): 8-bit data is used as it is (an orthophoto is already display-
  ready, and stretching would change the colours the model learnt from); any other dtype gets
  the percentile stretch;
- ``stretch="percentile"``: per band, ``percentiles`` (2 and 98 by default) of the valid pixels
  map to 0 and 255; they are computed once per source from a decimated read (the overviews of a
  COG, at most :data:`STATS_SIZE` pixels a side), so every window and every run of the same
  source uses the same stretch;
- ``stretch=(low, high)``: a fixed value range for all bands (or one ``(low, high)`` pair per
  band) maps to 0-255.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import urljoin, urlparse

import numpy as np

from ..errors import ConfigError, DatasetNotFoundError, InvalidImageError, OfflineError
from .arrays import is_synthetic

#: File name endings recognised as rasters when given as ``satellite=``.
RASTER_SUFFIXES = (".tif", ".tiff", ".gtiff", ".vrt", ".jp2", ".img", ".cog")
#: Pixels along the longer side of the decimated read that percentiles are computed from.
STATS_SIZE = 1024
#: Default percentiles of the percentile stretch.
PERCENTILES = (2.0, 98.0)
#: Resampling methods accepted (rasterio.enums.Resampling names).
RESAMPLING = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode")
#: GDAL settings for remote files: no directory listing on open (one request fewer per file,
#: and none for sidecar files that do not exist), merged range requests, a block cache.
GDAL_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "VSI_CACHE": "TRUE",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
}
_STAC_COLOURS = ("red", "green", "blue")


class Stretch:
    """How raster values become 0-255 (see the module docstring).

    ``Stretch.parse(value)`` accepts ``"auto"``, ``"percentile"``, ``"none"`` (values clipped to
    0-255 as they are), a ``(low, high)`` pair or a list of per-band pairs, or a Stretch.
    """

    def __init__(self, kind: str = "auto", ranges=None, percentiles=PERCENTILES):
        if kind not in ("auto", "percentile", "fixed", "none"):
            raise ConfigError(f"stretch must be 'auto', 'percentile', 'none' or a (low, high) range, got {kind!r}")
        low, high = (float(v) for v in percentiles)
        if not 0 <= low < high <= 100:
            raise ConfigError(f"percentiles must be two numbers 0 <= low < high <= 100, got {percentiles!r}")
        self.kind = kind
        self.ranges = ranges
        self.percentiles = (low, high)

    @classmethod
    def parse(cls, value, percentiles=PERCENTILES) -> Stretch:
        """A Stretch from the forms listed in the class docstring."""
        if isinstance(value, Stretch):
            return value
        if value is None:
            return cls("none", percentiles=percentiles)
        if isinstance(value, str):
            return cls(value.strip().lower(), percentiles=percentiles)
        try:
            pairs = np.asarray(value, dtype="float64")
        except (TypeError, ValueError):
            pairs = None
        if pairs is None or pairs.shape[-1:] != (2,) or pairs.ndim not in (1, 2) or not np.isfinite(pairs).all():
            raise ConfigError(f"stretch must be 'auto', 'percentile', 'none', a (low, high) range or one such "
                              f"pair per band, got {value!r}")
        if np.any(pairs[..., 1] <= pairs[..., 0]):
            raise ConfigError(f"a stretch range needs low < high, got {value!r}")
        return cls("fixed", ranges=pairs.reshape(-1, 2), percentiles=percentiles)

    def describe(self) -> str:
        """A short, stable description (for metadata and the chip store's manifest)."""
        if self.kind == "fixed":
            return "fixed " + ",".join(f"{lo:g}-{hi:g}" for lo, hi in self.ranges)
        if self.kind == "percentile":
            return f"percentile {self.percentiles[0]:g}-{self.percentiles[1]:g}"
        return self.kind

    def __repr__(self) -> str:
        return f"Stretch({self.describe()!r})"


class RasterSource:
    """A raster (or a mosaic of rasters) used as the satellite layer; see the module docstring.

    Parameters
    ----------
    source : path, URL, list, STAC object or xarray.DataArray
        What holds the imagery (module docstring).
    bands : sequence of int, optional
        The three 1-based band indexes shown as red, green and blue (one index: grey). Default:
        the bands whose colour interpretation is red, green and blue, else the STAC asset's
        ``eo:bands`` common names, else bands 1, 2, 3 (band 1 as grey for one- or two-band data).
    stretch : str, (low, high), list of pairs or Stretch
        How values become 0-255: ``"auto"`` (default), ``"percentile"``, ``"none"`` or a fixed
        range (module docstring).
    percentiles : (float, float)
        The percentiles of the percentile stretch (default 2 and 98).
    nodata : float, optional
        A value to treat as missing, when the file does not declare one (e.g. 0 around a scene).
    resampling : str
        How the raster is warped onto the grid: ``"bilinear"`` (default), ``"nearest"``,
        ``"cubic"``, ``"average"``, ... (rasterio's Resampling names).
    asset : str, optional
        With STAC input: the asset key to read instead of the automatic choice.
    name, attribution : str, optional
        How the layer is named and credited in results (default: the file name; the file's
        copyright/attribution tag).
    """

    def __init__(  # noqa: PLR0913 (each option is a keyword a user sets on its own)
        self,
        source,
        *,
        bands: Sequence[int] | None = None,
        stretch="auto",
        percentiles=PERCENTILES,
        nodata: float | None = None,
        resampling: str = "bilinear",
        asset: str | None = None,
        name: str | None = None,
        attribution: str | None = None,
    ):
        self.stretch = Stretch.parse(stretch, percentiles)
        if resampling not in RESAMPLING:
            raise ConfigError(f"resampling must be one of {', '.join(RESAMPLING)}, got {resampling!r}")
        self.resampling = resampling
        self.nodata = None if nodata is None else float(nodata)
        self.data = None  # an in-memory DataArray, or None for files
        self.paths: list[str] = []  # GDAL paths (local files, /vsicurl/, /vsis3/)
        stac_bands, stac_name = None, None
        if _is_dataarray(source):
            self.data = _check_dataarray(source)
            default_name = f"DataArray {source.name or ''}".strip()
        else:
            hrefs, stac_bands, stac_name = _hrefs(source, asset)
            self.paths = [gdal_path(h) for h in hrefs]
            default_name = stac_name or (PurePosixPath(urlparse(str(hrefs[0])).path).name if len(hrefs) == 1
                                         else f"mosaic of {len(hrefs)} rasters")
        self.bands = _check_bands(bands) if bands is not None else stac_bands
        self.name = name or default_name
        self._attribution = attribution
        self._info = None
        self._ranges = None
        self._lock = threading.Lock()
        self.warned_for: set = set()  # (zoom, bounds) of areas already warned about (ResolutionWarning)

    # -- description ----------------------------------------------------------------------------
    @property
    def remote(self) -> bool:
        """True when any file is read over the network (``/vsicurl/``, ``/vsis3/``, ...)."""
        return any(p.startswith("/vsi") and not p.startswith("/vsimem/") for p in self.paths)

    @property
    def synthetic(self) -> bool:
        """True when the first file is tagged ``SYNTHETIC=yes`` (a stand-in, not imagery)."""
        return bool(self.info.get("synthetic", False))

    @property
    def attribution(self) -> str:
        """The credit line: given, else the first file's copyright or ATTRIBUTION tag, else ''."""
        if self._attribution is None:
            self._attribution = self.info["attribution"]
        return self._attribution

    def describe(self) -> str:
        """A stable one-line description (metadata, the chip store's manifest)."""
        what = self.name if self.data is not None else ";".join(_display_path(p) for p in self.paths)
        parts = [f"raster:{what}", f"stretch={self.stretch.describe()}", f"resampling={self.resampling}"]
        if self.bands:
            parts.append("bands=" + ",".join(map(str, self.bands)))
        if self.nodata is not None:
            parts.append(f"nodata={self.nodata:g}")
        return " ".join(parts)

    def __str__(self) -> str:
        return self.describe()

    def __repr__(self) -> str:
        return f"RasterSource({self.describe()!r})"

    def __getstate__(self):  # the lock stays behind when pickled (Ray); stats travel along
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def check_zoom(self, zoom: int) -> None:
        """Every zoom works with a raster (it is warped); this only checks that the files open."""
        self.info  # noqa: B018 (opening the files is the check)

    # -- metadata ------------------------------------------------------------------------------
    @property
    def info(self) -> dict:
        """What the files say: band count, dtype, band choice, EPSG:3857 bounds per file, native
        ground resolution (m/px) and its latitude, attribution. Opened once, then cached.
        """
        with self._lock:
            if self._info is None:
                self._info = self._data_info() if self.data is not None else self._file_info()
            return self._info

    def _file_info(self) -> dict:
        import rasterio
        from rasterio.warp import transform_bounds

        files = []
        with rasterio.Env(**GDAL_OPTIONS):
            for path in self.paths:
                with _open(path) as src:
                    if src.crs is None:
                        raise InvalidImageError(
                            f"the raster {_display_path(path)} has no CRS; sociogeo needs georeferenced imagery "
                            "(assign one, e.g. with `gdal_edit.py -a_srs EPSG:XXXX`)"
                        )
                    files.append({
                        "count": src.count, "dtype": src.dtypes[0], "crs": src.crs,
                        "bounds": transform_bounds(src.crs, "EPSG:3857", *src.bounds, densify_pts=21),
                        "colorinterp": [c.name for c in src.colorinterp],
                        "res": _ground_resolution(src.crs, src.transform, src.width, src.height),
                        "tags": src.tags(),
                    })
        first = files[0]
        counts = {f["count"] for f in files}
        if len(counts) > 1:
            raise InvalidImageError(f"the rasters of a mosaic must have the same bands, got counts {sorted(counts)}")
        tags = first["tags"]
        attribution = tags.get("ATTRIBUTION") or tags.get("TIFFTAG_COPYRIGHT") or ""
        return {"count": first["count"], "dtype": first["dtype"], "bounds": [f["bounds"] for f in files],
                "bands": self._choose_bands(first["count"], first["colorinterp"]),
                "resolution_m": float(np.median([f["res"][0] for f in files])), "latitude": first["res"][1],
                "attribution": attribution,
                "synthetic": is_synthetic(tags)}

    def _data_info(self) -> dict:
        from rasterio.warp import transform_bounds

        da = self.data
        count = da.shape[0] if da.ndim == 3 else 1
        crs, transform = da.rio.crs, da.rio.transform()
        height, width = da.shape[-2:]
        left, top = _xy(transform, 0, 0)
        right, bottom = _xy(transform, width, height)
        bounds = transform_bounds(crs, "EPSG:3857", min(left, right), min(top, bottom), max(left, right),
                                  max(top, bottom), densify_pts=21)
        res, lat = _ground_resolution(crs, transform, width, height)
        return {"count": count, "dtype": str(da.dtype), "bounds": [bounds],
                "bands": self._choose_bands(count, []), "resolution_m": res, "latitude": lat,
                "attribution": str(da.attrs.get("attribution", "")), "synthetic": bool(da.attrs.get("synthetic"))}

    def _choose_bands(self, count: int, colorinterp: list[str]) -> tuple[int, int, int]:
        if self.bands is not None:
            bad = [b for b in self.bands if not 1 <= b <= count]
            if bad:
                raise ConfigError(f"bands {list(self.bands)} do not exist: {self.name} has {count} band(s), "
                                  "numbered from 1")
            return tuple(self.bands) if len(self.bands) == 3 else (self.bands[0],) * 3
        if all(c in colorinterp for c in _STAC_COLOURS):
            return tuple(colorinterp.index(c) + 1 for c in _STAC_COLOURS)
        return (1, 2, 3) if count >= 3 else (1, 1, 1)

    @property
    def resolution_m(self) -> float:
        """The raster's native ground resolution in metres per pixel (at its centre)."""
        return self.info["resolution_m"]

    def native_zoom(self, lat: float | None = None) -> int:
        """The zoom whose ground resolution at ``lat`` (default: the raster's centre) is nearest
        (in ratio) to the raster's own.
        """
        from ..geo.grid import MAX_ZOOM, ground_resolution

        lat = self.info["latitude"] if lat is None else lat
        zoom = round(math.log2(ground_resolution(0, lat) / self.resolution_m))
        return int(min(max(zoom, 0), MAX_ZOOM))

    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees of all files together."""
        from ..geo.grid import mercator_to_lonlat

        boxes = self.info["bounds"]
        left, bottom = min(b[0] for b in boxes), min(b[1] for b in boxes)
        right, top = max(b[2] for b in boxes), max(b[3] for b in boxes)
        (west, east), (south, north) = mercator_to_lonlat([left, right], [bottom, top])
        return float(west), float(south), float(east), float(north)

    def covers(self, bounds_3857) -> bool:
        """Whether any file overlaps ``(left, bottom, right, top)`` in EPSG:3857 metres."""
        return any(_overlaps(b, bounds_3857) for b in self.info["bounds"])

    # -- the stretch ------------------------------------------------------------------------------
    def value_ranges(self) -> np.ndarray:
        """3 x 2 float64: the (low, high) of each shown band that maps to (0, 255); computed once."""
        info = self.info
        with self._lock:
            if self._ranges is None:
                self._ranges = self._compute_ranges(info)
            return self._ranges

    def _compute_ranges(self, info: dict) -> np.ndarray:
        stretch = self.stretch
        kind = stretch.kind
        if kind == "auto":
            kind = "none" if info["dtype"] == "uint8" else "percentile"
        if kind == "none":
            return np.tile([0.0, 255.0], (3, 1))
        if kind == "fixed":
            ranges = stretch.ranges
            return np.tile(ranges[0], (3, 1)) if len(ranges) == 1 else _per_band(ranges, self.name)
        sample = self._sample(info)  # 3 x N valid values
        if sample.shape[1] == 0:
            raise InvalidImageError(f"{self.name} has no valid pixel to compute a stretch from; give a fixed "
                                    "range (stretch=(low, high), --satellite-range LOW HIGH)")
        ranges = np.percentile(sample, stretch.percentiles, axis=1).T
        flat = ranges[:, 1] <= ranges[:, 0]
        ranges[flat, 1] = ranges[flat, 0] + 1.0  # a constant band stays constant instead of dividing by 0
        return ranges

    def _sample(self, info: dict) -> np.ndarray:
        """The shown bands' valid values from a decimated read (overviews where there are any)."""
        bands = info["bands"]
        if self.data is not None:
            da = self.data
            step = max(1, math.ceil(max(da.shape[-2:]) / STATS_SIZE))
            values = np.asarray(da.values if da.ndim == 3 else da.values[None], dtype="float64")[:, ::step, ::step]
            values = values[[b - 1 for b in bands]]
            valid = np.isfinite(values).all(axis=0)
            if self.nodata is not None or _da_nodata(da) is not None:
                nodata = self.nodata if self.nodata is not None else _da_nodata(da)
                valid &= ~(values == nodata).all(axis=0)
            return values[:, valid]
        import rasterio
        from rasterio.enums import Resampling

        samples = []
        per_file = max(64, STATS_SIZE // max(1, int(math.sqrt(len(self.paths)))))
        with rasterio.Env(**GDAL_OPTIONS):
            for path in self.paths[:16]:  # a mosaic's stretch from its first files
                with _open(path) as src:
                    scale = min(1.0, per_file / max(src.width, src.height))
                    shape = (max(1, round(src.height * scale)), max(1, round(src.width * scale)))
                    data = src.read(list(bands), out_shape=(3, *shape), masked=True, resampling=Resampling.nearest)
                    values = np.ma.filled(data.astype("float64"), np.nan)
                    if self.nodata is not None:
                        values[:, (values == self.nodata).all(axis=0)] = np.nan
                    valid = np.isfinite(values).all(axis=0)
                    samples.append(values[:, valid])
        return np.concatenate(samples, axis=1)


# -- reading windows ---------------------------------------------------------------------------------
class RasterReader:
    """Reads windows of the Web-Mercator pixel grid from a :class:`RasterSource`.

    Files are opened once (and kept open) and read through GDAL, block by block as the windows
    need them. ``read(window)`` gives ``(H x W x 3 uint8, H x W bool valid)``. Use it as a context
    manager, or call :meth:`close`. Safe to call from several threads (reads are serialised).
    ``offline`` (None: ``sociogeo.options.offline``) refuses remote files.
    """

    def __init__(self, source: RasterSource, *, offline: bool | None = None):
        from ..options import options

        offline = options.offline if offline is None else offline
        if offline and source.remote:
            remote = next(_display_path(p) for p in source.paths if p.startswith("/vsi"))
            raise OfflineError(f"the satellite raster {remote} is on the network and offline mode is on; "
                               "download it first and pass the local file, or drop offline=True (--offline)")
        self.source = source
        self.provider = source  # what WindowReader.attrs names and credits
        self.bands = list(source.info["bands"])
        self.ranges = source.value_ranges()
        self._lock = threading.Lock()
        self._datasets = []
        if source.data is None:
            import rasterio

            with rasterio.Env(**GDAL_OPTIONS):
                try:
                    for path in source.paths:
                        self._datasets.append(_open(path))
                except BaseException:
                    self.close()
                    raise

    def read(self, window):
        """``(image, valid)`` of a :class:`~sociogeo.geo.grid.PixelGrid` window: the raster warped
        onto the window's pixels, three bands stretched to H x W x 3 uint8, and H x W bool
        (False where the raster has no data: nodata, masks, NaN, outside its footprint).
        """
        with self._lock:
            values = self.warp(window)
        valid = np.isfinite(values).all(axis=0)
        return to_uint8(values, self.ranges, valid), valid

    def warp(self, window) -> np.ndarray:
        """3 x H x W float32: the shown bands warped onto ``window`` (NaN where invalid), first
        file first where a mosaic's files overlap.
        """
        out = np.full((3, window.height, window.width), np.nan, dtype=np.float32)
        bounds = window.bounds
        if self.source.data is not None:
            if _overlaps(self.source.info["bounds"][0], bounds):
                _warp_dataarray(self.source, self.bands, window, out)
            return out
        import rasterio

        with rasterio.Env(**GDAL_OPTIONS):
            for src, file_bounds in zip(self._datasets, self.source.info["bounds"]):
                if not _overlaps(file_bounds, bounds):
                    continue
                part = np.full_like(out, np.nan)
                _warp_file(src, self.bands, window, part, self.source.resampling, self.source.nodata)
                fill = ~np.isfinite(out).all(axis=0) & np.isfinite(part).all(axis=0)
                out[:, fill] = part[:, fill]
                if np.isfinite(out).all():
                    break
        return out

    def close(self) -> None:
        """Close the files."""
        for src in self._datasets:
            src.close()
        self._datasets = []

    def __enter__(self) -> RasterReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def to_uint8(values: np.ndarray, ranges: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """3 x H x W values to H x W x 3 uint8: band ``i``'s ``ranges[i]`` (low, high) maps to 0-255
    linearly, clipped; invalid pixels are 0.
    """
    low = ranges[:, 0, None, None]
    span = (ranges[:, 1] - ranges[:, 0])[:, None, None]
    with np.errstate(invalid="ignore"):
        scaled = np.clip((values - low) / span * 255.0, 0, 255)
    scaled = np.where(valid[None], scaled, 0)
    return np.ascontiguousarray(np.moveaxis(np.rint(scaled).astype(np.uint8), 0, -1))


def _warp_file(src, bands, window, out, resampling: str, nodata) -> None:
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    reproject(
        rasterio.band(src, bands), out, dst_transform=window.transform, dst_crs=window.crs,
        dst_nodata=np.nan, src_nodata=nodata if nodata is not None else src.nodata,
        resampling=Resampling[resampling], init_dest_nodata=True,
    )


def _warp_dataarray(source: RasterSource, bands, window, out) -> None:
    """Warp the part of an in-memory DataArray under ``window`` (only that slice is read, so a
    dask-backed array computes only what the window needs).
    """
    from rasterio.enums import Resampling
    from rasterio.warp import reproject, transform_bounds
    from rasterio.windows import Window, from_bounds

    da = source.data
    crs, transform = da.rio.crs, da.rio.transform()
    height, width = da.shape[-2:]
    left, bottom, right, top = transform_bounds(window.crs, crs, *window.bounds, densify_pts=21)
    win = from_bounds(left, bottom, right, top, transform=transform)
    pad = 2  # resampling kernels reach past the window's edge
    c0, r0 = max(0, math.floor(min(win.col_off, win.col_off + win.width)) - pad), \
        max(0, math.floor(min(win.row_off, win.row_off + win.height)) - pad)
    c1, r1 = min(width, math.ceil(max(win.col_off, win.col_off + win.width)) + pad), \
        min(height, math.ceil(max(win.row_off, win.row_off + win.height)) + pad)
    if c1 <= c0 or r1 <= r0:
        return
    index = [b - 1 for b in bands]
    part = da.isel({da.dims[-2]: slice(r0, r1), da.dims[-1]: slice(c0, c1)})
    values = np.asarray(part.values if da.ndim == 3 else part.values[None], dtype=np.float32)[index]
    nodata = source.nodata if source.nodata is not None else _da_nodata(da)
    if nodata is not None:
        values[:, (values == np.float32(nodata)).all(axis=0)] = np.nan
    from rasterio.windows import transform as window_transform

    reproject(
        values, out, src_transform=window_transform(Window(c0, r0, c1 - c0, r1 - r0), transform), src_crs=crs,
        src_nodata=np.nan, dst_transform=window.transform, dst_crs=window.crs, dst_nodata=np.nan,
        resampling=Resampling[source.resampling], init_dest_nodata=True,
    )


# -- recognising and opening sources ---------------------------------------------------------------
def is_raster(value) -> bool:
    """Whether ``satellite=value`` names a raster rather than a tile provider (module docstring).

    Strings with ``{z}``/``{x}`` are tile templates and other strings without a raster ending
    that are not existing files are provider names.
    """
    if isinstance(value, RasterSource) or _is_dataarray(value) or _is_stac_object(value):
        return True
    if isinstance(value, os.PathLike):
        return True
    if isinstance(value, dict):
        return value.get("type") in ("Feature", "FeatureCollection") and ("assets" in value or "features" in value)
    if isinstance(value, (list, tuple)):
        return bool(value) and all(isinstance(v, (str, os.PathLike)) and is_raster(v) for v in value)
    if not isinstance(value, str):
        return False
    text = value.strip()
    if any(key in text for key in ("{z}", "{x}", "{y}", "{-y}")):
        return False
    lower = text.lower().split("?")[0]
    if lower.startswith(("http://", "https://", "s3://", "gs://", "az://", "/vsi")):
        return True
    return lower.endswith((*RASTER_SUFFIXES, ".json")) or Path(text).expanduser().is_file()


def as_raster(value) -> RasterSource:
    """``value`` as a :class:`RasterSource` (a RasterSource is kept as it is)."""
    return value if isinstance(value, RasterSource) else RasterSource(value)


def gdal_path(href) -> str:
    """The path GDAL opens for a file name or URL: ``http(s)://`` becomes ``/vsicurl/...``,
    ``s3://bucket/key`` ``/vsis3/bucket/key`` (likewise ``gs://``, ``az://``); local paths are
    expanded.
    """
    text = str(href)
    schemes = {"http://": "/vsicurl/", "https://": "/vsicurl/", "s3://": "/vsis3/", "gs://": "/vsigs/",
               "az://": "/vsiaz/"}
    for scheme, prefix in schemes.items():
        if text.lower().startswith(scheme):
            return (prefix + text) if prefix == "/vsicurl/" else prefix + text[len(scheme):]
    if text.startswith("/vsi"):
        return text
    return str(Path(text).expanduser())


def _display_path(path: str) -> str:
    return path[len("/vsicurl/"):] if path.startswith("/vsicurl/") else path


def _open(path: str):
    import rasterio
    from rasterio.errors import RasterioIOError

    if not path.startswith("/vsi") and not Path(path).exists():
        raise DatasetNotFoundError(f"satellite raster not found: {path}; pass an existing GeoTIFF/COG file, a URL or "
                                   "a STAC item (satellite=..., --satellite)")
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        raise DatasetNotFoundError(f"cannot open the satellite raster {_display_path(path)}: {exc}") from exc


def _hrefs(source, asset):
    """``(hrefs, bands from STAC or None, a name or None)`` of a file/URL/list/STAC source."""
    if _is_stac_object(source) or isinstance(source, dict):
        return stac_hrefs(source, asset=asset)
    if isinstance(source, (list, tuple)):
        if not source:
            raise ConfigError("an empty list is not a mosaic: give at least one raster file or URL")
        return [str(v) for v in source], None, None
    text = str(source)
    if text.lower().split("?")[0].endswith(".json"):
        return stac_hrefs(_load_json(text), asset=asset, base=text)
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError(f"cannot use a {type(source).__name__} as a satellite raster; give a GeoTIFF/COG path or "
                          "URL, a list of them, a STAC Item or an xarray.DataArray with a CRS")
    return [text], None, None


def stac_hrefs(stac, *, asset: str | None = None, base: str | None = None):
    """``(hrefs, bands, name)`` of the imagery asset of each STAC item in ``stac``.

    ``stac`` is a pystac Item / ItemCollection, a pystac_client search, or a STAC Item /
    FeatureCollection dict. The asset is ``asset`` when given, else the one keyed ``visual``,
    else one with the ``visual`` role, else a GeoTIFF whose ``eo:bands`` include red, green and
    blue (``bands`` then follows their order), else the only GeoTIFF asset. Relative hrefs are
    resolved against ``base`` (the JSON file's path or URL).
    """
    items = _stac_items(stac)
    if not items:
        raise ConfigError("the STAC search or collection holds no item")
    hrefs, chosen_bands = [], None
    for item in items:
        key, found = _pick_asset(item, asset)
        href = found["href"]
        if base is not None and not urlparse(href).scheme and not os.path.isabs(href):
            href = urljoin(base, href) if urlparse(base).scheme else str(Path(base).expanduser().parent / href)
        hrefs.append(href)
        if chosen_bands is None:
            chosen_bands = _stac_band_order(found)
    name = items[0].get("id") if len(items) == 1 else f"{len(items)} STAC items"
    return hrefs, chosen_bands, name


def _stac_items(stac) -> list[dict]:
    """Item dicts (absolute hrefs where pystac knows them) from pystac objects or dicts."""
    if isinstance(stac, dict):
        if stac.get("type") == "FeatureCollection":
            return [f for f in stac.get("features", []) if isinstance(f, dict)]
        if stac.get("type") == "Feature":
            return [stac]
        raise ConfigError("a STAC dict must be an Item (type Feature) or an ItemCollection (FeatureCollection)")
    if hasattr(stac, "item_collection") and not hasattr(stac, "assets"):  # pystac_client ItemSearch
        stac = stac.item_collection()
    if hasattr(stac, "assets"):  # a pystac Item
        return [_item_dict(stac)]
    if hasattr(stac, "items") and not isinstance(stac, dict):  # ItemCollection
        items = stac.items() if callable(stac.items) else stac.items
        return [_item_dict(i) for i in items]
    raise ConfigError(f"cannot read STAC items from a {type(stac).__name__}")


def _item_dict(item) -> dict:
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    for key, asset in item.assets.items():
        data["assets"][key]["href"] = asset.get_absolute_href() or asset.href
    return data


def _pick_asset(item: dict, asset: str | None):
    assets = item.get("assets") or {}
    if asset is not None:
        if asset not in assets:
            raise ConfigError(f"STAC item {item.get('id')!r} has no asset {asset!r}; its assets: "
                              f"{', '.join(assets) or 'none'}")
        return asset, assets[asset]
    if "visual" in assets:
        return "visual", assets["visual"]
    for key, found in assets.items():
        if "visual" in (found.get("roles") or []):
            return key, found
    tiffs = {k: a for k, a in assets.items() if _is_geotiff(a)}
    for key, found in tiffs.items():
        if _stac_band_order(found) is not None:
            return key, found
    if len(tiffs) == 1:
        return next(iter(tiffs.items()))
    raise ConfigError(
        f"cannot tell which asset of STAC item {item.get('id')!r} is the RGB image (assets: "
        f"{', '.join(assets) or 'none'}); choose one with RasterSource(item, asset='...')"
    )


def _is_geotiff(asset: dict) -> bool:
    media = str(asset.get("type", "")).lower()
    href = str(asset.get("href", "")).lower().split("?")[0]
    return "geotiff" in media or "image/tiff" in media or href.endswith((".tif", ".tiff"))


def _stac_band_order(asset: dict):
    """1-based (red, green, blue) band indexes from an asset's ``eo:bands`` (STAC 1.0) or
    ``bands`` (STAC 1.1) common names, or None.
    """
    bands = asset.get("eo:bands") or asset.get("bands") or []
    names = [str(b.get("common_name") or b.get("eo:common_name") or "").lower() for b in bands
             if isinstance(b, dict)]
    if all(c in names for c in _STAC_COLOURS):
        return tuple(names.index(c) + 1 for c in _STAC_COLOURS)
    return None


def _load_json(location: str) -> dict:
    if urlparse(location).scheme in ("http", "https"):
        import requests

        try:
            response = requests.get(location, timeout=30)
            response.raise_for_status()
            return response.json()
        except (requests.RequestException, ValueError) as exc:
            raise DatasetNotFoundError(f"cannot read the STAC item {location}: {exc}") from exc
    path = Path(location).expanduser()
    if not path.is_file():
        raise DatasetNotFoundError(f"STAC item file not found: {path} (satellite=..., --satellite)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc


def _is_stac_object(value) -> bool:
    return type(value).__module__.split(".")[0] in ("pystac", "pystac_client")


def _is_dataarray(value) -> bool:
    return type(value).__name__ == "DataArray" and hasattr(value, "dims")


def _check_dataarray(da):
    import rioxarray  # noqa: F401 (registers the .rio accessor)

    if da.ndim not in (2, 3):
        raise InvalidImageError(f"a satellite DataArray must be (band, y, x) or (y, x), got dims {da.dims}")
    if da.rio.crs is None:
        raise InvalidImageError("the satellite DataArray has no CRS; set one with da.rio.write_crs('EPSG:...')")
    return da


def _da_nodata(da):
    value = da.rio.nodata if da.rio.nodata is not None else da.rio.encoded_nodata
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _check_bands(bands) -> tuple[int, ...]:
    try:
        values = tuple(int(b) for b in bands)
    except (TypeError, ValueError):
        raise ConfigError(f"bands must be 1-based band numbers, e.g. (3, 2, 1), got {bands!r}") from None
    if len(values) not in (1, 3) or any(b < 1 for b in values):
        raise ConfigError(f"bands must be three 1-based band numbers (red, green, blue) or one (grey), got {bands!r}")
    return values


def _per_band(ranges: np.ndarray, name: str) -> np.ndarray:
    if len(ranges) != 3:
        raise ConfigError(f"give one (low, high) stretch range, or three (one per shown band) for {name}; "
                          f"got {len(ranges)}")
    return ranges


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _xy(transform, col: float, row: float) -> tuple[float, float]:
    """Pixel (col, row) to CRS coordinates through an affine transform."""
    return (transform.a * col + transform.b * row + transform.c, transform.d * col + transform.e * row + transform.f)


def _ground_resolution(crs, transform, width: int, height: int) -> tuple[float, float]:
    """``(metres per pixel on the ground, latitude)`` at a raster's centre, measured geodesically
    (the geometric mean of a pixel's width and height), whatever the CRS's units.
    """
    from pyproj import Geod, Transformer

    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    col, row = width / 2, height / 2
    (x0, y0), (x1, y1), (x2, y2) = (_xy(transform, col, row), _xy(transform, col + 1, row),
                                    _xy(transform, col, row + 1))
    lons, lats = to_lonlat.transform([x0, x1, x2], [y0, y1, y2])
    geod = Geod(ellps="WGS84")
    _, _, dx = geod.inv(lons[0], lats[0], lons[1], lats[1])
    _, _, dy = geod.inv(lons[0], lats[0], lons[2], lats[2])
    if not (dx > 0 and dy > 0):
        raise InvalidImageError("cannot measure the raster's pixel size; is its georeferencing right?")
    return math.sqrt(dx * dy), float(lats[0])


__all__ = ["PERCENTILES", "RASTER_SUFFIXES", "RasterReader", "RasterSource", "STATS_SIZE", "Stretch", "as_raster",
           "gdal_path", "is_raster", "stac_hrefs", "to_uint8"]
