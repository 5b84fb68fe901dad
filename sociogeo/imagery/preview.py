"""Side-by-side previews of the satellite and map images (nodata painted magenta)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PREVIEW_MAX_SIZE = 1024  # pixels, per image, along the longer side
_GAP_PX = 8
_INVALID_RGB = (255, 0, 255)  # previews paint nodata magenta so gaps are never mistaken for imagery


def side_by_side(sat: np.ndarray, sat_valid, map_image: np.ndarray, map_valid, *, max_size: int = PREVIEW_MAX_SIZE):
    """A PIL image: satellite (H x W x 3) left, map right, nodata painted magenta, each downscaled
    to at most ``max_size`` pixels along its longer side.
    """
    from PIL import Image

    panels = []
    for image, valid in ((sat, sat_valid), (map_image, map_valid)):
        rgb = np.array(image, dtype=np.uint8)
        if valid is not None:
            rgb[~np.asarray(valid, dtype=bool)] = _INVALID_RGB
        panel = Image.fromarray(rgb, "RGB")
        panel.thumbnail((max_size, max_size), Image.Resampling.BILINEAR)
        panels.append(panel)
    w = sum(p.width for p in panels) + _GAP_PX
    h = max(p.height for p in panels)
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    canvas.paste(panels[0], (0, 0))
    canvas.paste(panels[1], (panels[0].width + _GAP_PX, 0))
    return canvas


def write_preview(satellite_tif, map_tif, path, *, max_size: int = PREVIEW_MAX_SIZE) -> Path:
    """A side-by-side PNG from two GeoTIFFs, read at reduced resolution (memory stays small)."""
    import rasterio

    arrays = []
    for tif in (satellite_tif, map_tif):
        with rasterio.open(tif) as src:
            scale = min(1.0, max_size / max(src.width, src.height))
            shape = (max(1, round(src.height * scale)), max(1, round(src.width * scale)))
            image = np.moveaxis(src.read([1, 2, 3], out_shape=(3, *shape)), 0, -1)
            valid = src.dataset_mask(out_shape=shape) > 0
        arrays += [image, valid]
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    side_by_side(*arrays, max_size=max_size).save(path, format="PNG")
    return path
