"""SAM v1 checkpoints through segment-anything's own ``SamPredictor``.

A checkpoint is a bare state dict, so the architecture (encoder width, depth, heads, which blocks
attend globally, input size, prompt and decoder sizes) is read off the tensor shapes: the official
ViT-H/L/B files and a test's tiny file load through the same code. ``"vit_h"``, ``"vit_l"`` and
``"vit_b"`` download the official files once into ``sociogeo.options.cache_dir``.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..._optional import require
from ..._progress import progress
from ..._runtime import resolve_device
from ...errors import CacheError, ConfigError, ModelNotFoundError
from ...options import options
from .base import ImageEmbedding, Prompt, check_images, prompt_groups

# Official checkpoints, from the segment-anything README.
SAM1_CHECKPOINTS = {
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
}

# The decoder's head count is not stored in a state dict (it only splits channels); every
# released SAM uses 8.
DECODER_NUM_HEADS = 8

# SamPredictor upsamples all three candidate masks to the image size (3 x H x W floats per
# prompt), so fewer prompts go into one call than with SAM 2.
MAX_PROMPTS_PER_CALL = 16


@dataclass(frozen=True)
class Sam1Architecture:
    """Sizes that define a segment-anything ``Sam``; sizes in pixels, widths in channels."""

    img_size: int
    patch_size: int
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_window_size: int  # in patch-grid cells; 0 when every block is global
    encoder_global_attn_indexes: tuple[int, ...]
    encoder_mlp_ratio: float
    encoder_qkv_bias: bool
    prompt_embed_dim: int
    mask_in_chans: int
    decoder_depth: int
    decoder_mlp_dim: int
    decoder_num_heads: int
    decoder_attention_downsample_rate: int
    num_multimask_outputs: int
    iou_head_depth: int
    iou_head_hidden_dim: int


# --- architecture from a state dict ------------------------------------------------------------


def _tensor(state_dict, key: str):
    if key not in state_dict:
        raise ConfigError(
            f"not a segment-anything SAM checkpoint: it has no {key!r} tensor. Pass a SAM v1 "
            f".pth file (sam_vit_h_4b8939.pth, sam_vit_l_0b3195.pth, sam_vit_b_01ec64.pth) or "
            f"one saved from a segment_anything Sam's state_dict()"
        )
    return state_dict[key]


def _dim(state_dict, key: str, axis: int) -> int:
    return int(_tensor(state_dict, key).shape[axis])


def _indexes(state_dict, prefix: str) -> int:
    """How many numbered children ``prefix.<i>.`` the state dict holds (they must be 0..n-1)."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    found = {int(m.group(1)) for key in state_dict if (m := pattern.match(key))}
    if not found:
        _tensor(state_dict, f"{prefix}.0")  # raises the layout error
    if found != set(range(len(found))):
        raise ConfigError(f"checkpoint layout not understood: {prefix} has blocks {sorted(found)}")
    return len(found)


def _encoder_attention(state_dict, depth: int, embed_dim: int, grid: int) -> tuple[int, int, tuple[int, ...]]:
    """(num_heads, window_size, global block indexes) from the relative-position tables.

    A block's ``rel_pos_h`` is (2 * side - 1) x head_dim, where side is the attention window in
    patch cells: the whole grid for global blocks, the window for windowed ones.
    """
    head_dims, window_sides, global_blocks = set(), set(), []
    for i in range(depth):
        table = _tensor(state_dict, f"image_encoder.blocks.{i}.attn.rel_pos_h")
        side = (table.shape[0] + 1) // 2
        head_dims.add(int(table.shape[1]))
        if side == grid:
            global_blocks.append(i)
        else:
            window_sides.add(side)
    if len(head_dims) != 1 or embed_dim % next(iter(head_dims)):
        raise ConfigError(f"checkpoint layout not understood: encoder head widths {sorted(head_dims)}")
    if len(window_sides) > 1:
        raise ConfigError(f"checkpoint layout not understood: several window sizes {sorted(window_sides)}")
    window = window_sides.pop() if window_sides else 0
    return embed_dim // head_dims.pop(), window, tuple(global_blocks)


