"""SocioReasoner: the two-stage reasoning loop of docs/interface.md, on chips.

Stage 1: the VLM reads the map and the satellite image and answers boxes; SAM segments each box
on the satellite image. The result is rendered onto both images (red mask, blue boxes). Stage 2:
the VLM reads the rendered images and answers each box again with points; SAM segments box +
points. Everything the VLM sees and writes is in its 756-pixel space (for 768-pixel chips); the
final mask comes back at the chip's size.

Answers become SAM prompts as the released pipeline makes them (``parse="strict"``, the
default) or through sociogeo's tolerant parser (``parse="repair"``); docs/fidelity.md lists
what the default reproduces.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import defaults
from ..options import options
from . import protocol
from .kind import NOTICES, reasoner_kind
from .parsing import Discarded, Item
from .sam.base import Segmenter
from .sam.registry import load_sam
from .vlm.base import GenerationConfig, VLMBackend
from .vlm.registry import load_vlm


@dataclass
class Prediction:
    """Everything one chip and query produced.

    Coordinates in ``stage1_boxes`` and ``stage2_items`` are model pixels (756 x 756 for a
    768-pixel chip, ``model_size``), as SAM received them; ``stage1_mask`` is in model pixels too;
    ``mask`` is the final mask at the input image's size (``image_size``).

    ``parse`` names the mode that read the answers (``"strict"`` or ``"repair"``).
    ``discarded`` lists ``(stage, what)`` for everything in an answer that gave no SAM prompt,
    with the reason; ``repairs`` lists ``(stage, what)`` for everything the repair mode changed
    or guessed (always empty in strict mode, which changes nothing).
    """

    query: str
    stage1_text: str
    stage1_boxes: list[tuple[float, float, float, float]]
    stage1_mask: np.ndarray
    stage2_text: str
    stage2_items: list[Item]
    mask: np.ndarray
    discarded: list[tuple[int, Discarded]] = field(default_factory=list)  # (stage, what)
    stage1_think: str = ""
    stage2_think: str = ""
    model_size: tuple[int, int] = (756, 756)
    image_size: tuple[int, int] = (768, 768)
    parse: str = "strict"
    repairs: list[tuple[int, Discarded]] = field(default_factory=list)  # (stage, what)

    @property
    def reasoning(self) -> str:
        """The model's think texts of both stages."""
        parts = [t for t in (self.stage1_think, self.stage2_think) if t]
        return "\n\n".join(parts)

    @property
    def empty(self) -> bool:
        """Whether the final mask has no pixel set."""
        return not self.mask.any()


@dataclass
class ReasonerSpec:
    """How to load a :class:`SocioReasoner`: model ids or folders and loading options, small enough
    to send to other processes (each Ray actor loads its own copy with :meth:`load`).

    ``vlm_name``/``sam_name`` are the ids as given, so results name the models the same way
    whichever engine ran them.
    """

    vlm: str | list[str] = defaults.VLM
    sam: str = defaults.SAM
    device: object = None
    dtype: object = None
    cache_dir: object = None
    offline: bool | None = None
    generation: GenerationConfig | None = None
    trained: bool | None = None
    parse: str = "strict"
    vlm_kwargs: dict | None = None
    sam_kwargs: dict | None = None

    @property
    def vlm_name(self) -> str:
        """The VLM id or folder as given (server URLs of a fleet joined by ``, ``)."""
        return ", ".join(self.vlm) if isinstance(self.vlm, (list, tuple)) else str(self.vlm)

    @property
    def sam_name(self) -> str:
        """The SAM id, folder or checkpoint as given."""
        return str(self.sam)

    def load(self, **changes) -> SocioReasoner:
        """The reasoner, loaded here (``changes`` override fields, e.g. ``vlm=`` another server)."""
        spec = dataclasses.replace(self, **changes) if changes else self
        return SocioReasoner.from_pretrained(
            spec.vlm, spec.sam, device=spec.device, dtype=spec.dtype, cache_dir=spec.cache_dir, offline=spec.offline,
            generation=spec.generation, trained=spec.trained, parse=spec.parse, vlm_kwargs=spec.vlm_kwargs,
            sam_kwargs=spec.sam_kwargs,
        )


