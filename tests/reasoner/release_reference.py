"""An independent re-implementation of the released SocioReasoner's SAM and render steps.

Written for the tests from the published description of the release, not from sociogeo's code:

- SAM 2 is the ``sam2`` package's own ``SAM2ImagePredictor`` (its preprocessing, prompt encoding
  and mask upsampling), on a tiny randomly initialised model built from the package's classes.
- Answers are read strictly: ``json.loads`` of the text between the first ``<answer>`` and
  ``</answer>``; a list of objects; an object counts when its ``bbox_2d`` is a list of 4; its
  ``points`` (when non-empty) are positive clicks. Nothing is clipped.
- Each satellite image is resized to 756 px with PIL's bicubic filter; one predictor call per
  object (multimask output, the best-scoring mask kept); the kept masks are OR-ed into a 756-px
  mask, which ``cv2.resize`` (nearest) brings to 768 px.
- The stage-2 render takes that 768-px mask back to the 756-px images with ``cv2.resize``
  (nearest), draws the boxes of the stage-1 answer's text in blue (PIL, width 2), then
  composites the mask in red, RGBA (255, 0, 0, 102).

It also converts the tiny model's weights to transformers' ``Sam2Model`` layout, so sociogeo's
own SAM 2 backend can load the same model with ``from_pretrained``. Used by
tests/reasoner/test_release_reference.py and tests/data/make_sam2_fixtures.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

MODEL_SIZE = 756  # the VLM's and SAM's view of a 768-px chip
CHIP_SIZE = 768
SAM_RESOLUTION = 1024  # the released SAM 2's input size; the tiny model keeps it
HIDDEN = 32  # channels of the tiny model's neck, prompt encoder and mask decoder

# ---------------------------------------------------------------------------------------------
# The tiny SAM 2, built with the sam2 package's classes
# ---------------------------------------------------------------------------------------------

_HIERA = {"embed_dim": 8, "num_heads": 1, "stages": [1, 1, 2, 1], "global_att_blocks": [3],
          "window_pos_embed_bkg_spatial_size": [4, 4], "window_spec": [8, 4, 4, 4]}
_DECODER_MLP = 64  # SAM2Base builds 2048; the tiny model swaps in a smaller decoder (same class)
_IOU_HIDDEN = 32


def build_sam2_model(seed: int = 0):
    """A random tiny ``SAM2Base`` with the released Hiera-L's settings at toy widths, 1024-px input.

    Weights are rounded to float16 values (stored as float32), so the fixture file can hold them
    exactly in half the space.
    """
    import torch
    from sam2.modeling.backbones.hieradet import Hiera
    from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
    from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
    from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam.mask_decoder import MaskDecoder
    from sam2.modeling.sam.transformer import RoPEAttention, TwoWayTransformer
    from sam2.modeling.sam2_base import SAM2Base

    def sine(dim):
        return PositionEmbeddingSine(num_pos_feats=dim, normalize=True, scale=None, temperature=10000)

    def rope(**kw):
        return RoPEAttention(rope_theta=10000.0, feat_sizes=[64, 64], embedding_dim=HIDDEN, num_heads=1,
                             downsample_rate=1, dropout=0.0, **kw)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trunk = Hiera(**_HIERA)
        channels = [_HIERA["embed_dim"] * 2**i for i in range(4)][::-1]
        neck = FpnNeck(position_encoding=sine(HIDDEN), d_model=HIDDEN, backbone_channel_list=channels,
                       fpn_top_down_levels=[2, 3], fpn_interp_model="nearest")
        # memory modules are needed to construct SAM2Base; single images never use them
        layer = MemoryAttentionLayer(activation="relu", dim_feedforward=16, dropout=0.0, pos_enc_at_attn=False,
                                     self_attention=rope(), d_model=HIDDEN, pos_enc_at_cross_attn_keys=True,
                                     pos_enc_at_cross_attn_queries=False, cross_attention=rope(rope_k_repeat=True,
                                                                                                kv_in_dim=8))
        memory_encoder = MemoryEncoder(
            out_dim=8, position_encoding=sine(8), mask_downsampler=MaskDownSampler(kernel_size=3, stride=2, padding=1),
            fuser=Fuser(CXBlock(dim=HIDDEN, kernel_size=7, padding=3, layer_scale_init_value=1e-6, use_dwconv=True),
                        num_layers=1),
        )
        model = SAM2Base(
            image_encoder=ImageEncoder(trunk=trunk, neck=neck, scalp=1),
            memory_attention=MemoryAttention(d_model=HIDDEN, pos_enc_at_input=True, layer=layer, num_layers=1),
            memory_encoder=memory_encoder, num_maskmem=7, image_size=SAM_RESOLUTION,
            sigmoid_scale_for_mem_enc=20.0, sigmoid_bias_for_mem_enc=-10.0,
            use_mask_input_as_output_without_sam=True, directly_add_no_mem_embed=True,
            use_high_res_features_in_sam=True, multimask_output_in_sam=True, iou_prediction_use_sigmoid=True,
            use_obj_ptrs_in_encoder=True, add_tpos_enc_to_obj_ptrs=False, only_obj_ptrs_in_the_past_for_eval=True,
            pred_obj_scores=True, pred_obj_scores_mlp=True, fixed_no_obj_ptr=True,
            multimask_output_for_tracking=True, use_multimask_token_for_obj_ptr=True, multimask_min_pt_num=0,
            multimask_max_pt_num=1, use_mlp_for_obj_ptr_proj=True, compile_image_encoder=False,
        )
        model.sam_mask_decoder = MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=HIDDEN, mlp_dim=_DECODER_MLP, num_heads=8),
            transformer_dim=HIDDEN, iou_head_depth=3, iou_head_hidden_dim=_IOU_HIDDEN, use_high_res_features=True,
            iou_prediction_use_sigmoid=True, pred_obj_scores=True, pred_obj_scores_mlp=True,
            use_multimask_token_for_obj_ptr=True,
        )
        with torch.no_grad():
            # Random weights leave mask logits near 0 (thresholding them would be noise) and
            # positional tables near 0; stronger hypernetworks and tables give masks with shape.
            for mlp in model.sam_mask_decoder.output_hypernetworks_mlps:
                mlp.layers[-1].weight.mul_(10.0)
            trunk.pos_embed.normal_(0.0, 0.5)
            trunk.pos_embed_window.normal_(0.0, 0.5)
            for tensor in model.state_dict().values():
                if tensor.is_floating_point():
                    tensor.copy_(tensor.half().float())
    return model.eval()


def predictor(model):
    """The sam2 package's image predictor around ``model`` (threshold 0, no hole filling)."""
    import warnings

    from sam2.sam2_image_predictor import SAM2ImagePredictor

    with warnings.catch_warnings():  # the package scripts its transforms with torch.jit, which torch deprecates
        warnings.simplefilter("ignore", FutureWarning)
        return SAM2ImagePredictor(model)


