"""Vision-language model backends: one small interface, several engines.

- :class:`~sociogeo.vlm.transformers_backend.TransformersVLM`: Qwen2.5-VL in this process.
- :class:`~sociogeo.vlm.openai_backend.OpenAIVLM`: any OpenAI-compatible server (vLLM,
  ``transformers serve``), for scaling beyond one process.
"""

from .base import GenerationConfig, VLMBackend, VLMRequest, load_vlm

__all__ = ["GenerationConfig", "VLMBackend", "VLMRequest", "load_vlm"]
