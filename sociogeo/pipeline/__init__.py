"""The pipeline: an area and a query in, a GeoDataFrame of entities out.

- :mod:`.run`: :func:`segment` (prepare, run chips, merge, describe).
- :mod:`.store`: per-chip results on disk, for resuming.
- :mod:`.merge`: chip masks back on the area's grid; entities across chip borders united.
- :mod:`.vectorize`: masks to georeferenced polygons.
- :mod:`.results`: result files (GeoPackage, GeoJSON, GeoParquet) with a metadata sidecar.
"""

from .results import read_result, write_result
from .run import RESULT_COLUMNS, empty_result, segment
from .vectorize import vectorize

__all__ = ["RESULT_COLUMNS", "empty_result", "read_result", "segment", "vectorize", "write_result"]
