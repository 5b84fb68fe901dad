"""The reasoner: SocioReasoner's two stages on one chip, exactly as released.

- :mod:`.protocol`: what the VLM is asked and what SAM is given, in one place.
- :mod:`.prompts`, :mod:`.parsing`, :mod:`.render`: the prompt texts, reading answers, the
  stage-2 rendering.
- :mod:`.vlm`, :mod:`.sam`: the model backends behind small interfaces, with loader registries.
- :mod:`.model`: :class:`SocioReasoner` (``from_pretrained``, ``predict``, ``predict_batch``).
- :mod:`.hub`: whether weights are cached or downloadable, answered fast.
"""

from .model import Prediction, SocioReasoner
from .vlm.base import GenerationConfig

__all__ = ["GenerationConfig", "Prediction", "SocioReasoner"]
