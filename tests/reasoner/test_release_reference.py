"""sociogeo's path from a model answer to the mask, against the released pipeline's, pixel for pixel.

The reference (release_reference.py, next to this file) re-implements the release's SAM and
render steps on the ``sam2`` package's own ``SAM2ImagePredictor``, ``cv2.resize`` and PIL. A tiny
random SAM 2 built with the sam2 package's classes is converted to transformers' layout and
loaded by sociogeo with ``from_pretrained``; scripted answers drive both pipelines.

With ``sam2`` importable, both run live. Without it, the live tests skip (saying why) and the same
comparison runs against tests/data/sam2_release_reference.npz (written by
tests/data/make_sam2_fixtures.py from the same reference): the model's weights and the release's
SAM input, features and masks; the render reference needs only OpenCV and PIL and runs live.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
cv2 = pytest.importorskip("cv2")

import release_reference as rr  # noqa: E402  (tests/reasoner is on sys.path for its tests)

from sociogeo.geo import modelspace  # noqa: E402
from sociogeo.reasoner import SocioReasoner  # noqa: E402
from sociogeo.reasoner.sam.sam2_hf import Sam2Segmenter, release_pixel_values  # noqa: E402
from sociogeo.testing.scripted import ScriptedVLM  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "sam2_release_reference.npz"
CASES = list(rr.CASES)

try:
    import sam2.sam2_image_predictor  # noqa: F401

    SAM2_MISSING = None
except Exception as exc:  # noqa: BLE001 - ImportError, or hydra/omegaconf failing at import
    SAM2_MISSING = f"{type(exc).__name__}: {exc}"

needs_sam2 = pytest.mark.skipif(
    SAM2_MISSING is not None,
    reason=f"the reference package sam2 cannot be imported ({SAM2_MISSING}); install it with "
           "`SAM2_BUILD_CUDA=0 pip install --no-build-isolation --no-deps sam2==1.1.0 hydra-core iopath` "
           "(and their dependencies omegaconf, antlr4-python3-runtime, portalocker). The comparison "
           "with the saved reference (tests/data/sam2_release_reference.npz) runs instead.",
)

# A mask pixel whose logit is within float noise of 0 can flip between two correct
# implementations on other hardware; a handful is tolerated. Every known deviation is far larger:
# transformers' preprocessing moves 100+ pixels per case, the centre-aligned resizes 150+.
MAX_DIFFERENT_PIXELS = 8


def different_pixels(a: np.ndarray, b: np.ndarray) -> int:
    """Number of pixels (rows x columns) where two masks or two images differ."""
    assert a.shape == b.shape
    diff = a != b
    return int(diff.any(axis=-1).sum() if diff.ndim == 3 else diff.sum())


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks (1.0 for two empty ones)."""
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def sociogeo_two_stages(segmenter, map_image, satellite, stage1: str, stage2: str, **reasoner_kw) -> dict:
    """sociogeo's pipeline on scripted answers, in the reference's terms (see rr.two_stages)."""
    vlm = ScriptedVLM(lambda request: stage1 if "Please find" in request.text else stage2)
    prediction = SocioReasoner(vlm, segmenter, **reasoner_kw).predict(map_image, satellite, "the thing")
    map_2, satellite_2 = vlm.calls[1][0].images
    return {"stage1_mask": modelspace.resize_nearest(prediction.stage1_mask, prediction.image_size),
            "stage2_map": map_2, "stage2_satellite": satellite_2, "mask": prediction.mask, "prediction": prediction,
            "stage2_text": vlm.calls[1][0].text}


def assert_same(ours: dict, reference: dict, keys=("stage1_mask", "mask", "stage2_map", "stage2_satellite")):
    """Each output agrees with the reference to within MAX_DIFFERENT_PIXELS (and the masks say so by IoU)."""
    counts = {key: different_pixels(ours[key], reference[key]) for key in keys}
    ious = {key: mask_iou(ours[key], reference[key]) for key in keys if key.endswith("mask")}
    assert all(n <= MAX_DIFFERENT_PIXELS for n in counts.values()), (counts, ious)
    assert all(iou > 0.9999 for iou in ious.values()), (counts, ious)


def saved_case(data, case: str) -> tuple:
    """(map, satellite, stage-1 answer, stage-2 answer, release outputs) of a saved case."""
    map_image, satellite = rr.scene(int(data[f"{case}/seed"]))
    stage1, stage2 = str(data[f"{case}/stage1_answer"]), str(data[f"{case}/stage2_answer"])
    shape = (rr.CHIP_SIZE, rr.CHIP_SIZE)
    masks = {key: np.unpackbits(data[f"{case}/{key}"])[: shape[0] * shape[1]].reshape(shape).astype(bool)
             for key in ("stage1_mask", "mask")}
    return map_image, satellite, stage1, stage2, masks


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved():
    assert FIXTURE.is_file(), "tests/data/sam2_release_reference.npz is missing; run tests/data/make_sam2_fixtures.py"
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def saved_segmenter(saved, tmp_path_factory):
    weights = {key.removeprefix("weight/"): torch.from_numpy(value.astype(np.float32))
               for key, value in saved.items() if key.startswith("weight/")}
    folder = rr.save_as_transformers(weights, tmp_path_factory.mktemp("saved-sam2"))
    return Sam2Segmenter.from_pretrained(folder, device="cpu")


@pytest.fixture(scope="module")
def live():
    """(sam2 predictor, sociogeo segmenter loading the converted weights) of the same tiny model."""
    if SAM2_MISSING is not None:
        pytest.skip(needs_sam2.kwargs["reason"])
    import tempfile

    model = rr.build_sam2_model(seed=0)
    with tempfile.TemporaryDirectory() as folder:
        rr.save_as_transformers(rr.to_transformers_state_dict(model.state_dict()), folder)
        segmenter = Sam2Segmenter.from_pretrained(folder, device="cpu")
    return rr.predictor(model), segmenter, model


