"""Imagery: the satellite image and the street map of an area, on one Web-Mercator pixel grid.

- :mod:`.source`: :class:`ImagerySource`, where the two layers come from.
- :mod:`.raster`: :class:`RasterSource`, your own imagery (GeoTIFF/COG, URLs, STAC, DataArrays).
- :mod:`.providers`, :mod:`.cache`, :mod:`.tiles`: tile servers, the on-disk tile cache, fetching.
- :mod:`.pair`: :func:`fetch_pair` and :class:`ImagePair` (both images as rioxarray DataArrays).
- :mod:`.geotiff`, :mod:`.preview`: GeoTIFF files and side-by-side previews.
- :mod:`.chips`: model-sized chips of a pair.
- :mod:`.arrays`: :func:`as_rgb`, the one image normaliser.
"""

from .arrays import as_rgb
from .chips import Chip, chip_windows, iter_chips
from .geotiff import GeoTiffWriter, read_geotiff, to_cog, write_array_geotiff, write_geotiff
from .pair import FILENAMES, ImagePair, fetch_pair, to_dataarray
from .preview import side_by_side, write_preview
from .raster import RasterSource, Stretch
from .source import ImagerySource

__all__ = ["FILENAMES", "Chip", "GeoTiffWriter", "ImagePair", "ImagerySource", "RasterSource", "Stretch", "as_rgb",
           "chip_windows", "fetch_pair", "iter_chips", "read_geotiff", "side_by_side", "to_cog", "to_dataarray",
           "write_array_geotiff", "write_geotiff", "write_preview"]
