"""SocioReasoner: the two-stage reasoning loop of spec section 3, on chips.

Stage 1: the VLM reads the map and the satellite image and answers boxes; SAM segments each box
on the satellite image. The result is rendered onto both images (red mask, blue boxes). Stage 2:
the VLM reads the rendered images and answers each box again with points; SAM segments box +
points. Everything the VLM sees and writes is in its 756-pixel space (for 768-pixel chips); the
final mask comes back at the chip's size.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from . import modelspace
from .parsing import Discarded, Item, parse_answer
from .prompts import answer_text, stage1_text, stage2_text
from .render import render_stage2
from .sam.base import Prompt, Segmenter, union
from .vlm.base import GenerationConfig, VLMBackend, VLMRequest

DEFAULT_VLM = "vvangfaye/SocioReasoner-3B"
DEFAULT_SAM = "facebook/sam2-hiera-large"


@dataclass
class Prediction:
    """Everything one chip and query produced.

    Coordinates in ``stage1_boxes`` and ``stage2_items`` are model pixels (756 x 756 for a
    768-pixel chip, ``model_size``); ``stage1_mask`` is in model pixels too; ``mask`` is the final
    mask at the input image's size (``image_size``).
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

    @property
    def reasoning(self) -> str:
        """The model's think texts of both stages."""
        parts = [t for t in (self.stage1_think, self.stage2_think) if t]
        return "\n\n".join(parts)

    @property
    def empty(self) -> bool:
        return not self.mask.any()