# ---------------------------------------------------------------------------------------------
# Weights in transformers' layout
# ---------------------------------------------------------------------------------------------


def transformers_config():
    """The ``transformers.Sam2Config`` with the tiny model's sizes."""
    import transformers

    dims = [_HIERA["embed_dim"] * 2**i for i in range(4)]
    backbone = transformers.Sam2HieraDetConfig(
        hidden_size=_HIERA["embed_dim"], num_attention_heads=_HIERA["num_heads"],
        image_size=[SAM_RESOLUTION, SAM_RESOLUTION], blocks_per_stage=_HIERA["stages"], embed_dim_per_stage=dims,
        num_attention_heads_per_stage=[_HIERA["num_heads"] * 2**i for i in range(4)],
        window_size_per_stage=_HIERA["window_spec"], global_attention_blocks=_HIERA["global_att_blocks"],
        window_positional_embedding_background_size=_HIERA["window_pos_embed_bkg_spatial_size"],
    )
    sizes = [[SAM_RESOLUTION // s] * 2 for s in (4, 8, 16)]
    vision = transformers.Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=dims[::-1],
                                           backbone_feature_sizes=sizes, fpn_hidden_size=HIDDEN)
    prompt = transformers.Sam2PromptEncoderConfig(hidden_size=HIDDEN, image_size=SAM_RESOLUTION, patch_size=16,
                                                  mask_input_channels=16)
    decoder = transformers.Sam2MaskDecoderConfig(hidden_size=HIDDEN, mlp_dim=_DECODER_MLP, num_attention_heads=8,
                                                 iou_head_hidden_dim=_IOU_HIDDEN)
    return transformers.Sam2Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


# (pattern, replacement) applied in order to every sam2 key the image model uses
_RENAMES = [
    (r"^no_mem_embed$", "no_memory_embedding"),
    (r"^image_encoder\.trunk\.", "vision_encoder.backbone."),
    (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
    (r"\.patch_embed\.proj\.", ".patch_embed.projection."),
    (r"^sam_prompt_encoder\.", "prompt_encoder."),
    (r"^prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$",
     "prompt_encoder.shared_embedding.positional_embedding"),
    (r"\.mask_downscaling\.0\.", ".mask_embed.conv1."),
    (r"\.mask_downscaling\.1\.", ".mask_embed.layer_norm1."),
    (r"\.mask_downscaling\.3\.", ".mask_embed.conv2."),
    (r"\.mask_downscaling\.4\.", ".mask_embed.layer_norm2."),
    (r"\.mask_downscaling\.6\.", ".mask_embed.conv3."),
    (r"^sam_mask_decoder\.", "mask_decoder."),
    (r"\.output_upscaling\.0\.", ".upscale_conv1."),
    (r"\.output_upscaling\.1\.", ".upscale_layer_norm."),
    (r"\.output_upscaling\.3\.", ".upscale_conv2."),
    (r"\.out_proj\.", ".o_proj."),
    (r"\.norm_final_attn\.", ".layer_norm_final_attn."),
    (r"\.norm(\d)\.", r".layer_norm\1."),
    # two-layer MLPs (Hiera blocks, decoder transformer): layers.0/1 -> proj_in/proj_out
    (r"(blocks\.\d+|transformer\.layers\.\d+)\.mlp\.layers\.0\.", r"\1.mlp.proj_in."),
    (r"(blocks\.\d+|transformer\.layers\.\d+)\.mlp\.layers\.1\.", r"\1.mlp.proj_out."),
    # three-layer MLP heads: layers.0 -> proj_in, layers.1 -> layers.0, layers.2 -> proj_out
    (r"(output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head)\.layers\.0\.", r"\1.proj_in."),
    (r"(output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head)\.layers\.1\.", r"\1.layers.0."),
    (r"(output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head)\.layers\.2\.", r"\1.proj_out."),
]
# video-only parts of SAM2Base that the image model does not have
_VIDEO_ONLY = re.compile(r"^(memory_attention|memory_encoder|maskmem_|obj_ptr_|no_mem_pos_enc|no_obj_ptr|"
                         r"mask_downsample)")
_POINT_EMBEDDING = re.compile(r"^sam_prompt_encoder\.point_embeddings\.(\d+)\.weight$")


def to_transformers_state_dict(state_dict: dict) -> dict:
    """A sam2 ``SAM2Base`` state dict renamed to transformers' ``Sam2Model`` keys."""
    import torch

    out, points = {}, {}
    for key, value in state_dict.items():
        if _VIDEO_ONLY.match(key):
            continue
        match = _POINT_EMBEDDING.match(key)
        if match:  # four 1 x C embeddings become one 4 x C table
            points[int(match.group(1))] = value
            continue
        new = key
        for pattern, replacement in _RENAMES:
            new = re.sub(pattern, replacement, new)
        out[new] = value
    out["prompt_encoder.point_embed.weight"] = torch.cat([points[i] for i in sorted(points)], dim=0)
    # the image-wide positional table is the prompt encoder's, shared
    out["shared_image_embedding.positional_embedding"] = out["prompt_encoder.shared_embedding.positional_embedding"]
    return out


def save_as_transformers(state_dict: dict, folder) -> Path:
    """Write the tiny model (weights already in transformers' layout) as a SAM 2 folder; returns it.

    Loading is strict: every transformers weight must be given, and nothing else.
    """
    import transformers

    folder = Path(folder)
    model = transformers.Sam2Model(transformers_config()).eval()
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise AssertionError(f"weight conversion incomplete: missing {missing}, unexpected {unexpected}")
    model.save_pretrained(folder)
    size = {"height": SAM_RESOLUTION, "width": SAM_RESOLUTION}
    processor = transformers.Sam2ImageProcessor(size=size, mask_size={"height": 256, "width": 256})
    transformers.Sam2Processor(image_processor=processor).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------
# The release's parsing, SAM calls and render
# ---------------------------------------------------------------------------------------------


def answer_json(response: str):
    """The JSON value between the first <answer> and </answer> (stripped), or None."""
    match = re.search(r"<answer>(.*?)</answer>", response, re.DOTALL)
    if match is None:
        return None
    try:
        return json.loads(match.group(1).strip())
    except json.JSONDecodeError:
        return None


def sam_prompts(response: str) -> list[dict]:
    """predictor.predict keyword arguments for each object of the answer (box, positive points)."""
    data = answer_json(response)
    if not isinstance(data, list):
        return []
    prompts = []
    for obj in data:
        if not isinstance(obj, dict):
            continue
        box = obj.get("bbox_2d", [])
        try:
            points = [[p[0], p[1]] for p in obj.get("points", [])]
        except (TypeError, IndexError, KeyError):
            continue
        if not (isinstance(box, list) and len(box) == 4):
            continue
        try:  # SAM2ImagePredictor turns these into float tensors; where that fails the prompt is skipped
            import torch

            prompt = {"box": np.array(box)}
            if points:
                prompt["point_coords"] = np.array(points)
                prompt["point_labels"] = np.ones(len(points), dtype=int)
            for key in ("box", "point_coords"):
                if key in prompt:
                    torch.as_tensor(prompt[key], dtype=torch.float)
        except (TypeError, ValueError, RuntimeError):
            continue
        prompts.append(prompt)
    return prompts


def resize_756(image: np.ndarray) -> np.ndarray:
    """A 768-px chip image as the release gives it to the VLM and SAM (PIL bicubic, 756 px)."""
    from PIL import Image

    return np.array(Image.fromarray(image).resize((MODEL_SIZE, MODEL_SIZE), Image.Resampling.BICUBIC))


def segment(sam_predictor, satellite_756: np.ndarray, response: str) -> np.ndarray:
    """The release's mask for one answer: 768 x 768 uint8 (0/1)."""
    import cv2
    from PIL import Image

    prompts = sam_prompts(response)
    if not prompts:
        return np.zeros((CHIP_SIZE, CHIP_SIZE), np.uint8)
    sam_predictor.set_image(Image.fromarray(satellite_756))
    mask = np.zeros((MODEL_SIZE, MODEL_SIZE), np.uint8)
    for prompt in prompts:
        masks, scores, _ = sam_predictor.predict(multimask_output=True, **prompt)
        mask = np.logical_or(mask, masks[np.argmax(scores)]).astype(np.uint8)
    return cv2.resize(mask, (CHIP_SIZE, CHIP_SIZE), interpolation=cv2.INTER_NEAREST)


def answer_text(response: str) -> str:
    """The stage-1 answer's own text (the stage-2 prompt's ``{boxes}``)."""
    match = re.search(r"<answer>(.*?)</answer>", response, re.DOTALL)
    return match.group(1).strip() if match else ""


def render_boxes(boxes_text: str) -> list:
    """The boxes the render tries to draw: every object of the JSON list with a 4-long ``bbox_2d``."""
    try:
        data = json.loads(boxes_text)
        if not isinstance(data, list):
            return []
        return [item["bbox_2d"] for item in data if isinstance(item, dict) and "bbox_2d" in item
                and len(item["bbox_2d"]) == 4]
    except (json.JSONDecodeError, TypeError):
        return []


def render(boxes_text: str, images: list[np.ndarray], mask_768: np.ndarray) -> list[np.ndarray]:
    """Both 756-px images with the stage-1 boxes (blue) and mask (red, alpha 102) drawn on."""
    import cv2
    from PIL import Image, ImageDraw

    height, width = images[0].shape[:2]
    mask = cv2.resize(np.asarray(mask_768), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    overlay = np.zeros((height, width, 4), np.uint8)
    overlay[mask] = [255, 0, 0, int(255 * 0.4)]
    boxes = render_boxes(boxes_text)
    out = []
    for image in images:
        canvas = Image.fromarray(image).convert("RGBA")
        draw = ImageDraw.Draw(canvas)
        for box in boxes:
            try:
                draw.rectangle([(box[0], box[1]), (box[2], box[3])], outline="blue", width=2)
            except Exception:  # noqa: BLE001 - PIL refuses inverted or non-numeric corners; not drawn
                continue
        canvas = Image.alpha_composite(canvas, Image.fromarray(overlay, "RGBA"))
        out.append(np.array(canvas.convert("RGB")))
    return out


def two_stages(sam_predictor, map_768: np.ndarray, satellite_768: np.ndarray, stage1: str, stage2: str) -> dict:
    """The release's pipeline for scripted answers: stage-1 mask (768), stage-2 images (756), final mask (768)."""
    map_756, satellite_756 = resize_756(map_768), resize_756(satellite_768)
    mask1 = segment(sam_predictor, satellite_756, stage1)
    rendered = render(answer_text(stage1), [map_756, satellite_756], mask1)
    final = segment(sam_predictor, satellite_756, stage2)
    return {"stage1_mask": mask1.astype(bool), "stage2_map": rendered[0], "stage2_satellite": rendered[1],
            "mask": final.astype(bool)}


# ---------------------------------------------------------------------------------------------
# The scenes and answers both implementations are run on
# ---------------------------------------------------------------------------------------------


def scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 768-px (map, satellite) pair of flat rectangles on a gradient (compresses well)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, 120, CHIP_SIZE, dtype=np.float64)
    pair = []
    for _ in range(2):
        image = np.stack([np.add.outer(ramp, ramp[::-1]) / 2 + 20 * c for c in range(3)], axis=-1)
        for _ in range(6):
            y, x = rng.integers(0, CHIP_SIZE - 200, 2)
            h, w = rng.integers(60, 200, 2)
            image[y:y + h, x:x + w] = rng.integers(90, 255, 3)
        pair.append(np.clip(image, 0, 255).astype(np.uint8))
    return pair[0], pair[1]


def _answer(items) -> str:
    return f"<think>scripted</think><answer>{json.dumps(items) if not isinstance(items, str) else items}</answer>"


# name -> (stage-1 answer, stage-2 answer); boxes in the 756-px space
CASES = {
    "boxes_and_points": (
        _answer([{"bbox_2d": [100, 120, 380, 400]}, {"bbox_2d": [420.5, 60, 700, 300]}]),
        _answer([{"bbox_2d": [100, 120, 380, 400], "points": [[200, 250], [300, 300]]},
                 {"bbox_2d": [420.5, 60, 700, 300], "points": [[500, 150]]}]),
    ),
    "box_past_the_edge": (  # a box reaching 768 (rewards used 768-px boxes); its point is off the image
        _answer([{"bbox_2d": [500, 450, 768, 768]}]),
        _answer([{"bbox_2d": [500, 450, 768, 768], "points": [[600, 600], [760, 700]]}]),
    ),
    "malformed_stage1": (  # not JSON (trailing comma): no prompts, an empty stage-1 mask, no boxes drawn
        _answer('[{"bbox_2d": [100, 100, 300, 300]},]'),
        _answer([{"bbox_2d": [100, 100, 300, 300], "points": [[200, 200]]}]),
    ),
    "empty_points": (  # "points": [] is a box-only prompt; points in a stage-1 answer go to SAM too
        _answer([{"bbox_2d": [200, 200, 560, 520], "points": [[380, 360]]}]),
        _answer([{"bbox_2d": [200, 200, 560, 520], "points": []}, {"bbox_2d": [40, 500, 240, 740]}]),
    ),
}