class SocioReasoner:
    """The SocioReasoner pipeline around a VLM backend and a SAM backend.

    Build it with :meth:`from_pretrained` (hub ids or local folders) or directly from backends
    (anything implementing :class:`~sociogeo.reasoner.vlm.VLMBackend` / :class:`~sociogeo.reasoner.sam.Segmenter`).
    ``generation`` defaults to greedy decoding; pass ``GenerationConfig.released()`` for the
    authors' evaluation sampling. ``parse``: ``"strict"`` (default) reads answers as the release
    does (malformed JSON gives no prompt, coordinates unclipped); ``"repair"`` uses the tolerant
    parser and records its repairs in each :class:`Prediction`.
    """

    def __init__(
        self,
        vlm: VLMBackend,
        sam: Segmenter,
        *,
        generation: GenerationConfig | None = None,
        trained: bool = True,
        parse: str = "strict",
        model_kind: str | None = None,
    ):
        self.vlm = vlm
        self.sam = sam
        self.generation = generation or GenerationConfig.greedy()
        # what the models are (sociogeo.reasoner.kind): "untrained" and "demo" outputs say so everywhere
        self.model_kind = "untrained" if trained is False else (model_kind or "custom")
        self.parse = protocol.check_parse_mode(parse)
        # how to load the same models elsewhere (set by from_pretrained; Ray actors use it)
        self.spec: ReasonerSpec | None = None

    @classmethod
    def from_pretrained(  # noqa: PLR0913 (keyword-only settings of the public loader)
        cls,
        vlm: str | VLMBackend = defaults.VLM,
        sam: str | Segmenter = defaults.SAM,
        *,
        device=None,
        dtype=None,
        cache_dir=None,
        offline: bool | None = None,
        generation: GenerationConfig | None = None,
        trained: bool | None = None,
        parse: str = "strict",
        vlm_kwargs: dict | None = None,
        sam_kwargs: dict | None = None,
    ) -> SocioReasoner:
        """Load both models: hub ids, local folders, an ``http(s)://`` OpenAI-compatible server
        for the VLM, a ``.pth`` SAM v1 checkpoint for SAM, or ready backends.

        ``offline=True`` (or ``sociogeo.options.offline``) never touches the network; missing
        weights then raise :class:`~sociogeo.errors.ModelNotFoundError` saying how to provide them.
        ``dtype`` applies to the VLM; ``vlm_kwargs``/``sam_kwargs`` go to the backends (e.g.
        ``sam_kwargs={"preprocess": "transformers"}``). ``parse``: see :class:`SocioReasoner`.
        ``trained=False`` labels every output as coming from untrained models; by default the
        kind is read from the model folders' ``sociogeo.json`` records (see
        :mod:`sociogeo.reasoner.kind`), so the tiny test models and the demo model say what they are.
        """
        from .hub import announce_downloads

        if offline is None:
            offline = options.offline_requested()
        # fail in seconds, not after minutes of download retries, when a hub model is unreachable
        announce_downloads([vlm, sam], cache_dir=cache_dir, offline=offline)
        common = {"device": device, "cache_dir": cache_dir, "offline": offline}
        reasoner = cls(
            load_vlm(vlm, dtype=dtype, **common, **(vlm_kwargs or {})),
            load_sam(sam, **common, **(sam_kwargs or {})),
            generation=generation,
            parse=parse,
            model_kind=reasoner_kind(vlm, sam, trained),
        )
        named = isinstance(vlm, (str, os.PathLike)) or (
            isinstance(vlm, (list, tuple)) and all(isinstance(v, str) for v in vlm))
        if named and isinstance(sam, (str, os.PathLike)):
            reasoner.spec = ReasonerSpec(
                list(vlm) if isinstance(vlm, (list, tuple)) else str(vlm), str(sam), device=device, dtype=dtype,
                cache_dir=cache_dir, offline=offline, generation=generation, trained=trained, parse=parse,
                vlm_kwargs=vlm_kwargs, sam_kwargs=sam_kwargs)
        return reasoner

    # -- names ---------------------------------------------------------------------------------
    @property
    def trained(self) -> bool:
        """False for untrained models (random weights): their outputs are labelled as such."""
        return self.model_kind != "untrained"

    @trained.setter
    def trained(self, value: bool) -> None:
        if not value:
            self.model_kind = "untrained"
        elif self.model_kind == "untrained":
            self.model_kind = "custom"

    @property
    def model_notice(self) -> str | None:
        """What every output of these models must say (demo or untrained models), else None."""
        return NOTICES.get(self.model_kind)

    @property
    def vlm_name(self) -> str:
        """The VLM backend's ``name`` (its class name when it has none)."""
        return getattr(self.vlm, "name", type(self.vlm).__name__)

    @property
    def sam_name(self) -> str:
        """The SAM backend's ``name`` (its class name when it has none)."""
        return getattr(self.sam, "name", type(self.sam).__name__)

    # -- prediction ----------------------------------------------------------------------------
    def predict(self, map_image: np.ndarray, satellite_image: np.ndarray, query: str) -> Prediction:
        """Run both stages on one pair of H x W x 3 uint8 images (map, satellite) for ``query``."""
        return self.predict_batch([map_image], [satellite_image], [query])[0]

    def predict_batch(
        self,
        map_images: Sequence[np.ndarray],
        satellite_images: Sequence[np.ndarray],
        queries: Sequence[str],
        *,
        generation: GenerationConfig | None = None,
    ) -> list[Prediction]:
        """Both stages for many (map, satellite, query) samples, one VLM call per stage.

        Samples that share the same satellite array object (one chip asked several queries)
        share one SAM embedding, computed once and reused for both stages.
        """
        n = len(queries)
        if not (len(map_images) == len(satellite_images) == n):
            raise ValueError(
                f"got {len(map_images)} maps, {len(satellite_images)} satellite images and {n} queries; "
                "pass one of each per sample"
            )
        for q in queries:
            if not isinstance(q, str) or not q.strip():
                raise ValueError(f"each query must be a non-empty string, got {q!r}")
        if n == 0:
            return []
        gen = generation or self.generation
        images = [protocol.model_images(m, s) for m, s in zip(map_images, satellite_images)]
        embeddings = self._embed_once(satellite_images, images)

        texts1 = self.vlm.generate([protocol.stage1_request(q, im) for q, im in zip(queries, images)], gen)
        parsed1 = [protocol.parse(t, im, stage=1, mode=self.parse) for t, im in zip(texts1, images)]
        masks1 = [protocol.segment(self.sam, e, p, im) for e, p, im in zip(embeddings, parsed1, images)]

        requests2 = [protocol.stage2_request(q, t, mk, p.drawn_boxes, im)
                     for q, t, mk, p, im in zip(queries, texts1, masks1, parsed1, images)]
        texts2 = self.vlm.generate(requests2, gen)
        parsed2 = [protocol.parse(t, im, stage=2, mode=self.parse) for t, im in zip(texts2, images)]
        finals = [protocol.segment(self.sam, e, p, im) for e, p, im in zip(embeddings, parsed2, images)]

        return [
            Prediction(
                query=queries[i],
                stage1_text=texts1[i],
                stage1_boxes=list(parsed1[i].boxes),
                stage1_mask=masks1[i],
                stage2_text=texts2[i],
                stage2_items=list(parsed2[i].items),
                mask=protocol.final_mask(finals[i], images[i]),
                discarded=[(1, d) for d in parsed1[i].discarded] + [(2, d) for d in parsed2[i].discarded],
                stage1_think=parsed1[i].think,
                stage2_think=parsed2[i].think,
                model_size=images[i].model_size,
                image_size=images[i].image_size,
                parse=self.parse,
                repairs=[(1, f) for f in parsed1[i].flags] + [(2, f) for f in parsed2[i].flags]
                if self.parse == "repair" else [],
            )
            for i in range(n)
        ]

    def _embed_once(self, satellite_images, images) -> list:
        """One SAM embedding per sample, computed once per distinct satellite array object."""
        first: dict[int, int] = {}
        for i, original in enumerate(satellite_images):
            first.setdefault(id(original), i)
        order = list(first.values())
        computed = dict(zip(order, self.sam.embed([images[i].satellite for i in order])))
        return [computed[first[id(original)]] for original in satellite_images]

    def __repr__(self) -> str:
        label = "" if self.model_kind in ("released", "custom") else f", {self.model_kind}"
        mode = "" if self.parse == "strict" else f", parse={self.parse!r}"
        return f"SocioReasoner(vlm={self.vlm_name!r}, sam={self.sam_name!r}{mode}{label})"
