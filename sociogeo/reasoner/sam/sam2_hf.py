"""SAM 2 through transformers' ``Sam2Model``, the segmenter SocioReasoner uses.

An image is embedded once (:meth:`Sam2Segmenter.embed`); each :meth:`Sam2Segmenter.predict` call
then runs only the prompt encoder and mask decoder on the stored features. The released
checkpoint ``facebook/sam2-hiera-large`` is published as a video model (config ``sam2_video``);
its image parts load into the image model, which is all single images need.

By default (``preprocess="release"``) every step around the model is the one of the ``sam2``
package's ``SAM2ImagePredictor``, which the released pipeline runs, computed here with torch:

- the uint8 image becomes float in [0, 1], is resized to the model's input (1024 px) with
  bilinear interpolation (antialiased, corners not aligned: torchvision's ``Resize`` on a
  tensor), then normalised with the ImageNet mean and standard deviation;
- a prompt is its box corners (labels 2 and 3) followed by its points (label 1), scaled by
  ``x / width * 1024`` in float32, plus SAM's padding point; one decoder call per prompt;
- the three low-resolution masks are upsampled straight to the image's size (bilinear, corners
  not aligned), thresholded at 0, and the one with the highest predicted IoU is kept.

``preprocess="transformers"`` uses transformers' ``Sam2Processor`` instead (it resizes the uint8
image before converting it, and upsamples masks in two steps), which moves image features by
about 1 % and masks by hundreds of pixels; it exists for comparison.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ... import defaults
from ..._optional import require
from ..._runtime import loading_progress, resolve_device
from ...errors import ConfigError, ModelNotFoundError
from ...options import options
from .base import ImageEmbedding, Prompt, check_images, prompt_groups

DEFAULT_SAM2 = defaults.SAM

#: The two ways to prepare images and prompts; see the module docstring.
PREPROCESS_MODES = ("release", "transformers")

#: ImageNet mean and standard deviation, which the sam2 package normalises with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def release_pixel_values(image: np.ndarray, resolution: int):
    """One H x W x 3 uint8 image as the sam2 package prepares it: 1 x 3 x R x R float32.

    Float in [0, 1] first, then a bilinear resize to ``resolution`` (antialiased, corners not
    aligned), then ImageNet normalisation. Computed on the CPU, where the package computes it.
    """
    torch = require("torch", purpose="running SAM 2")
    functional = torch.nn.functional
    pixels = torch.from_numpy(np.ascontiguousarray(image).transpose(2, 0, 1)).contiguous().float().div(255)
    pixels = functional.interpolate(pixels[None], size=(resolution, resolution), mode="bilinear",
                                    align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(-1, 1, 1)
    return pixels.sub_(mean).div_(std)


def release_prompt_points(prompt: Prompt, size: tuple[int, int], resolution: int):
    """A prompt as the sam2 package gives it to SAM: (1 x P x 2 float32 coordinates in the model's
    input, 1 x P int labels). Box corners come first (labels 2, 3), then points (label 1).
    """
    torch = require("torch", purpose="running SAM 2")
    height, width = size
    coords, labels = [], []
    if prompt.box is not None:
        x1, y1, x2, y2 = prompt.box
        coords += [[x1, y1], [x2, y2]]
        labels += [2, 3]
    coords += [[x, y] for x, y in prompt.points]
    labels += [1] * len(prompt.points)
    xy = torch.as_tensor(coords, dtype=torch.float32).clone()
    xy[..., 0] = xy[..., 0] / width
    xy[..., 1] = xy[..., 1] / height
    return (xy * resolution)[None], torch.as_tensor(labels, dtype=torch.int32)[None]


# --- SAM 2 -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sam2Features:
    """What :meth:`Sam2Segmenter.predict` needs from an embedded image.

    ``levels``: the image embeddings of one image, high to low resolution, each 1 x C x h x w
    (for the 1024-pixel model: 32 x 256 x 256, 64 x 128 x 128, 256 x 64 x 64), on the model's device.
    """

    levels: tuple[Any, ...]
    owner: int  # id() of the segmenter that made it; features of another model are meaningless


def _resolve_dtype(dtype):
    torch = require("torch", purpose="running SAM 2")
    if dtype is None:
        return torch.float32  # SAM's thresholded masks are sensitive to reduced precision
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.replace("torch.", ""), None)
        if not isinstance(resolved, torch.dtype):
            raise ConfigError(f"unknown dtype {dtype!r}; use 'float32', 'bfloat16' or 'float16'")
        return resolved
    return dtype


def image_model_config(config):
    """A ``Sam2Config`` for the image model from a ``sam2`` or ``sam2_video`` config.

    The video checkpoints hold the image model's vision encoder, prompt encoder and mask decoder
    (plus memory modules single images do not use), with the same sub-config fields.
    """
    transformers = require("transformers", purpose="loading SAM 2")
    model_type = getattr(config, "model_type", None)
    if model_type == "sam2":
        return config
    if model_type == "sam2_video":
        parts = {}
        for name in ("prompt_encoder_config", "mask_decoder_config"):
            fields = getattr(config, name).to_dict()
            fields.pop("model_type", None)
            parts[name] = fields
        return transformers.Sam2Config(vision_config=config.vision_config.to_dict(), **parts)
    raise ConfigError(
        f"the checkpoint's config has model_type {model_type!r}, not a SAM 2 model ('sam2' or "
        f"'sam2_video'); pass a SAM 2 checkpoint such as {DEFAULT_SAM2!r}"
    )


def _looks_like_path(name_or_path) -> bool:
    from ..hub import looks_local

    return looks_local(name_or_path)


def _not_found(name_or_path, exc: BaseException) -> ModelNotFoundError:
    offline = " (offline: sociogeo.options.offline or HF_HUB_OFFLINE is set)" if options.offline_requested() else ""
    return ModelNotFoundError(
        f"SAM 2 weights {str(name_or_path)!r} are not available here and could not be "
        f"downloaded{offline} ({type(exc).__name__}: {exc}). Download them on a connected machine "
        f"(`hf download {DEFAULT_SAM2}` or huggingface_hub.snapshot_download), then pass the "
        f"folder: Sam2Segmenter.from_pretrained('/path/to/folder'), or pass cache_dir= pointing at "
        f"the Hugging Face cache that holds them, or set HF_HOME to it."
    )


class Sam2Segmenter:
    """SAM 2 image segmenter: ``embed`` images once, ``predict`` masks for many prompts.

    Boxes and points are pixel coordinates of the embedded image, used as given (also past the
    image's edge); masks come back at that image's size. Every prompt runs with multimask output
    and keeps its highest-scoring mask. ``preprocess``: ``"release"`` (default, the sam2
    package's steps, see the module docstring) or ``"transformers"`` (``processor`` required).
    """

    def __init__(self, model, processor=None, *, name: str = "sam2", batch_size: int = 4,
                 preprocess: str = "release"):
        if preprocess not in PREPROCESS_MODES:
            raise ConfigError(
                f"preprocess must be 'release' (the sam2 package's steps, as the released pipeline ran "
                f"SAM 2) or 'transformers' (transformers' Sam2Processor), got {preprocess!r}"
            )
        if preprocess == "transformers" and processor is None:
            raise ConfigError("preprocess='transformers' needs the checkpoint's Sam2Processor; pass processor=")
        self.model = model.eval()
        self.processor = processor
        self.name = name
        self.preprocess = preprocess
        self.batch_size = int(batch_size)  # images per encoder call in embed()
        self.resolution = self._model_size()
        if preprocess == "transformers":
            self._check_sizes()

    @classmethod
    def from_pretrained(
        cls,
        name_or_path=DEFAULT_SAM2,
        *,
        device=None,
        dtype=None,
        cache_dir=None,
        local_files_only: bool | None = None,
        preprocess: str = "release",
    ) -> Sam2Segmenter:
        """Load a SAM 2 checkpoint: a hub id, a local folder, or a folder saved by a test.

        ``device``: None picks CUDA when available, else the CPU. ``dtype``: float32 unless
        asked (``"bfloat16"`` roughly halves memory, at some mask precision). ``local_files_only``:
        None means offline when ``sociogeo.options.offline`` or ``HF_HUB_OFFLINE`` is set.
        ``preprocess``: ``"release"`` (default) or ``"transformers"``; see :class:`Sam2Segmenter`.
        Raises :class:`ModelNotFoundError` when the weights are neither local nor downloadable.
        """
        require("torch", purpose="running SAM 2")
        transformers = require("transformers", purpose="running SAM 2")
        from huggingface_hub.errors import HFValidationError

        if local_files_only is None:
            local_files_only = options.offline_requested()
        if _looks_like_path(name_or_path):
            name_or_path = os.path.expanduser(str(name_or_path))
            if not os.path.isdir(name_or_path):
                raise ModelNotFoundError(
                    f"SAM 2 folder {name_or_path!r} does not exist; pass a folder holding "
                    f"config.json and the weights, or a hub id such as {DEFAULT_SAM2!r}"
                )
        where = {"cache_dir": cache_dir, "local_files_only": local_files_only}
        try:
            with loading_progress():
                config = image_model_config(transformers.AutoConfig.from_pretrained(name_or_path, **where))
                model = transformers.Sam2Model.from_pretrained(
                    name_or_path, config=config, dtype=_resolve_dtype(dtype), **where
                )
                processor = None
                if preprocess == "transformers":  # the release's steps need no processor files
                    processor = transformers.Sam2Processor.from_pretrained(name_or_path, **where)
        except (OSError, HFValidationError) as exc:
            raise _not_found(name_or_path, exc) from exc
        model = model.to(resolve_device(device))
        # the name tells runs apart (results and resume folders record it), so it names a non-default preprocessing
        suffix = "" if preprocess == "release" else f" [{preprocess} preprocessing]"
        return cls(model, processor, name=f"sam2:{name_or_path}{suffix}", preprocess=preprocess)

    def _model_size(self) -> int:
        size = self.model.config.prompt_encoder_config.image_size
        return int(size[0] if isinstance(size, (list, tuple)) else size)

    def _check_sizes(self) -> None:
        # Prompts are scaled to the processor's target size and images resized to its size; both
        # must be the model's input size or masks land in the wrong place.
        model_size = self.resolution
        resize = self.processor.image_processor.size
        sizes = {int(resize["height"]), int(resize["width"]), int(self.processor.target_size)}
        if sizes != {model_size}:
            raise ConfigError(
                f"the SAM 2 processor resizes to {sorted(sizes)} pixels but the model expects "
                f"{model_size}; save the processor with size={{'height': {model_size}, "
                f"'width': {model_size}}}"
            )

    @property
    def device(self):
        """The ``torch.device`` the model's parameters are on."""
        return next(self.model.parameters()).device

    @property
    def dtype(self):
        """The ``torch.dtype`` of the model's parameters."""
        return next(self.model.parameters()).dtype

    def embed(self, images: Sequence[np.ndarray]) -> list[ImageEmbedding]:
        """Embed H x W x 3 uint8 RGB images, ``batch_size`` per encoder call."""
        torch = require("torch", purpose="running SAM 2")
        images = check_images(images)
        embeddings = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size]
            pixels = self.pixel_values(batch)
            with torch.inference_mode():
                levels = self.model.get_image_embeddings(pixels.to(self.device, self.dtype))
            for i, image in enumerate(batch):
                features = Sam2Features(
                    levels=tuple(level[i : i + 1] for level in levels), owner=id(self)
                )
                embeddings.append(ImageEmbedding(size=image.shape[:2], features=features))
        return embeddings

    def pixel_values(self, images: Sequence[np.ndarray]):
        """The model's input for H x W x 3 uint8 images: N x 3 x R x R float32 (R = 1024 for the
        released model), prepared the ``preprocess`` way.
        """
        torch = require("torch", purpose="running SAM 2")
        if self.preprocess == "transformers":
            return self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        return torch.cat([release_pixel_values(image, self.resolution) for image in images])

    def predict(self, embedding: ImageEmbedding, prompts: Sequence[Prompt]) -> np.ndarray:
        """One mask per prompt, (N, H, W) bool at the embedded image's size.

        Each prompt keeps the mask of its three (multimask output) with the highest predicted
        IoU. The release's steps run one decoder call per prompt, as the sam2 predictor does;
        ``preprocess="transformers"`` stacks prompts of the same layout. No prompts gives (0, H, W).
        """
        features = self._features(embedding)
        height, width = embedding.size
        masks = np.zeros((len(prompts), height, width), dtype=bool)
        groups = prompt_groups(prompts)  # also checks that every prompt is a Prompt
        if self.preprocess == "release":
            for index, prompt in enumerate(prompts):
                masks[index] = self._predict_release(features, embedding.size, prompt)
            return masks
        for indexes in groups:
            masks[indexes] = self._predict_group(features, embedding.size, [prompts[i] for i in indexes])
        return masks

    def _predict_release(self, features: Sam2Features, size, prompt: Prompt) -> np.ndarray:
        torch = require("torch", purpose="running SAM 2")
        functional = torch.nn.functional
        points, labels = release_prompt_points(prompt, size, self.resolution)
        with torch.inference_mode():
            out = self.model(
                image_embeddings=list(features.levels),
                input_points=points[None].to(self.device, self.dtype),
                input_labels=labels[None].to(self.device),
                multimask_output=True,
            )
            # pred_masks: 1 x 1 x 3 x h x w low-resolution logits; iou_scores: 1 x 1 x 3
            logits = out.pred_masks[0, 0].float()
            scores = out.iou_scores[0, 0].float().cpu().numpy()
            best = int(np.argmax(scores))  # the first of equal scores, as numpy's argmax in the release
            # upsampling is per mask, so upsampling only the kept one gives the same mask
            upsampled = functional.interpolate(logits[None, best : best + 1], size=tuple(size), mode="bilinear",
                                               align_corners=False)
        return (upsampled[0, 0] > 0.0).cpu().numpy()

    def _features(self, embedding: ImageEmbedding) -> Sam2Features:
        features = getattr(embedding, "features", None)
        if not isinstance(features, Sam2Features) or features.owner != id(self):
            raise ConfigError(
                "this embedding was not made by this SAM 2 segmenter; embed the image with "
                "the same segmenter's embed() before predict()"
            )
        return features

    def _prompt_tensors(self, size, prompts: Sequence[Prompt]) -> dict:
        """Boxes and points scaled to the model's input by the processor, on the model's device."""
        height, width = size
        inputs = {}
        if prompts[0].box is not None:
            inputs["input_boxes"] = [[[float(v) for v in p.box] for p in prompts]]
        if prompts[0].points:
            inputs["input_points"] = [[[[float(x), float(y)] for x, y in p.points] for p in prompts]]
            inputs["input_labels"] = [[[1] * len(p.points) for p in prompts]]  # all positive
        encoded = self.processor(original_sizes=[[height, width]], return_tensors="pt", **inputs)
        tensors = {}
        for key in ("input_boxes", "input_points"):
            if key in encoded:
                tensors[key] = encoded[key].to(self.device, self.dtype)
        if "input_labels" in encoded:
            tensors["input_labels"] = encoded["input_labels"].to(self.device)
        return tensors

    def _predict_group(self, features: Sam2Features, size, prompts: Sequence[Prompt]) -> np.ndarray:
        torch = require("torch", purpose="running SAM 2")
        with torch.inference_mode():
            out = self.model(
                image_embeddings=list(features.levels),
                multimask_output=True,
                **self._prompt_tensors(size, prompts),
            )
            # pred_masks: 1 x N x 3 x h x w low-resolution logits; iou_scores: 1 x N x 3
            best = out.iou_scores[0].float().argmax(dim=-1)
            logits = out.pred_masks[0, torch.arange(len(prompts), device=best.device), best]
            # upsampling is per mask, so picking before upsampling gives the same masks, cheaper
            masks = self.processor.post_process_masks(
                [logits[:, None].float()], original_sizes=[list(size)], mask_threshold=0.0, binarize=True
            )[0]
        return masks[:, 0].cpu().numpy()
