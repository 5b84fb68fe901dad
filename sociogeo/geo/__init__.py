"""Geometry of the problem, with no I/O: Web-Mercator pixel grids, areas of interest, and the
model's pixel space (a 768-px chip is seen as 756 px).
"""

from .area import Area, grid_of
from .grid import PixelGrid

__all__ = ["Area", "PixelGrid", "grid_of"]
