"""The one image normaliser: whatever holds an RGB image becomes H x W x 3 uint8.

Every step that takes images from users (chips, the reasoner, SAM, plots, datasets) calls
:func:`as_rgb`, so they all accept the same things and fail with the same message.
"""

from __future__ import annotations

from os import PathLike

import numpy as np

from ..errors import InvalidImageError


def as_rgb(image, what: str = "image", *, gray: bool = False) -> np.ndarray:
    """``image`` as a C-contiguous, writable H x W x 3 uint8 array.

    Parameters
    ----------
    image : array, xarray.DataArray, PIL image or path
        H x W x 3 (or x 4: alpha is dropped) or band-first 3 x H x W (or 4 x H x W, e.g. a
        rioxarray DataArray) uint8 values; a PIL image (converted to RGB); or the path of an
        image file.
    what : str
        How the image is named in error messages (e.g. ``"satellite"``).
    gray : bool
        Accept an H x W single-band image and repeat it into three bands.

    Returns
    -------
    numpy.ndarray
        H x W x 3 uint8 (a copy when the input was read-only or not contiguous).

    Raises
    ------
    InvalidImageError
        When ``image`` is not an 8-bit RGB image; the message gives its shape and dtype.
    """
    array = _to_array(image, what)
    if array.ndim == 2 and gray:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
        array = np.moveaxis(array, 0, -1)  # band-first (rasterio, rioxarray)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise InvalidImageError(
            f"the {what} image must be an H x W x 3 uint8 RGB array, got shape {array.shape}; "
            "convert it with np.asarray(pil_image.convert('RGB'))"
        )
    if array.dtype != np.uint8:
        raise InvalidImageError(
            f"the {what} image must be an H x W x 3 uint8 RGB array (0-255), got dtype {array.dtype}; "
            "scale it first, e.g. np.clip(image * 255, 0, 255).astype(np.uint8) for values in [0, 1]"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InvalidImageError(f"the {what} image is empty (shape {array.shape})")
    # torch warns about (and may write through) read-only buffers such as views of PIL images
    return np.require(array[..., :3], requirements=["C", "W"])


def as_mask(mask) -> np.ndarray:
    """An H x W bool array from a 2-D mask (numpy array, PIL image, DataArray); nonzero = foreground."""
    array = np.asarray(mask)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise InvalidImageError(
            f"a mask must be a 2-D H x W array, got shape {array.shape}; "
            "for an RGB(A) mask pass e.g. mask[..., 0] or mask.any(axis=-1)"
        )
    return array != 0


def _to_array(image, what: str) -> np.ndarray:
    from PIL import Image

    if isinstance(image, (str, PathLike)):
        try:
            with Image.open(image) as opened:
                return np.array(opened.convert("RGB"))
        except (OSError, ValueError) as exc:
            raise InvalidImageError(f"cannot read the {what} image {str(image)!r}: {exc}") from exc
    if isinstance(image, Image.Image):
        return np.array(image.convert("RGB"))
    values = getattr(image, "values", image)  # an xarray DataArray holds its array in .values
    try:
        return np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise InvalidImageError(f"the {what} image is not an array ({type(image).__name__})") from exc


def is_synthetic(tags: dict) -> bool:
    """Whether GeoTIFF tags mark the image as a synthetic stand-in, not imagery (``SYNTHETIC=yes``)."""
    return str(tags.get("SYNTHETIC", "")).strip().lower() in ("yes", "true", "1")


__all__ = ["as_mask", "as_rgb", "is_synthetic"]