def infer_architecture(state_dict) -> Sam1Architecture:
    """The :class:`Sam1Architecture` a SAM v1 state dict was saved from.

    Raises :class:`ConfigError` when the tensors do not follow segment-anything's layout.
    """
    patch = _tensor(state_dict, "image_encoder.patch_embed.proj.weight")  # E x 3 x p x p
    embed_dim, patch_size = int(patch.shape[0]), int(patch.shape[-1])
    grid = _dim(state_dict, "image_encoder.pos_embed", 1)  # 1 x g x g x E
    depth = _indexes(state_dict, "image_encoder.blocks")
    num_heads, window, global_blocks = _encoder_attention(state_dict, depth, embed_dim, grid)
    mlp_dim = _dim(state_dict, "image_encoder.blocks.0.mlp.lin1.weight", 0)

    # positional_encoding_gaussian_matrix is 2 x (D / 2)
    prompt_dim = 2 * _dim(state_dict, "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", 1)
    neck_dim = _dim(state_dict, "image_encoder.neck.0.weight", 0)
    if neck_dim != prompt_dim:
        raise ConfigError(
            f"checkpoint layout not understood: encoder output {neck_dim} channels, prompts {prompt_dim}"
        )
    cross = _dim(state_dict, "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight", 0)
    downsample = prompt_dim // cross
    if (prompt_dim // downsample) % DECODER_NUM_HEADS:
        raise ConfigError(
            f"checkpoint layout not understood: decoder attention width {prompt_dim // downsample} "
            f"does not split into SAM's {DECODER_NUM_HEADS} heads"
        )
    return Sam1Architecture(
        img_size=grid * patch_size,
        patch_size=patch_size,
        encoder_embed_dim=embed_dim,
        encoder_depth=depth,
        encoder_num_heads=num_heads,
        encoder_window_size=window,
        encoder_global_attn_indexes=global_blocks,
        encoder_mlp_ratio=mlp_dim / embed_dim,
        encoder_qkv_bias="image_encoder.blocks.0.attn.qkv.bias" in state_dict,
        prompt_embed_dim=prompt_dim,
        mask_in_chans=_dim(state_dict, "prompt_encoder.mask_downscaling.3.weight", 0),
        decoder_depth=_indexes(state_dict, "mask_decoder.transformer.layers"),
        decoder_mlp_dim=_dim(state_dict, "mask_decoder.transformer.layers.0.mlp.lin1.weight", 0),
        decoder_num_heads=DECODER_NUM_HEADS,
        decoder_attention_downsample_rate=downsample,
        num_multimask_outputs=_dim(state_dict, "mask_decoder.mask_tokens.weight", 0) - 1,
        iou_head_depth=_indexes(state_dict, "mask_decoder.iou_prediction_head.layers"),
        iou_head_hidden_dim=_dim(state_dict, "mask_decoder.iou_prediction_head.layers.0.weight", 0),
    )


def build_sam(arch: Sam1Architecture):
    """An untrained segment-anything ``Sam`` with the sizes of ``arch`` (as ``build_sam.py`` does)."""
    torch = require("torch", purpose="SAM v1")
    modeling = require("segment_anything.modeling", purpose="SAM v1")
    from functools import partial

    grid = arch.img_size // arch.patch_size
    encoder = modeling.ImageEncoderViT(
        img_size=arch.img_size,
        patch_size=arch.patch_size,
        embed_dim=arch.encoder_embed_dim,
        depth=arch.encoder_depth,
        num_heads=arch.encoder_num_heads,
        mlp_ratio=arch.encoder_mlp_ratio,
        out_chans=arch.prompt_embed_dim,
        qkv_bias=arch.encoder_qkv_bias,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=arch.encoder_window_size,
        global_attn_indexes=arch.encoder_global_attn_indexes,
    )
    prompt_encoder = modeling.PromptEncoder(
        embed_dim=arch.prompt_embed_dim,
        image_embedding_size=(grid, grid),
        input_image_size=(arch.img_size, arch.img_size),
        mask_in_chans=arch.mask_in_chans,
    )
    decoder = modeling.MaskDecoder(
        transformer_dim=arch.prompt_embed_dim,
        transformer=modeling.TwoWayTransformer(
            depth=arch.decoder_depth,
            embedding_dim=arch.prompt_embed_dim,
            mlp_dim=arch.decoder_mlp_dim,
            num_heads=arch.decoder_num_heads,
            attention_downsample_rate=arch.decoder_attention_downsample_rate,
        ),
        num_multimask_outputs=arch.num_multimask_outputs,
        iou_head_depth=arch.iou_head_depth,
        iou_head_hidden_dim=arch.iou_head_hidden_dim,
    )
    return modeling.Sam(image_encoder=encoder, prompt_encoder=prompt_encoder, mask_decoder=decoder)


def load_state_dict(path) -> dict:
    """The tensors of a SAM v1 checkpoint file (a bare state dict, or one under ``"model"``)."""
    torch = require("torch", purpose="SAM v1")
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelNotFoundError(
            f"SAM checkpoint {str(path)!r} does not exist; pass the path of a .pth file, or "
            f"'vit_h' / 'vit_l' / 'vit_b' to download an official one"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        raise ConfigError(
            f"{str(path)!r} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc}); "
            f"if it was downloaded, delete it and download it again"
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ConfigError(f"{str(path)!r} holds a {type(state).__name__}, not a SAM state dict")
    return state


# --- official checkpoints ----------------------------------------------------------------------


def checkpoint_path(model_type: str, cache_dir=None) -> Path:
    """Where the official ``model_type`` checkpoint lives in the cache (it may not exist yet)."""
    folder = Path(cache_dir).expanduser() if cache_dir is not None else Path(options.cache_dir)
    return folder / "segment_anything" / SAM1_CHECKPOINTS[model_type].rsplit("/", 1)[1]


def download_checkpoint(model_type: str, *, cache_dir=None, offline: bool | None = None) -> Path:
    """The path of the official ``model_type`` checkpoint, downloading it once if needed.

    The file is written under a temporary name and renamed when complete, so an interrupted
    download never leaves a truncated checkpoint behind. Raises :class:`ModelNotFoundError` when
    offline (``sociogeo.options.offline`` or ``HF_HUB_OFFLINE``) or the server is unreachable.
    """
    if model_type not in SAM1_CHECKPOINTS:
        raise ConfigError(f"unknown SAM v1 model {model_type!r}; use one of {sorted(SAM1_CHECKPOINTS)}")
    url, target = SAM1_CHECKPOINTS[model_type], checkpoint_path(model_type, cache_dir)
    if target.is_file():
        return target
    how = f"download {url} on a connected machine and put it at {target} (or pass its path)"
    if offline is None:
        offline = options.offline_requested()
    if offline:
        raise ModelNotFoundError(
            f"SAM checkpoint {model_type!r} is not cached and offline mode is on "
            f"(sociogeo.options.offline or HF_HUB_OFFLINE): {how}"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(
            f"cannot create {target.parent} ({exc}); set sociogeo.options.cache_dir or pass cache_dir="
        ) from exc
    try:
        _fetch(url, target)
    except OSError as exc:  # requests' errors are IOErrors
        raise ModelNotFoundError(f"could not download SAM checkpoint {model_type!r} ({exc}): {how}") from exc
    return target


def _fetch(url: str, target: Path) -> None:
    import requests

    headers = {"User-Agent": options.user_agent}
    with requests.get(url, stream=True, timeout=options.timeout_s, headers=headers) as response:
        response.raise_for_status()
        expected = int(response.headers.get("Content-Length") or 0) or None
        handle = tempfile.NamedTemporaryFile(
            dir=target.parent, prefix=target.name, suffix=".part", delete=False
        )
        written = 0
        try:
            with handle, progress(total=expected, desc=target.name, unit="B", unit_scale=True) as bar:
                for chunk in response.iter_content(chunk_size=1 << 20):
                    handle.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
            if expected is not None and written != expected:
                raise OSError(f"download ended after {written} of {expected} bytes")
            os.replace(handle.name, target)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise


# --- the segmenter -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sam1Features:
    """``SamPredictor``'s per-image state: 1 x C x h x w features and the two sizes (H, W) in pixels."""

    features: Any
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    owner: int  # id() of the segmenter that made it


class Sam1Segmenter:
    """SAM v1 segmenter over ``segment_anything.SamPredictor``: ``embed`` once, ``predict`` many times.

    Boxes and points are pixel coordinates of the embedded image; masks come back at that
    image's size. Every prompt runs with multimask output and keeps its highest-scoring mask.
    """

    def __init__(self, model, *, name: str = "sam1", batch_size: int = 4):
        segment_anything = require("segment_anything", purpose="SAM v1")
        self.predictor = segment_anything.SamPredictor(model.eval())
        self.name = name
        self.batch_size = int(batch_size)  # images per encoder call in embed()

    @classmethod
    def from_checkpoint(
        cls, path_or_type, *, device=None, cache_dir=None, offline: bool | None = None
    ) -> Sam1Segmenter:
        """Load a SAM v1 ``.pth`` file, or ``"vit_h"``/``"vit_l"``/``"vit_b"`` (downloaded once).

        The architecture is inferred from the file. ``device``: None picks CUDA when available,
        else the CPU. ``cache_dir``: where official checkpoints are kept (default
        ``sociogeo.options.cache_dir``). ``offline``: never download (None follows
        ``sociogeo.options.offline`` and ``HF_HUB_OFFLINE``).
        """
        text = str(path_or_type)
        path = (
            download_checkpoint(text, cache_dir=cache_dir, offline=offline)
            if text in SAM1_CHECKPOINTS
            else Path(text)
        )
        state_dict = load_state_dict(path)
        model = build_sam(infer_architecture(state_dict))
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as exc:
            raise ConfigError(
                f"{str(path)!r} does not match the SAM v1 layout inferred from it: {exc}"
            ) from exc
        name = text if text in SAM1_CHECKPOINTS else path.name
        return cls(model.to(resolve_device(device)), name=f"sam1:{name}")

    @property
    def model(self):
        """The segment-anything ``Sam`` module behind the predictor."""
        return self.predictor.model

    def embed(self, images: Sequence[np.ndarray]) -> list[ImageEmbedding]:
        """Embed H x W x 3 uint8 RGB images; images of one size share an encoder call."""
        torch = require("torch", purpose="SAM v1")
        images = check_images(images)
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            by_size.setdefault(image.shape[:2], []).append(index)
        embeddings: list[ImageEmbedding | None] = [None] * len(images)
        predictor = self.predictor
        for size, indexes in by_size.items():
            for start in range(0, len(indexes), self.batch_size):
                batch = indexes[start : start + self.batch_size]
                resized = np.stack([predictor.transform.apply_image(images[i]) for i in batch])
                pixels = torch.as_tensor(resized, device=predictor.device).permute(0, 3, 1, 2).contiguous()
                # set_torch_image takes a batch as long as the images share one original size
                predictor.set_torch_image(pixels, size)
                for row, i in enumerate(batch):
                    features = Sam1Features(
                        features=predictor.features[row : row + 1],
                        original_size=tuple(size),
                        input_size=tuple(predictor.input_size),
                        owner=id(self),
                    )
                    embeddings[i] = ImageEmbedding(size=tuple(size), features=features)
        predictor.reset_image()
        return embeddings

    def predict(self, embedding: ImageEmbedding, prompts: Sequence[Prompt]) -> np.ndarray:
        """One mask per prompt, (N, H, W) bool at the embedded image's size.

        Prompts of the same layout share one ``predict_torch`` call; each keeps the mask of its
        three (multimask output) with the highest predicted IoU. No prompts gives (0, H, W).
        """
        state = self._restore(embedding)
        masks = np.zeros((len(prompts), *state.original_size), dtype=bool)
        try:
            for indexes in prompt_groups(prompts, MAX_PROMPTS_PER_CALL):
                masks[indexes] = self._predict_group(state, [prompts[i] for i in indexes])
        finally:
            self.predictor.reset_image()
        return masks

    def _restore(self, embedding: ImageEmbedding) -> Sam1Features:
        """Put an embedding back into the predictor, as if ``set_image`` had just run."""
        state = getattr(embedding, "features", None)
        if not isinstance(state, Sam1Features) or state.owner != id(self):
            raise ConfigError(
                "this embedding was not made by this SAM v1 segmenter; embed the image with "
                "the same segmenter's embed() before predict()"
            )
        predictor = self.predictor
        predictor.features = state.features
        predictor.original_size = state.original_size
        predictor.input_size = state.input_size
        predictor.is_image_set = True
        return state

    def _predict_group(self, state: Sam1Features, prompts: Sequence[Prompt]) -> np.ndarray:
        torch = require("torch", purpose="SAM v1")
        predictor = self.predictor
        device = predictor.device
        size = state.original_size
        coords = labels = boxes = None
        if prompts[0].points:
            points = np.array([p.points for p in prompts], dtype=np.float32)  # N x k x 2
            points = predictor.transform.apply_coords(points, size)
            coords = torch.as_tensor(points, dtype=torch.float, device=device)
            labels = torch.ones(points.shape[:2], dtype=torch.int, device=device)  # all positive
        if prompts[0].box is not None:
            box_array = np.array([p.box for p in prompts], dtype=np.float32)  # N x 4
            box_array = predictor.transform.apply_boxes(box_array, size)
            boxes = torch.as_tensor(box_array, dtype=torch.float, device=device)
        masks, scores, _ = predictor.predict_torch(coords, labels, boxes, multimask_output=True)
        best = scores.argmax(dim=1)  # masks: N x 3 x H x W bool, scores: N x 3
        return masks[torch.arange(len(prompts), device=best.device), best].cpu().numpy()
