"""Vision-language model backends: one small interface, several engines.

- :class:`~sociogeo.reasoner.vlm.transformers_backend.TransformersVLM`: Qwen2.5-VL in this process.
- :class:`~sociogeo.reasoner.vlm.openai_backend.OpenAIVLM`: any OpenAI-compatible server (vLLM,
  ``transformers serve``), for scaling beyond one process.
"""

from .base import GenerationConfig, VLMBackend, VLMRequest
from .registry import VLMLoader, load_vlm, register_vlm, vlm_kind

__all__ = ["GenerationConfig", "VLMBackend", "VLMRequest", "VLMLoader", "load_vlm", "register_vlm", "vlm_kind"]
