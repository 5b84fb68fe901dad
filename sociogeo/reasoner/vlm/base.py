"""The interface every VLM backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings. The default is greedy (reproducible analysis).

    ``GenerationConfig.released()`` gives the authors' evaluation sampling (docs/interface.md, decoding),
    which ``sociogeo evaluate`` uses by default; GRPO rollouts take theirs from
    :class:`~sociogeo.train.config.GRPOConfig` (the release's GRPO settings).
    """

    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 2048
    seed: int | None = None
    # 1.0 = off. The release sets repetition_penalty=1.0 explicitly in its evaluation sampling;
    # Qwen2.5-VL-Instruct's own generation_config.json says 1.05, which sociogeo never applies
    # implicitly (every setting is passed to the backend).
    repetition_penalty: float = 1.0

    @classmethod
    def greedy(cls, max_new_tokens: int = 2048) -> GenerationConfig:
        """Greedy decoding (no sampling) of up to ``max_new_tokens`` tokens."""
        return cls(do_sample=False, max_new_tokens=max_new_tokens)

    @classmethod
    def released(cls, max_new_tokens: int = 2048, seed: int | None = None) -> GenerationConfig:
        """The authors' evaluation sampling: temperature 1.0, top-p 0.8, top-k 100, repetition
        penalty 1.0 (as the release sets them), optionally seeded.
        """
        return cls(do_sample=True, temperature=1.0, top_p=0.8, top_k=100, max_new_tokens=max_new_tokens,
                   seed=seed, repetition_penalty=1.0)

    @property
    def is_released(self) -> bool:
        """Whether these are the release's evaluation sampling settings (any seed and token limit)."""
        reference = GenerationConfig.released(self.max_new_tokens, self.seed)
        return self == reference

    def describe(self, seeds: Sequence[int] | None = None) -> str:
        """The decoding in words, e.g. for an evaluation table; ``seeds`` names those of repeated runs."""
        if not self.do_sample:
            return f"greedy decoding (up to {self.max_new_tokens} new tokens)"
        kind = "the release's sampling" if self.is_released else "sampling"
        seed = "unseeded" if self.seed is None else f"seed {self.seed}"
        if seeds is not None:
            seed = f"seeds {', '.join(str(s) for s in seeds)}"
        return (f"{kind}: temperature {float(self.temperature)}, top-p {float(self.top_p)}, top-k {self.top_k}, "
                f"repetition penalty {float(self.repetition_penalty)}, up to {self.max_new_tokens} new tokens, {seed}")


@dataclass
class VLMRequest:
    """One prompt: the user text and its two images, map first, satellite second.

    Images are H x W x 3 uint8 arrays already in the model's pixel space (756 x 756 for a
    768-pixel chip; see :mod:`sociogeo.geo.modelspace`). Backends must not resize them again.
    """

    text: str
    images: Sequence[np.ndarray] = field(default_factory=list)


@runtime_checkable
class VLMBackend(Protocol):
    """Anything that turns requests into answer texts, one per request, in order."""

    name: str

    def generate(self, requests: Sequence[VLMRequest], config: GenerationConfig | None = None) -> list[str]:
        """One answer text per request, in order, decoded with ``config`` (the backend's default when None)."""
        ...
