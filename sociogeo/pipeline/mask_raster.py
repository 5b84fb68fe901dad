"""The entity mask of a run as a raster, written window by window from the chip store.

:func:`write_entity_mask` writes one uint8 band per query on the area's Web-Mercator grid: 1
where the model found the query, 0 elsewhere (band descriptions name the queries). It is built
from the packed chip masks the store keeps (``mask``, ``mask_height``, ``mask_width`` at the
chip's ``col_off``/``row_off`` in the area's grid), read one part file at a time and pasted chip
by chip into a tiled GeoTIFF, then copied as a cloud-optimised GeoTIFF: memory holds one part's
masks and GDAL's block cache, never an area-sized array. Chips that overlap are OR-ed. The mask
is the models' raw output: polygons dropped by ``min_area_m2`` afterwards are still in it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .store import ChipStore, unpack_mask

MASK_SUFFIXES = (".tif", ".tiff")
_COLUMNS = ["query", "chip_id", "col_off", "row_off", "mask", "mask_height", "mask_width"]


def check_mask_path(path) -> Path:
    """``path`` as a Path ending in .tif/.tiff whose folder can be made; ConfigError otherwise."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in MASK_SUFFIXES:
        raise ConfigError(f"the entity mask is a GeoTIFF: give a .tif path (mask_out=, --mask-out), got {path}")
    return path


def write_entity_mask(store: ChipStore, grid, queries: list[str], path, *, cog: bool = True) -> Path:
    """Write the stored chip masks of ``queries`` on ``grid`` (a PixelGrid) to ``path``.

    One uint8 band per query (1 = entity), EPSG:3857, tiled and deflate-compressed; a
    cloud-optimised GeoTIFF with nearest-neighbour overviews when ``cog`` (the default). Returns
    the path; the file appears only once complete.
    """
    import rasterio
    from rasterio.windows import Window

    from ..imagery.geotiff import to_cog

    path = check_mask_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    band_of = {q: i + 1 for i, q in enumerate(queries)}
    tmp = path.with_name(f".{path.name}.part")
    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": len(queries),
               "dtype": "uint8", "crs": grid.crs, "transform": grid.transform, "tiled": True, "blockxsize": 256,
               "blockysize": 256, "compress": "deflate", "BIGTIFF": "IF_SAFER", "nodata": None}
    seen: set = set()
    try:
        with rasterio.Env(GDAL_CACHEMAX=64), rasterio.open(tmp, "w+", **profile) as dst:
            for band, query in enumerate(queries, start=1):
                dst.set_band_description(band, query)
            for part in store.parts():
                for row in _read_part(part):
                    key = (row["query"], row["chip_id"])
                    band = band_of.get(row["query"])
                    if band is None or key in seen or not row["mask_height"] or not row["mask_width"]:
                        continue
                    seen.add(key)
                    mask = unpack_mask(row["mask"], row["mask_height"], row["mask_width"])
                    if not mask.any():
                        continue
                    window = Window(int(row["col_off"]), int(row["row_off"]), mask.shape[1], mask.shape[0])
                    current = dst.read(band, window=window)
                    dst.write(np.maximum(current, mask.astype(np.uint8)), band, window=window)
            dst.update_tags(QUERIES=",".join(queries), ZOOM=str(grid.zoom))
        if cog:
            to_cog(tmp, path, resampling="nearest")
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _read_part(part: Path):
    """The rows of one part file, mask columns only (no geometry is decoded)."""
    import pyarrow.parquet as pq

    table = pq.read_table(part, columns=_COLUMNS)
    return table.to_pylist()


__all__ = ["check_mask_path", "write_entity_mask"]