# --- live, against the sam2 package --------------------------------------------------------------


@needs_sam2
def test_weight_conversion_fills_every_transformers_weight(live):
    _, segmenter, model = live
    converted = rr.to_transformers_state_dict(model.state_dict())
    expected = transformers.Sam2Model(rr.transformers_config()).state_dict()
    assert converted.keys() == expected.keys()
    assert all(converted[k].shape == expected[k].shape for k in expected)
    loaded = segmenter.model.state_dict()
    assert all(torch.equal(loaded[k], converted[k]) for k in expected)


@needs_sam2
def test_sam_input_and_features_equal_the_sam2_predictors(live):
    from PIL import Image

    predictor, segmenter, _ = live
    satellite = rr.resize_756(rr.scene(0)[1])
    reference = predictor._transforms(Image.fromarray(satellite))
    assert torch.equal(release_pixel_values(satellite, 1024)[0], reference)
    predictor.set_image(Image.fromarray(satellite))
    expected = [*predictor._features["high_res_feats"], predictor._features["image_embed"]]
    (embedding,) = segmenter.embed([satellite])
    for ours, theirs in zip(embedding.features.levels, expected):
        assert ours.shape == theirs.shape
        assert float((ours - theirs).abs().max()) <= 1e-5 * float(theirs.abs().max())


@needs_sam2
@pytest.mark.parametrize("case", CASES)
def test_two_stages_equal_the_release(live, saved, case):
    predictor, segmenter, _ = live
    map_image, satellite = rr.scene(CASES.index(case))
    stage1, stage2 = rr.CASES[case]
    reference = rr.two_stages(predictor, map_image, satellite, stage1, stage2)
    assert 0.01 < reference["mask"].mean() < 0.99  # a blank mask would prove nothing
    assert_same(sociogeo_two_stages(segmenter, map_image, satellite, stage1, stage2), reference)
    # the saved reference is this reference's output (so the offline check compares the same thing)
    assert_same(reference, saved_case(saved, case)[4], keys=("stage1_mask", "mask"))


# --- offline, against the saved reference ----------------------------------------------------------


def test_sam_input_and_features_equal_the_saved_reference(saved, saved_segmenter):
    satellite = rr.resize_756(rr.scene(0)[1])
    pixels = release_pixel_values(satellite, 1024)[0].numpy()
    stride = 1024 // saved["pixels/strided"].shape[-1]
    np.testing.assert_allclose(pixels[:, ::stride, ::stride], saved["pixels/strided"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(pixels[:, 512], saved["pixels/middle_row"], rtol=0, atol=1e-6)
    (embedding,) = saved_segmenter.embed([satellite])
    for i, level in enumerate(embedding.features.levels):
        expected = saved[f"features/{i}"]
        step = level.shape[-1] // expected.shape[-1]
        ours = level[0, :, ::step, ::step].numpy()
        assert np.abs(ours - expected).max() <= 1e-5 * np.abs(expected).max()


@pytest.mark.parametrize("case", CASES)
def test_two_stages_equal_the_saved_reference(saved, saved_segmenter, case):
    map_image, satellite, stage1, stage2, release = saved_case(saved, case)
    ours = sociogeo_two_stages(saved_segmenter, map_image, satellite, stage1, stage2)
    # the render needs no SAM: the reference draws the release's own stage-1 mask, live
    release["stage2_map"], release["stage2_satellite"] = rr.render(
        rr.answer_text(stage1), [rr.resize_756(map_image), rr.resize_756(satellite)], release["stage1_mask"]
    )
    assert_same(ours, release)
    # the stage-2 prompt quotes the stage-1 answer's own text, malformed or not
    assert f"The found bbox(s) are: {rr.answer_text(stage1)}.Please add" in ours["stage2_text"]


def test_the_cases_exercise_what_they_name(saved):
    _, _, stage1, stage2, release = saved_case(saved, "malformed_stage1")
    assert not release["stage1_mask"].any() and release["mask"].any()
    _, _, stage1, stage2, _ = saved_case(saved, "box_past_the_edge")
    assert max(rr.sam_prompts(stage1)[0]["box"]) == 768
    _, _, stage1, stage2, _ = saved_case(saved, "empty_points")
    assert [("point_coords" in p) for p in rr.sam_prompts(stage2)] == [False, False]
    assert "point_coords" in rr.sam_prompts(stage1)[0]  # stage-1 points reach SAM


def test_the_previous_path_differs_from_the_release(saved, saved_segmenter, tmp_path):
    """transformers' preprocessing, the repair parser and centre-aligned resizes each move pixels:
    the comparison above would catch any of them.
    """
    folder = rr.save_as_transformers(saved_segmenter.model.state_dict(), tmp_path / "sam2")
    processor_path = Sam2Segmenter.from_pretrained(folder, device="cpu", preprocess="transformers")
    map_image, satellite, stage1, stage2, release = saved_case(saved, "box_past_the_edge")
    ours = sociogeo_two_stages(processor_path, map_image, satellite, stage1, stage2)
    assert different_pixels(ours["mask"], release["mask"]) > 10 * MAX_DIFFERENT_PIXELS
    repaired = sociogeo_two_stages(saved_segmenter, map_image, satellite, stage1, stage2, parse="repair")
    assert different_pixels(repaired["mask"], release["mask"]) > 10 * MAX_DIFFERENT_PIXELS
    assert repaired["prediction"].parse == "repair" and repaired["prediction"].repairs
