"""Qwen2.5-VL in this process, through Hugging Face transformers.

The released checkpoint (``vvangfaye/SocioReasoner-3B``), the base ``Qwen/Qwen2.5-VL-3B-Instruct``,
a local folder and the tiny test model (:func:`sociogeo.testing.tiny_vlm.make_tiny_vlm`) all load
through :meth:`TransformersVLM.from_pretrained`, the same code path.

Interface facts from the release (docs/interface.md): one user turn ``[map, satellite, text]``
templated by the checkpoint's own chat template with the generation prompt; the processor is
bounded to 56*56 .. 768*768 pixels, so the 756 x 756 images sociogeo hands over are not resized
again; prompts are padded on the left for batched generation.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np

from ..._optional import require
from ..._runtime import loading_progress
from ...errors import ConfigError, ModelNotFoundError
from ...geo.modelspace import MAX_PIXELS, MIN_PIXELS, smart_resize
from ...options import options
from ..prompts import build_messages
from .base import GenerationConfig, VLMRequest


class TransformersVLM:
    """A Qwen2.5-VL model and its processor, answering :class:`VLMRequest` batches.

    Build it with :meth:`from_pretrained`. ``model`` and ``processor`` are the transformers
    objects (the training code builds on them), ``name`` is the id or folder it came from.
    """

    def __init__(self, model, processor, *, name: str, batch_size: int = 8):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.processor = processor
        self.name = name
        self.batch_size = int(batch_size)
        # Batched generation appends new tokens on the right, so prompts must end aligned.
        self.processor.tokenizer.padding_side = "left"

    @classmethod
    def from_pretrained(
        cls,
        name_or_path,
        *,
        device=None,
        dtype=None,
        cache_dir=None,
        local_files_only: bool | None = None,
        min_pixels: int = MIN_PIXELS,
        max_pixels: int = MAX_PIXELS,
        attn_implementation: str | None = None,
        batch_size: int = 8,
    ) -> TransformersVLM:
        """Load a Qwen2.5-VL checkpoint (hub id or local folder) in eval mode.

        ``device`` defaults to ``"cuda"`` when available, else ``"cpu"``; ``dtype`` to bfloat16 on
        CUDA and float32 on CPU. ``local_files_only`` defaults to true when ``HF_HUB_OFFLINE`` or
        ``sociogeo.options.offline`` is set. ``min_pixels``/``max_pixels`` bound the processor's
        resize (pixels per image). ``batch_size`` caps how many requests one ``generate`` step
        runs together. Raises :class:`~sociogeo.errors.ModelNotFoundError` when the weights can
        be neither found locally nor downloaded.
        """
        torch = require("torch", purpose="running Qwen2.5-VL")
        transformers = require("transformers", purpose="running Qwen2.5-VL")
        name = _check_local(os.path.expanduser(os.fspath(name_or_path)))
        device = torch.device(device) if device is not None else _default_device(torch)
        dtype = _resolve_dtype(torch, dtype, device)
        if local_files_only is None:
            local_files_only = options.offline_requested()
        common = {"cache_dir": cache_dir, "local_files_only": bool(local_files_only), "trust_remote_code": False}
        try:
            with loading_progress():
                processor = transformers.AutoProcessor.from_pretrained(name, **common)
                model = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(
                    name, dtype=dtype, attn_implementation=attn_implementation, **common
                )
        except _not_found_errors() as exc:
            raise ModelNotFoundError(_not_found_message(name, cache_dir, bool(local_files_only), exc)) from exc
        model.to(device).eval()
        _bound_pixels(processor.image_processor, int(min_pixels), int(max_pixels))
        return cls(model, processor, name=name, batch_size=batch_size)

    @property
    def device(self):
        """The torch device the model runs on."""
        return next(self.model.parameters()).device

    def chat_prompt(self, text: str, *, n_images: int = 2) -> str:
        """The full prompt the checkpoint's chat template makes of ``text`` after ``n_images``
        image placeholders (map, then satellite), ending with the assistant generation prompt.
        """
        messages = build_messages(text, images=[None] * n_images)
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def prepare(self, requests: Sequence[VLMRequest]):
        """The processor's left-padded batch for ``requests`` on the model's device:
        ``input_ids``, ``attention_mask`` (B x L), ``pixel_values``, ``image_grid_thw``.
        """
        if len(requests) == 0:
            raise ConfigError("prepare() needs at least one request")
        prompts = [self.chat_prompt(request.text, n_images=len(request.images)) for request in requests]
        images = [[_pil(image, self._bounds()) for image in request.images] for request in requests]
        batch = self.processor(
            text=prompts,
            images=images if any(images) else None,
            padding=True,
            return_tensors="pt",
        )
        return batch.to(self.device)

    def generate(self, requests: Sequence[VLMRequest], config: GenerationConfig | None = None) -> list[str]:
        """Answer texts, one per request, in order (special tokens removed).

        Requests run in batches of ``batch_size``. A ``config.seed`` makes sampling
        reproducible without touching the caller's global random state.
        """
        return self.decode(self.generate_ids(requests, config))

    def generate_ids(self, requests: Sequence[VLMRequest], config: GenerationConfig | None = None) -> list:
        """The generated token ids per request (1-D LongTensors on the CPU), up to and including
        the first end-of-sequence token, without padding. Training builds on these.
        """
        torch = require("torch", purpose="running Qwen2.5-VL")
        config = config or GenerationConfig()
        requests = list(requests)
        if not requests:
            return []
        settings = self._generation_config(config)
        stop = settings.eos_token_id
        stop = set(stop if isinstance(stop, (list, tuple)) else [stop])
        pad = settings.pad_token_id
        out: list = []
        with _seeded(torch, config.seed, self.device):
            for start in range(0, len(requests), self.batch_size):
                batch = self.prepare(requests[start: start + self.batch_size])
                with torch.inference_mode():
                    output = self.model.generate(**batch, generation_config=settings)
                for row in output[:, batch["input_ids"].shape[1]:].cpu():
                    out.append(_trim(row, stop, pad))
        return out

    def decode(self, ids: Sequence) -> list[str]:
        """Texts of generated token ids (special tokens removed)."""
        return [
            self.processor.tokenizer.decode(row, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            for row in ids
        ]

    def _bounds(self) -> tuple[int, int]:
        size = self.processor.image_processor.size
        return int(size["shortest_edge"]), int(size["longest_edge"])

    def _placeholder_ids(self) -> list[int]:
        tok = self.processor.tokenizer
        names = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>")
        ids = {tok.convert_tokens_to_ids(n) for n in names}
        return sorted(i for i in ids if i is not None and i != tok.unk_token_id)

    def _generation_config(self, config: GenerationConfig):
        """A complete transformers GenerationConfig: every decoding knob is set explicitly, so the
        checkpoint's own generation defaults (Qwen2.5-VL-Instruct ships temperature 0.1,
        repetition penalty 1.05) never leak into sociogeo's decoding.
        """
        from transformers import GenerationConfig as HFGenerationConfig

        tokenizer = self.processor.tokenizer
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else _first(eos)
        if config.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {config.max_new_tokens}")
        if config.do_sample:
            if config.temperature <= 0:
                raise ConfigError(
                    f"temperature must be positive when sampling, got {config.temperature}; "
                    "use GenerationConfig.greedy() for deterministic decoding"
                )
            sampling = {
                "temperature": float(config.temperature),
                "top_p": float(config.top_p),
                "top_k": int(config.top_k),  # 0 disables top-k in transformers
            }
        else:
            # transformers' own neutral values: ignored by greedy search, and they keep its
            # "flag not used" warnings quiet.
            sampling = {"temperature": 1.0, "top_p": 1.0, "top_k": 50}
        return HFGenerationConfig(
            # Image/video placeholder tokens are never valid output, and one in a completion makes the
            # next forward pass (stage 2, training) fail to match image features to placeholders.
            suppress_tokens=self._placeholder_ids(),
            do_sample=bool(config.do_sample),
            max_new_tokens=int(config.max_new_tokens),
            repetition_penalty=float(config.repetition_penalty),
            num_beams=1,
            eos_token_id=eos,
            pad_token_id=pad,
            **sampling,
        )


def _trim(row, stop: set, pad):
    """Cut a generated row after its first stop token; drop trailing padding when there is none."""
    tokens = row.tolist()
    for i, t in enumerate(tokens):
        if t in stop:
            return row[: i + 1].clone()
    end = len(tokens)
    while end > 0 and tokens[end - 1] == pad:
        end -= 1
    return row[:end].clone()


def _bound_pixels(image_processor, min_pixels: int, max_pixels: int) -> None:
    """Set the image processor's smart_resize bounds (pixels per image) after loading.

    Set afterwards because a checkpoint's preprocessor_config.json carries its own
    ``min_pixels``/``max_pixels`` (Qwen2.5-VL-3B-Instruct: up to 12,845,056), and those win over
    loading arguments; the release runs with 56*56 .. 768*768.
    """
    if not 0 < min_pixels <= max_pixels:
        raise ConfigError(f"need 0 < min_pixels <= max_pixels, got {min_pixels} and {max_pixels}")
    size = image_processor.size
    if dataclasses.is_dataclass(size):  # transformers 5: SizeDict
        image_processor.size = dataclasses.replace(size, shortest_edge=min_pixels, longest_edge=max_pixels)
    else:
        image_processor.size = {**dict(size or {}), "shortest_edge": min_pixels, "longest_edge": max_pixels}
    for attribute, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if getattr(image_processor, attribute, None) is not None:  # transformers 4 reads these
            setattr(image_processor, attribute, value)


def _first(value):
    return value[0] if isinstance(value, (list, tuple)) else value


def _pil(image, bounds: tuple[int, int]):
    """An H x W x 3 uint8 array (or PIL image) as an RGB PIL image; warns if the processor
    would resize it, since the model's coordinates then refer to another size.
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"))
    else:
        array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ConfigError(
            f"VLM images must be H x W x 3 uint8 arrays, got shape {array.shape} dtype {array.dtype}"
        )
    height, width = array.shape[:2]
    expected = smart_resize(height, width, min_pixels=bounds[0], max_pixels=bounds[1])
    if expected != (height, width):
        warnings.warn(
            f"a {height} x {width} image will be resized by the processor to {expected[0]} x {expected[1]}; "
            "answers will be in that size's pixels. Resize images with sociogeo.geo.modelspace first.",
            stacklevel=4,
        )
    return Image.fromarray(array)