class SocioReasoner:
    """The SocioReasoner pipeline around a VLM backend and a SAM backend.

    Build it with :meth:`from_pretrained` (hub ids or local folders) or directly from backends
    (anything implementing :class:`~sociogeo.vlm.VLMBackend` / :class:`~sociogeo.sam.Segmenter`).
    ``generation`` defaults to greedy decoding; pass ``GenerationConfig.released()`` for the
    authors' evaluation sampling.
    """

    def __init__(
        self,
        vlm: VLMBackend,
        sam: Segmenter,
        *,
        generation: GenerationConfig | None = None,
        trained: bool = True,
    ):
        self.vlm = vlm
        self.sam = sam
        self.generation = generation or GenerationConfig.greedy()
        # False for the tiny random models of offline demos: every output is then labelled untrained
        self.trained = trained

    @classmethod
    def from_pretrained(
        cls,
        vlm: str | VLMBackend = DEFAULT_VLM,
        sam: str | Segmenter = DEFAULT_SAM,
        *,
        device=None,
        dtype=None,
        cache_dir=None,
        offline: bool | None = None,
        generation: GenerationConfig | None = None,
        trained: bool = True,
        vlm_kwargs: dict | None = None,
        sam_kwargs: dict | None = None,
    ) -> "SocioReasoner":
        """Load both models: hub ids, local folders, an ``http(s)://`` OpenAI-compatible server
        for the VLM, a ``.pth`` SAM v1 checkpoint for SAM, or ready backends.

        ``offline=True`` (or ``sociogeo.options.offline``) never touches the network; missing
        weights then raise :class:`~sociogeo.errors.ModelNotFoundError` saying how to provide them.
        """
        from .hub import is_hub_id, probe_weights
        from .options import options
        from .sam.base import load_sam
        from .vlm.base import load_vlm

        if offline is None:
            offline = options.offline
        # fail in seconds, not after minutes of download retries, when a hub model is unreachable
        repos = [str(m) for m in (vlm, sam) if isinstance(m, (str, os.PathLike)) and is_hub_id(m)]
        if repos:
            with options.context(offline=bool(offline)):
                missing = probe_weights(repos, cache_dir=cache_dir)
            for repo, size in missing.items():
                if options.progress:
                    gb = f"{size / 1e9:.1f} GB" if size else "size unknown"
                    print(f"sociogeo: downloading {repo} ({gb}) into the Hugging Face cache", file=sys.stderr)
        common = {}
        if device is not None:
            common["device"] = device
        if cache_dir is not None:
            common["cache_dir"] = cache_dir
        vkw = dict(vlm_kwargs or {})
        skw = dict(sam_kwargs or {})
        if not isinstance(vlm, VLMBackend) and not str(vlm).startswith(("http://", "https://")):
            vkw = {**common, **({"dtype": dtype} if dtype is not None else {}),
                   **({"local_files_only": True} if offline else {}), **vkw}
        if not isinstance(sam, Segmenter):
            if str(sam).endswith((".pth", ".pt")) or str(sam) in {"vit_h", "vit_l", "vit_b"}:
                skw = {**common, **skw}
            else:
                skw = {**common, **({"local_files_only": True} if offline else {}), **skw}
        return cls(load_vlm(vlm, **vkw), load_sam(sam, **skw), generation=generation, trained=trained)

    # -- names ---------------------------------------------------------------------------------
    @property
    def vlm_name(self) -> str:
        return getattr(self.vlm, "name", type(self.vlm).__name__)

    @property
    def sam_name(self) -> str:
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
        if n == 0:
            return []
        gen = generation or self.generation
        for q in queries:
            if not isinstance(q, str) or not q.strip():
                raise ValueError(f"each query must be a non-empty string, got {q!r}")

        image_sizes, model_sizes, maps, sats = [], [], [], []
        for m, s in zip(map_images, satellite_images):
            m, s = _as_rgb(m, "map"), _as_rgb(s, "satellite")
            if m.shape != s.shape:
                raise ValueError(f"map {m.shape} and satellite {s.shape} must have the same size")
            size = m.shape[:2]
            msize = modelspace.model_size(*size)
            image_sizes.append(size)
            model_sizes.append(msize)
            maps.append(modelspace.resize_image(m, msize))
            sats.append(modelspace.resize_image(s, msize))

        # one SAM embedding per distinct satellite image, reused by both stages
        keys, unique = [], {}
        for s_orig, s_model in zip(satellite_images, sats):
            k = id(s_orig)
            if k not in unique:
                unique[k] = s_model
            keys.append(k)
        order = list(unique)
        embeddings = dict(zip(order, self.sam.embed([unique[k] for k in order])))

        # stage 1
        texts1 = self.vlm.generate(
            [VLMRequest(stage1_text(q), [m, s]) for q, m, s in zip(queries, maps, sats)], gen
        )
        parsed1 = [parse_answer(t, image_size=ms, stage=1) for t, ms in zip(texts1, model_sizes)]
        masks1 = []
        for p, k, ms in zip(parsed1, keys, model_sizes):
            masks1.append(union(self.sam.predict(embeddings[k], [Prompt(box=b) for b in p.boxes]), ms))

        # stage 2: the stage-1 result rendered on both images
        requests2 = []
        for q, t1, p, mk, m, s in zip(queries, texts1, parsed1, masks1, maps, sats):
            boxes = p.boxes
            requests2.append(
                VLMRequest(stage2_text(q, answer_text(t1)), [render_stage2(m, mk, boxes), render_stage2(s, mk, boxes)])
            )
        texts2 = self.vlm.generate(requests2, gen)
        parsed2 = [parse_answer(t, image_size=ms, stage=2) for t, ms in zip(texts2, model_sizes)]

        out = []
        for i in range(n):
            p2 = parsed2[i]
            prompts = [Prompt(box=it.box, points=tuple(it.points)) for it in p2.items]
            final = union(self.sam.predict(embeddings[keys[i]], prompts), model_sizes[i])
            mask = modelspace.resize_image(final, image_sizes[i])
            discarded = [(1, d) for d in parsed1[i].discarded] + [(2, d) for d in p2.discarded]
            out.append(
                Prediction(
                    query=queries[i],
                    stage1_text=texts1[i],
                    stage1_boxes=list(parsed1[i].boxes),
                    stage1_mask=masks1[i],
                    stage2_text=texts2[i],
                    stage2_items=list(p2.items),
                    mask=mask,
                    discarded=discarded,
                    stage1_think=parsed1[i].think,
                    stage2_think=p2.think,
                    model_size=model_sizes[i],
                    image_size=image_sizes[i],
                )
            )
        return out

    # -- areas ---------------------------------------------------------------------------------
    def segment(self, area_or_pair, query, **kwargs):
        """Segment ``query`` (a string or a list of strings) over an area, a bbox or an
        :class:`~sociogeo.imagery.ImagePair`; returns a GeoDataFrame. See :func:`sociogeo.segment`."""
        from .segmentation import segment

        return segment(area_or_pair, query, reasoner=self, **kwargs)

    def __repr__(self) -> str:
        label = "" if self.trained else ", untrained"
        return f"SocioReasoner(vlm={self.vlm_name!r}, sam={self.sam_name!r}{label})"


def _as_rgb(image, what: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"the {what} image must be H x W x 3 (RGB), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"the {what} image must be uint8, got {arr.dtype}")
    return np.ascontiguousarray(arr[..., :3])
