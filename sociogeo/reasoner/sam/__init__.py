"""Segment Anything backends behind one interface.

- :class:`~sociogeo.reasoner.sam.sam2_hf.Sam2Segmenter`: SAM 2 through transformers (default
  ``facebook/sam2-hiera-large``).
- :class:`~sociogeo.reasoner.sam.sam1.Sam1Segmenter`: SAM v1 checkpoints through ``segment-anything``.
"""

from .base import ImageEmbedding, Prompt, Segmenter
from .registry import SamLoader, load_sam, register_sam, sam_kind

__all__ = ["ImageEmbedding", "Prompt", "Segmenter", "SamLoader", "load_sam", "register_sam", "sam_kind"]
