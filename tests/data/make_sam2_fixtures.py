"""Rebuild tests/data/sam2_release_reference.npz: the release's SAM 2 results on a tiny model.

Needs the reference package (``SAM2_BUILD_CUDA=0 pip install --no-build-isolation --no-deps
sam2==1.1.0 hydra-core iopath``; no network otherwise). Tests never run this script; they read
the file, so the comparison with the release still runs where ``sam2`` is not installed.

The file holds:

- ``weight/<name>``: the tiny random SAM 2 (built with the sam2 package's classes by
  ``tests/reasoner/release_reference.py``) in transformers' ``Sam2Model`` layout, float16 (the
  weights are float16 values, so this is exact);
- ``pixels/...`` and ``features/...``: strided samples of the sam2 predictor's 1024-px input and
  of its three image feature levels for the first case's satellite image;
- per case ``<case>/stage1_answer``, ``<case>/stage2_answer``, ``<case>/seed``,
  ``<case>/stage1_mask`` and ``<case>/mask`` (768 x 768, bit-packed): the release's stage-1 mask
  (what its render receives) and final mask;
- ``versions``: the sam2, torch and numpy versions that produced it.

Usage: ``python tests/data/make_sam2_fixtures.py``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "sam2_release_reference.npz"
sys.path.insert(0, str(HERE.parent / "reasoner"))

import release_reference as rr  # noqa: E402

PIXEL_STRIDE = 32  # every 32nd row and column of the 3 x 1024 x 1024 input
FEATURE_CELLS = 8  # an 8 x 8 grid of cells of each feature level


def feature_samples(levels) -> dict:
    """Strided samples of 1 x C x h x w feature maps, keyed by level."""
    out = {}
    for i, level in enumerate(levels):
        step = level.shape[-1] // FEATURE_CELLS
        out[f"features/{i}"] = level[0, :, ::step, ::step].float().numpy()
    return out


def build() -> dict:
    """Everything the file holds, computed with the sam2 package."""
    from importlib.metadata import version

    import torch
    from PIL import Image

    model = rr.build_sam2_model(seed=0)
    arrays = {f"weight/{k}": v.half().numpy() for k, v in rr.to_transformers_state_dict(model.state_dict()).items()}
    predictor = rr.predictor(model)
    for k, (name, (stage1, stage2)) in enumerate(rr.CASES.items()):
        map_image, satellite = rr.scene(k)
        result = rr.two_stages(predictor, map_image, satellite, stage1, stage2)
        arrays[f"{name}/seed"] = np.array(k)
        arrays[f"{name}/stage1_answer"] = np.array(stage1)
        arrays[f"{name}/stage2_answer"] = np.array(stage2)
        arrays[f"{name}/stage1_mask"] = np.packbits(result["stage1_mask"])
        arrays[f"{name}/mask"] = np.packbits(result["mask"])
        if k == 0:
            image = Image.fromarray(rr.resize_756(satellite))
            pixels = predictor._transforms(image)
            arrays["pixels/strided"] = pixels[:, ::PIXEL_STRIDE, ::PIXEL_STRIDE].numpy()
            arrays["pixels/middle_row"] = pixels[:, pixels.shape[1] // 2].numpy()
            predictor.set_image(image)
            levels = [*predictor._features["high_res_feats"], predictor._features["image_embed"]]
            arrays.update(feature_samples(levels))
    arrays["versions"] = np.array(f"sam2 {version('sam2')}, torch {torch.__version__}, numpy {np.__version__}")
    return arrays


def main() -> None:
    """Write the file."""
    arrays = build()
    np.savez_compressed(OUTPUT, **arrays)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size / 1024:.0f} kB, {len(arrays)} arrays)")


if __name__ == "__main__":
    main()
