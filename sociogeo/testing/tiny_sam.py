"""Tiny SAM models with random weights, written to disk for offline tests.

Both follow the real models' architectures at a toy size (256 x 256 pixel inputs, a few blocks,
32 channels) so a test exercises the real transformers / segment-anything classes and the same
loading code as the released checkpoints, in well under a second per image on a CPU.
"""

from __future__ import annotations

from pathlib import Path

from .._optional import require
from ..reasoner.kind import write_kind

TINY_IMAGE_SIZE = 256  # pixels, square model input of both tiny models
_PATCH = 16  # pixels per cell of the prompt encoder / ViT grid (as in the real models)


def tiny_sam2_config():
    """A small ``Sam2Config``: 4-stage Hiera (5 blocks, 16-128 channels), 32-channel FPN and decoder."""
    transformers = require("transformers", purpose="tiny SAM 2 test models")
    size = TINY_IMAGE_SIZE
    backbone = transformers.Sam2HieraDetConfig(
        hidden_size=16,
        num_attention_heads=1,
        image_size=[size, size],
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[16, 32, 64, 128],
        num_attention_heads_per_stage=[1, 1, 2, 2],
        # the first window must tile the 64 x 64 patch grid; later windows stay smaller than their maps
        window_size_per_stage=[8, 4, 4, 4],
        # a stage's first block pools queries and must be windowed, so the global block is the 4th
        global_attention_blocks=[3],
        window_positional_embedding_background_size=[4, 4],
    )
    # Hiera's stages run at strides 4, 8, 16 and 32 pixels; SAM 2 keeps the three finest.
    feature_sizes = [[size // 4, size // 4], [size // 8, size // 8], [size // 16, size // 16]]
    vision = transformers.Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[128, 64, 32, 16],
        backbone_feature_sizes=feature_sizes,
        fpn_hidden_size=32,
    )
    prompt = transformers.Sam2PromptEncoderConfig(
        hidden_size=32, image_size=size, patch_size=_PATCH, mask_input_channels=4
    )
    decoder = transformers.Sam2MaskDecoderConfig(
        hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32
    )
    return transformers.Sam2Config(
        vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder
    )


def make_tiny_sam2(directory, seed: int = 0) -> Path:
    """Save a random tiny SAM 2 model and its processor to ``directory``; returns the folder.

    The folder loads with ``Sam2Segmenter.from_pretrained(folder)`` like a hub checkpoint. The
    processor resizes to the model's 256 x 256 input, so prompt coordinates and masks line up.
    """
    torch = require("torch", purpose="tiny SAM 2 test models")
    transformers = require("transformers", purpose="tiny SAM 2 test models")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(seed)
        model = _random_tiny_sam2(torch, transformers)
    model.save_pretrained(directory)

    size = {"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
    image_processor = transformers.Sam2ImageProcessor(size=size, mask_size={"height": 64, "width": 64})
    transformers.Sam2Processor(image_processor=image_processor).save_pretrained(directory)
    write_kind(directory, "untrained")  # loaded from this folder, it is still labelled untrained
    return directory


def _random_tiny_sam2(torch, transformers):
    model = transformers.Sam2Model(tiny_sam2_config()).eval()
    # transformers initialises weights with std 0.02, which at this width leaves every mask logit
    # near zero (a threshold at 0 would be noise) and the three IoU scores tied; PyTorch's default
    # fan-in scaling gives masks with clear foreground and background and distinct scores.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                module.reset_parameters()
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(10.0)
    return model


# How the tiny SAM v1 is built; tests compare the architecture inferred from its file to this.
TINY_SAM1 = {
    "img_size": TINY_IMAGE_SIZE,
    "patch_size": _PATCH,
    "encoder_embed_dim": 32,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_window_size": 4,  # cells of the 16 x 16 patch grid
    "encoder_global_attn_indexes": (1,),
    "encoder_mlp_ratio": 4.0,
    "encoder_qkv_bias": True,
    "prompt_embed_dim": 32,
    "mask_in_chans": 8,
    "decoder_depth": 2,
    "decoder_mlp_dim": 64,
    "decoder_num_heads": 8,  # not stored in a state dict; SAM's value, so inference can assume it
    "decoder_attention_downsample_rate": 2,
    "num_multimask_outputs": 3,
    "iou_head_depth": 3,
    "iou_head_hidden_dim": 32,
}


def make_tiny_sam1(path, seed: int = 0) -> Path:
    """Save the state dict of a random tiny segment-anything ``Sam`` to ``path`` (.pth); returns it.

    Built from segment-anything's modeling classes with the sizes in :data:`TINY_SAM1`: a ViT
    encoder (embed_dim 32, depth 2, 2 heads, 256 x 256 input, block 0 windowed, block 1 global),
    a prompt encoder and a mask decoder at 32 channels. The file has the layout of the official
    checkpoints, so ``Sam1Segmenter.from_checkpoint(path)`` loads it through the same code.
    """
    torch = require("torch", purpose="tiny SAM v1 test models")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(seed)
        sam = _random_tiny_sam1(torch)
    torch.save(sam.state_dict(), path)
    write_kind(path, "untrained")  # beside the checkpoint: <file>.sociogeo.json
    return path


def _random_tiny_sam1(torch):
    modeling = require("segment_anything.modeling", purpose="tiny SAM v1 test models")
    from functools import partial

    t = TINY_SAM1
    grid = t["img_size"] // t["patch_size"]
    encoder = modeling.ImageEncoderViT(
        img_size=t["img_size"],
        patch_size=t["patch_size"],
        embed_dim=t["encoder_embed_dim"],
        depth=t["encoder_depth"],
        num_heads=t["encoder_num_heads"],
        mlp_ratio=t["encoder_mlp_ratio"],
        out_chans=t["prompt_embed_dim"],
        qkv_bias=t["encoder_qkv_bias"],
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        rel_pos_zero_init=False,
        window_size=t["encoder_window_size"],
        global_attn_indexes=t["encoder_global_attn_indexes"],
    )
    prompt_encoder = modeling.PromptEncoder(
        embed_dim=t["prompt_embed_dim"],
        image_embedding_size=(grid, grid),
        input_image_size=(t["img_size"], t["img_size"]),
        mask_in_chans=t["mask_in_chans"],
    )
    decoder = modeling.MaskDecoder(
        transformer_dim=t["prompt_embed_dim"],
        transformer=modeling.TwoWayTransformer(
            depth=t["decoder_depth"],
            embedding_dim=t["prompt_embed_dim"],
            mlp_dim=t["decoder_mlp_dim"],
            num_heads=t["decoder_num_heads"],
            attention_downsample_rate=t["decoder_attention_downsample_rate"],
        ),
        num_multimask_outputs=t["num_multimask_outputs"],
        iou_head_depth=t["iou_head_depth"],
        iou_head_hidden_dim=t["iou_head_hidden_dim"],
    )
    sam = modeling.Sam(image_encoder=encoder, prompt_encoder=prompt_encoder, mask_decoder=decoder)
    with torch.no_grad():
        # Random init leaves mask logits near zero, where a threshold at 0 is noise; scaling the
        # hypernetwork outputs gives masks with clear foreground and background.
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(8.0)
    return sam.eval()
