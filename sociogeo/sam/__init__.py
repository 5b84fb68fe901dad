"""Segment Anything backends behind one interface.

- :class:`~sociogeo.sam.sam2_hf.Sam2Segmenter`: SAM 2 through transformers (default
  ``facebook/sam2-hiera-large``).
- :class:`~sociogeo.sam.sam1.Sam1Segmenter`: SAM v1 checkpoints through ``segment-anything``.
"""

from .base import ImageEmbedding, Prompt, Segmenter, load_sam

__all__ = ["ImageEmbedding", "Prompt", "Segmenter", "load_sam"]