def _check_local(name: str) -> str:
    """``name`` unchanged, unless it is clearly meant as a folder and that folder is missing or
    holds no checkpoint.
    """
    from ..hub import looks_local

    if looks_local(name) and not os.path.isdir(name):
        raise ModelNotFoundError(
            f"model folder {name!r} does not exist. Pass the folder of a downloaded checkpoint "
            "(e.g. from `hf download vvangfaye/SocioReasoner-3B --local-dir <folder>`) or a hub id "
            "such as 'vvangfaye/SocioReasoner-3B'."
        )
    if os.path.isdir(name) and not os.path.isfile(os.path.join(name, "config.json")):
        raise ModelNotFoundError(
            f"folder {name!r} holds no config.json, so it is not a model checkpoint. Pass the folder "
            "that `hf download vvangfaye/SocioReasoner-3B --local-dir <folder>` (or save_pretrained) wrote."
        )
    return name


def _default_device(torch):
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _resolve_dtype(torch, dtype, device):
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        if dtype == "auto":
            return dtype
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise ConfigError(f"unknown dtype {dtype!r}; use e.g. 'bfloat16', 'float16' or 'float32'")
        return resolved
    return dtype


def _not_found_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]
    try:
        from huggingface_hub.errors import HFValidationError

        errors.append(HFValidationError)  # e.g. a mistyped local path read as a hub id
    except ImportError:
        pass
    return tuple(errors)


def _not_found_message(name: str, cache_dir, local_files_only: bool, exc: BaseException) -> str:
    where = f" in {cache_dir}" if cache_dir else " in the Hugging Face cache (HF_HOME)"
    mode = (
        "Offline mode is on (HF_HUB_OFFLINE or sociogeo.options.offline), so nothing was downloaded. "
        if local_files_only
        else ""
    )
    return (
        f"Cannot load the Qwen2.5-VL weights {name!r}: not a local folder and not found{where}. {mode}"
        f"To provide them: on a connected machine run `hf download {name}` (or "
        f"`huggingface-cli download {name}`), then pass the downloaded folder as the model, or point "
        f"HF_HOME / cache_dir= at the cache holding it. ({type(exc).__name__}: {exc})"
    )


@contextmanager
def _seeded(torch, seed: int | None, device):
    """Seed torch's generators for one block and restore the caller's RNG state afterwards."""
    if seed is None:
        yield
        return
    devices = []
    if device.type == "cuda":
        devices = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


__all__ = ["TransformersVLM"]
