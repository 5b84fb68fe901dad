"""The model's pixel space (docs/interface.md) and conversions to and from chip pixels.

Qwen2.5-VL sees each image resized by ``smart_resize`` (sides multiples of 28, at most 768*768
pixels at inference), so a 768 x 768 chip becomes 756 x 756. Every box and point the model reads
or writes is in absolute pixels of that resized image; SAM runs on the same 756 x 756 satellite
image, and the final mask goes back to the chip's size with OpenCV-style nearest-neighbour
sampling (:func:`resize_nearest`), as the released pipeline does.
"""

from __future__ import annotations

import math

import numpy as np

FACTOR = 28
MIN_PIXELS = 56 * 56
MAX_PIXELS = 768 * 768


def smart_resize(
    height: int,
    width: int,
    factor: int = FACTOR,
    min_pixels: int = MIN_PIXELS,
    max_pixels: int = MAX_PIXELS,
) -> tuple[int, int]:
    """Qwen2-VL's resize rule: sides rounded to multiples of ``factor``, area within bounds.

    >>> smart_resize(768, 768)
    (756, 756)
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height} x {width}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio above 200 is not supported, got {height} x {width}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return int(h_bar), int(w_bar)


def model_size(chip_height: int, chip_width: int) -> tuple[int, int]:
    """(height, width) of the model's view of a chip."""
    return smart_resize(chip_height, chip_width)


def resize_image(image: np.ndarray, size: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    """Resize an H x W x C uint8 image (or H x W mask) to ``size`` = (height, width).

    Images use bicubic resampling (as the Qwen2-VL processor does), masks nearest neighbour.
    """
    from PIL import Image

    height, width = size
    if image.shape[0] == height and image.shape[1] == width:
        return image
    if image.dtype == bool:
        pil = Image.fromarray(image.astype(np.uint8) * 255)
        return np.asarray(pil.resize((width, height), Image.Resampling.NEAREST)) > 127
    pil = Image.fromarray(image)
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC
    # np.array, not asarray: a view of PIL's buffer is read-only, which torch warns about
    return np.array(pil.resize((width, height), resample))


def nearest_indices(src: int, dst: int) -> np.ndarray:
    """Source index of each of ``dst`` samples when resizing ``src`` samples the way OpenCV's
    ``INTER_NEAREST`` does: ``floor(x * (1 / (dst / src)))`` in double precision, capped at ``src - 1``.

    This is not the centre-aligned nearest neighbour of PIL (``floor((x + 0.5) * src / dst)``):
    from 756 to 768 pixels, 372 of the 768 indices differ. The double-precision reciprocal is
    kept on purpose; it differs from an exact ``floor(x * src / dst)`` for some sizes.
    """
    if src < 1 or dst < 1:
        raise ValueError(f"sizes must be positive, got {src} -> {dst}")
    inverse = 1.0 / (dst / src)
    return np.minimum(np.floor(np.arange(dst) * inverse).astype(np.intp), src - 1)


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An H x W (x C) array resized to ``size`` = (height, width) as OpenCV's ``INTER_NEAREST``
    would (see :func:`nearest_indices`); any dtype, bool masks included. No OpenCV needed.

    The released pipeline resizes its SAM masks this way: 756 -> 768 for the final mask, and
    768 -> 756 again when it draws the stage-1 mask for stage 2.
    """
    array = np.asarray(array)
    height, width = size
    if array.shape[0] == height and array.shape[1] == width:
        return array
    rows = nearest_indices(array.shape[0], height)
    cols = nearest_indices(array.shape[1], width)
    return array[rows[:, None], cols[None, :]]


def scale_xy(xy, src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """Scale pixel coordinates (..., 2) as (x, y) from an image of ``src_size`` (h, w) to ``dst_size``.

    Coordinates are continuous positions measured from the image's top-left corner, so the
    image's outer edges map onto each other exactly.
    """
    xy = np.asarray(xy, dtype="float64")
    sy = dst_size[0] / src_size[0]
    sx = dst_size[1] / src_size[1]
    return xy * np.array([sx, sy])


def model_to_chip(xy, chip_size: tuple[int, int]) -> np.ndarray:
    """Model-space (756 px) coordinates to chip pixels (e.g. 768 px)."""
    return scale_xy(xy, model_size(*chip_size), chip_size)


def chip_to_model(xy, chip_size: tuple[int, int]) -> np.ndarray:
    """Chip pixel coordinates to the model's space."""
    return scale_xy(xy, chip_size, model_size(*chip_size))


def pixel_to_crs(xy, transform) -> np.ndarray:
    """Pixel coordinates (x=col, y=row; continuous) to the CRS of ``transform`` (an Affine)."""
    xy = np.asarray(xy, dtype="float64")
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    x = a * xy[..., 0] + b * xy[..., 1] + c
    y = d * xy[..., 0] + e * xy[..., 1] + f
    return np.stack([x, y], axis=-1)


def crs_to_pixel(xy, transform) -> np.ndarray:
    """CRS coordinates to continuous pixel coordinates of ``transform``."""
    return pixel_to_crs(xy, ~transform)
