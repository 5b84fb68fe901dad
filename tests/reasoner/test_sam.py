"""SAM backends on tiny random models, through the real transformers / segment-anything classes.

Offline and on the CPU: the tiny models are written by sociogeo.testing.tiny_sam into temporary
folders; the only "download" goes to an HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
from http.server import BaseHTTPRequestHandler

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
segment_anything = pytest.importorskip("segment_anything")

from sociogeo.errors import ConfigError, ModelNotFoundError  # noqa: E402
from sociogeo.reasoner.sam import base  # noqa: E402
from sociogeo.reasoner.sam.base import ImageEmbedding, Prompt, Segmenter  # noqa: E402
from sociogeo.reasoner.sam.sam1 import (  # noqa: E402
    SAM1_CHECKPOINTS,
    Sam1Architecture,
    Sam1Segmenter,
    checkpoint_path,
    infer_architecture,
    load_state_dict,
)
from sociogeo.reasoner.sam.sam2_hf import Sam2Segmenter  # noqa: E402
from sociogeo.testing.tiny_sam import TINY_SAM1, make_tiny_sam1, make_tiny_sam2  # noqa: E402

H, W = 240, 320  # a non-square image, so x/y or height/width mix-ups show

PROMPTS = [
    Prompt(box=(20, 30, 180, 200)),
    Prompt(points=((60.0, 50.0),)),
    Prompt(box=(100, 40, 300, 220), points=((150, 100), (200, 150), (250, 120))),
    Prompt(points=((30, 200), (280, 20))),
    Prompt(box=(0, 0, W - 1, H - 1)),
    Prompt(box=(150, 120, 310, 230), points=((200, 180), (290, 220), (160, 130))),
]


def scene(seed: int) -> np.ndarray:
    """An H x W x 3 uint8 'satellite' image: noisy background with a few flat rectangles."""
    rng = np.random.default_rng(seed)
    image = rng.integers(40, 90, (H, W, 3), dtype=np.uint8)
    for _ in range(4):
        y, x = rng.integers(0, H - 60), rng.integers(0, W - 80)
        image[y : y + rng.integers(30, 60), x : x + rng.integers(40, 80)] = rng.integers(120, 255, 3)
    return image


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of equal pixels. Logits within float noise of 0 may flip, hence not exact equality."""
    assert a.shape == b.shape
    return float((a == b).mean())


def nontrivial(masks: np.ndarray) -> bool:
    """Each mask has foreground and background (a comparison of blank masks would prove nothing)."""
    fractions = masks.reshape(len(masks), -1).mean(axis=1)
    return bool(np.all((fractions > 0) & (fractions < 1)))


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sam2_dir(tmp_path_factory):
    return make_tiny_sam2(tmp_path_factory.mktemp("tiny-sam2"), seed=0)


@pytest.fixture(scope="module")
def sam1_path(tmp_path_factory):
    return make_tiny_sam1(tmp_path_factory.mktemp("tiny-sam1") / "tiny_sam1.pth", seed=0)


@pytest.fixture(scope="module")
def images():
    return [scene(1), scene(2)]


def load(backend: str, sam2_dir, sam1_path):
    if backend == "sam2":
        return Sam2Segmenter.from_pretrained(sam2_dir, device="cpu")
    if backend == "sam2-transformers":
        return Sam2Segmenter.from_pretrained(sam2_dir, device="cpu", preprocess="transformers")
    return Sam1Segmenter.from_checkpoint(sam1_path, device="cpu")


@pytest.fixture(scope="module", params=["sam2", "sam2-transformers", "sam1"])
def segmenter(request, sam2_dir, sam1_path):
    return load(request.param, sam2_dir, sam1_path)


def direct_multimask(segmenter, image: np.ndarray, prompt: Prompt):
    """(3 x H x W bool masks, 3 scores) from the underlying model in one forward pass from pixels.

    SAM 2 with the release's steps: the model's own forward on the sam2 package's input, prompt
    and upsampling (release_reference.py checks those against the sam2 package itself); with
    ``preprocess="transformers"``: the processor's own calls.
    """
    if isinstance(segmenter, Sam2Segmenter) and segmenter.preprocess == "release":
        from sociogeo.reasoner.sam.sam2_hf import release_prompt_points

        points, labels = release_prompt_points(prompt, image.shape[:2], segmenter.resolution)
        with torch.no_grad():
            out = segmenter.model(pixel_values=segmenter.pixel_values([image]), input_points=points[None],
                                  input_labels=labels[None], multimask_output=True)
            logits = torch.nn.functional.interpolate(out.pred_masks[0], size=image.shape[:2], mode="bilinear",
                                                     align_corners=False)
        return (logits[0] > 0).numpy(), out.iou_scores[0, 0].numpy()
    if isinstance(segmenter, Sam2Segmenter):
        inputs = {}
        if prompt.box is not None:
            inputs["input_boxes"] = [[list(prompt.box)]]
        if prompt.points:
            inputs["input_points"] = [[[list(p) for p in prompt.points]]]
            inputs["input_labels"] = [[[1] * len(prompt.points)]]
        encoded = segmenter.processor(images=[image], return_tensors="pt", **inputs)
        with torch.no_grad():
            out = segmenter.model(**encoded, multimask_output=True)
        masks = segmenter.processor.post_process_masks(out.pred_masks, encoded["original_sizes"])[0][0]
        return masks.numpy(), out.iou_scores[0, 0].numpy()
    predictor = segment_anything.SamPredictor(segmenter.model)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(
        point_coords=np.array(prompt.points, dtype=float) if prompt.points else None,
        point_labels=np.ones(len(prompt.points)) if prompt.points else None,
        box=np.array(prompt.box, dtype=float) if prompt.box is not None else None,
        multimask_output=True,
    )
    return masks, scores


def favour(segmenter, index: int) -> None:
    """Bias the IoU head so candidate ``index`` (of the three multimask outputs) scores highest.

    Output 0 of the head belongs to the single-mask token, so candidate i is output i + 1.
    """
    if isinstance(segmenter, Sam2Segmenter):
        head = segmenter.model.mask_decoder.iou_prediction_head.proj_out
    else:
        head = segmenter.model.mask_decoder.iou_prediction_head.layers[-1]
    with torch.no_grad():
        head.bias[index + 1] += 20.0


# --- shapes and types --------------------------------------------------------------------------


def test_segmenters_follow_the_protocol(segmenter):
    assert isinstance(segmenter, Segmenter)
    assert segmenter.name.startswith(("sam2:", "sam1:"))


@pytest.mark.parametrize(
    "prompts",
    [
        [PROMPTS[0]],  # a box
        [PROMPTS[1]],  # a point
        [PROMPTS[2]],  # a box and points (stage 2)
        PROMPTS,  # several of mixed layouts
        [],
    ],
    ids=["box", "point", "box+points", "several", "none"],
)
def test_predict_shapes_and_dtype(segmenter, images, prompts):
    (embedding,) = segmenter.embed(images[:1])
    assert isinstance(embedding, ImageEmbedding)
    assert tuple(embedding.size) == (H, W)
    masks = segmenter.predict(embedding, prompts)
    assert isinstance(masks, np.ndarray)
    assert masks.dtype == bool
    assert masks.shape == (len(prompts), H, W)
    if prompts:
        assert nontrivial(masks)
    merged = base.union(masks, (H, W))
    assert merged.shape == (H, W) and merged.dtype == bool
    assert merged.sum() == np.any(masks, axis=0).sum() if prompts else merged.sum() == 0


def test_embed_rejects_bad_images(segmenter, images):
    with pytest.raises(ConfigError, match="wrap a single image"):
        segmenter.embed(images[0])
    with pytest.raises(ConfigError, match="H x W x 3 uint8"):
        segmenter.embed([images[0].astype(np.float32)])
    with pytest.raises(ConfigError, match="H x W x 3 uint8"):
        segmenter.embed([images[0][..., 0]])


def test_predict_rejects_an_embedding_from_another_model(sam2_dir, sam1_path, images):
    sam2 = load("sam2", sam2_dir, sam1_path)
    sam1 = load("sam1", sam2_dir, sam1_path)
    (from_sam2,) = sam2.embed(images[:1])
    (from_sam1,) = sam1.embed(images[:1])
    with pytest.raises(ConfigError, match="same segmenter"):
        sam1.predict(from_sam2, PROMPTS[:1])
    with pytest.raises(ConfigError, match="same segmenter"):
        sam2.predict(from_sam1, PROMPTS[:1])


# --- best-mask selection -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sam2", "sam2-transformers", "sam1"])
@pytest.mark.parametrize("favoured", [None, 0, 2])
def test_keeps_the_best_scoring_of_three_masks(backend, favoured, sam2_dir, sam1_path, images):
    segmenter = load(backend, sam2_dir, sam1_path)
    if favoured is not None:
        favour(segmenter, favoured)
    image = images[0]
    masks = segmenter.predict(segmenter.embed([image])[0], PROMPTS)
    for i, prompt in enumerate(PROMPTS):
        candidates, scores = direct_multimask(segmenter, image, prompt)
        assert candidates.shape == (3, H, W)
        best = int(np.argmax(scores))
        if favoured is not None:
            assert best == favoured
        # the choice matters: some other candidate differs clearly from the best one
        assert min(agreement(candidates[best], c) for c in candidates) < 0.99
        assert agreement(masks[i], candidates[best]) > 0.999


# --- embedding reuse and batching --------------------------------------------------------------


def test_one_embedding_answers_several_prompt_sets(segmenter, images):
    first, second = PROMPTS[:2], PROMPTS[2:]
    (embedding,) = segmenter.embed(images[:1])
    reused_first = segmenter.predict(embedding, first)
    segmenter.embed(images[1:])  # another image in between must not disturb the stored one
    reused_second = segmenter.predict(embedding, second)

    fresh_first = segmenter.predict(segmenter.embed(images[:1])[0], first)
    fresh_second = segmenter.predict(segmenter.embed(images[:1])[0], second)
    assert nontrivial(reused_first) and nontrivial(reused_second)
    assert agreement(reused_first, fresh_first) > 0.999
    assert agreement(reused_second, fresh_second) > 0.999


def test_batched_embed_equals_separate_embeds(segmenter, images):
    together = segmenter.embed(images)
    separate = [segmenter.embed([image])[0] for image in images]
    assert len(together) == 2
    for joint, alone in zip(together, separate):
        assert agreement(segmenter.predict(joint, PROMPTS), segmenter.predict(alone, PROMPTS)) > 0.999
    # and the two images really give different masks, so the comparison could fail
    assert agreement(segmenter.predict(together[0], PROMPTS), segmenter.predict(together[1], PROMPTS)) < 0.99


def test_images_of_different_sizes_embed_together(segmenter, images):
    small = images[1][: H // 2, : W // 2]
    big_embedding, small_embedding = segmenter.embed([images[0], small])
    assert tuple(small_embedding.size) == (H // 2, W // 2)
    prompts = [Prompt(box=(10, 10, 100, 80)), Prompt(points=((50, 40),))]
    masks = segmenter.predict(small_embedding, prompts)
    assert masks.shape == (2, H // 2, W // 2)
    alone = segmenter.predict(segmenter.embed([small])[0], prompts)
    assert agreement(masks, alone) > 0.999


def test_grouped_prompts_equal_one_call_per_prompt(segmenter, images):
    (embedding,) = segmenter.embed(images[:1])
    together = segmenter.predict(embedding, PROMPTS)
    for i, prompt in enumerate(PROMPTS):
        assert agreement(together[i], segmenter.predict(embedding, [prompt])[0]) > 0.999
    # different prompts give different masks, so a mix-up of the order would show
    assert agreement(together[0], together[4]) < 0.99


# --- SAM v1 architecture inference --------------------------------------------------------------


def test_tiny_checkpoint_architecture_is_inferred(sam1_path):
    assert infer_architecture(load_state_dict(sam1_path)) == Sam1Architecture(**TINY_SAM1)


@pytest.mark.parametrize(
    "builder, embed_dim, depth, heads, global_blocks",
    [
        ("build_sam_vit_b", 768, 12, 12, (2, 5, 8, 11)),
        ("build_sam_vit_l", 1024, 24, 16, (5, 11, 17, 23)),
        ("build_sam_vit_h", 1280, 32, 16, (7, 15, 23, 31)),
    ],
)
def test_official_layouts_are_inferred(builder, embed_dim, depth, heads, global_blocks):
    # on the meta device the official models cost no memory; only their tensor shapes matter here
    with torch.device("meta"):
        state_dict = getattr(segment_anything, builder)().state_dict()
    arch = infer_architecture(state_dict)
    assert (arch.encoder_embed_dim, arch.encoder_depth, arch.encoder_num_heads) == (embed_dim, depth, heads)
    assert arch.encoder_global_attn_indexes == global_blocks
    assert (arch.img_size, arch.patch_size, arch.encoder_window_size) == (1024, 16, 14)
    assert (arch.prompt_embed_dim, arch.mask_in_chans, arch.decoder_mlp_dim) == (256, 16, 2048)
    assert (arch.iou_head_depth, arch.iou_head_hidden_dim, arch.num_multimask_outputs) == (3, 256, 3)


def test_unexpected_layouts_raise_clear_errors(sam1_path, tmp_path):
    tiny = load_state_dict(sam1_path)
    with pytest.raises(ConfigError, match="not a segment-anything SAM checkpoint"):
        infer_architecture({"encoder.weight": torch.zeros(3, 3)})

    two_windows = dict(tiny)
    two_windows["image_encoder.blocks.1.attn.rel_pos_h"] = torch.zeros(5, 16)
    with pytest.raises(ConfigError, match="several window sizes"):
        infer_architecture(two_windows)

    gap = {k: v for k, v in tiny.items() if not k.startswith("image_encoder.blocks.0.")}
    with pytest.raises(ConfigError, match="blocks"):
        infer_architecture(gap)

    # shapes the inference does not look at still have to fit, or loading says so
    wrong = dict(tiny)
    wrong["mask_decoder.iou_token.weight"] = torch.zeros(1, 7)
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(ConfigError, match="does not match"):
        Sam1Segmenter.from_checkpoint(tmp_path / "wrong.pth", device="cpu")

    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable PyTorch checkpoint"):
        Sam1Segmenter.from_checkpoint(tmp_path / "garbage.pth", device="cpu")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        Sam1Segmenter.from_checkpoint(tmp_path / "missing.pth", device="cpu")


# --- loading errors and downloads --------------------------------------------------------------


def test_sam2_unreachable_weights_raise_model_not_found(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        Sam2Segmenter.from_pretrained("facebook/does-not-exist", cache_dir=tmp_path, device="cpu")
    message = str(info.value)
    assert "facebook/does-not-exist" in message
    assert "connected machine" in message and "cache_dir" in message and "HF_HOME" in message
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        Sam2Segmenter.from_pretrained(tmp_path / "no-such-folder", device="cpu")


def test_sam1_official_checkpoint_offline_raises_model_not_found(tmp_path):
    from sociogeo.options import options

    options.offline = True
    with pytest.raises(ModelNotFoundError) as info:
        Sam1Segmenter.from_checkpoint("vit_b", cache_dir=tmp_path, device="cpu")
    message = str(info.value)
    assert SAM1_CHECKPOINTS["vit_b"] in message
    assert str(checkpoint_path("vit_b", tmp_path)) in message
    assert not any(tmp_path.rglob("*"))  # nothing written


def _file_handler(payload: bytes, name: str, counter: list):
    """A request handler serving one file at /<name>, counting requests in ``counter``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            counter.append(self.path)
            if self.path != f"/{name}":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    return Handler


def test_sam1_official_checkpoint_download(monkeypatch, tmp_path, sam1_path, images):
    from sociogeo.options import options

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    options.offline, options.progress = False, False
    from sociogeo.testing.loopback import serve

    name = SAM1_CHECKPOINTS["vit_b"].rsplit("/", 1)[1]
    requests = []
    with serve(_file_handler(sam1_path.read_bytes(), name, requests)) as server:
        monkeypatch.setitem(SAM1_CHECKPOINTS, "vit_b", f"{server.url}/{name}")
        segmenter = Sam1Segmenter.from_checkpoint("vit_b", cache_dir=tmp_path, device="cpu")
        again = Sam1Segmenter.from_checkpoint("vit_b", cache_dir=tmp_path, device="cpu")
        assert len(requests) == 1  # the second load used the cached file

        target = checkpoint_path("vit_b", tmp_path)
        assert target.read_bytes() == sam1_path.read_bytes()
        assert [p.name for p in target.parent.iterdir()] == [name]  # no partial files left
        (embedding,) = segmenter.embed(images[:1])
        reloaded = again.predict(again.embed(images[:1])[0], PROMPTS)
        assert agreement(segmenter.predict(embedding, PROMPTS), reloaded) > 0.999

        monkeypatch.setitem(SAM1_CHECKPOINTS, "vit_l", f"{server.url}/missing.pth")
        with pytest.raises(ModelNotFoundError, match="could not download"):
            Sam1Segmenter.from_checkpoint("vit_l", cache_dir=tmp_path, device="cpu")
        assert [p.name for p in target.parent.iterdir()] == [name]


# --- SAM 2 checkpoint variants -------------------------------------------------------------------


def _as_video_checkpoint(source, target):
    """Rewrite a tiny ``sam2`` folder the way the hub's facebook/sam2-hiera-large is published:
    a ``sam2_video`` config and a ``Sam2VideoProcessor``."""
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config["model_type"] = "sam2_video"
    config["architectures"] = ["Sam2VideoModel"]
    config["prompt_encoder_config"]["model_type"] = "sam2_video_prompt_encoder"
    config["mask_decoder_config"]["model_type"] = "sam2_video_mask_decoder"
    (target / "config.json").write_text(json.dumps(config))
    image_processor = transformers.Sam2ImageProcessor.from_pretrained(source)
    video_processor = transformers.Sam2VideoVideoProcessor(size=image_processor.size)
    (target / "processor_config.json").unlink()
    processor = transformers.Sam2VideoProcessor(image_processor=image_processor, video_processor=video_processor)
    processor.save_pretrained(target)
    return target


def test_sam2_video_checkpoint_loads_as_the_image_model(sam2_dir, sam1_path, tmp_path, images):
    video_dir = _as_video_checkpoint(sam2_dir, tmp_path / "video")
    assert transformers.AutoConfig.from_pretrained(video_dir).model_type == "sam2_video"
    from_video = Sam2Segmenter.from_pretrained(video_dir, device="cpu")
    plain = load("sam2", sam2_dir, sam1_path)
    assert isinstance(from_video.model, transformers.Sam2Model)
    reference = plain.model.state_dict()
    loaded = from_video.model.state_dict()
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
    masks = from_video.predict(from_video.embed(images[:1])[0], PROMPTS)
    assert agreement(masks, plain.predict(plain.embed(images[:1])[0], PROMPTS)) > 0.999


def test_sam2_dtype_and_processor_checks(sam2_dir, images):
    half = Sam2Segmenter.from_pretrained(sam2_dir, device="cpu", dtype="bfloat16")
    assert half.dtype == torch.bfloat16
    masks = half.predict(half.embed(images[:1])[0], PROMPTS[:3])
    assert masks.shape == (3, H, W) and masks.dtype == bool
    with pytest.raises(ConfigError, match="unknown dtype"):
        Sam2Segmenter.from_pretrained(sam2_dir, device="cpu", dtype="float-ish")

    model = transformers.Sam2Model.from_pretrained(sam2_dir)
    wrong = transformers.Sam2Processor(
        image_processor=transformers.Sam2ImageProcessor(size={"height": 512, "width": 512})
    )
    with pytest.raises(ConfigError, match="model expects 256"):
        Sam2Segmenter(model, wrong, preprocess="transformers")
    assert Sam2Segmenter(model, wrong).resolution == 256  # the release's steps use the model's own size
    with pytest.raises(ConfigError, match="needs the checkpoint's Sam2Processor"):
        Sam2Segmenter(model, preprocess="transformers")
    with pytest.raises(ConfigError, match="preprocess must be 'release'"):
        Sam2Segmenter(model, wrong, preprocess="sam2")
    # results and resume folders tell the two preprocessings apart by the segmenter's name
    assert Sam2Segmenter.from_pretrained(sam2_dir, device="cpu").name == f"sam2:{sam2_dir}"
    other = Sam2Segmenter.from_pretrained(sam2_dir, device="cpu", preprocess="transformers")
    assert other.name == f"sam2:{sam2_dir} [transformers preprocessing]"


def test_load_sam_dispatches_to_both_backends(sam2_dir, sam1_path):
    from sociogeo.reasoner.sam import load_sam, sam_kind

    assert sam_kind(str(sam1_path)) == "sam1" and sam_kind("vit_b") == "sam1" and sam_kind(str(sam2_dir)) == "sam2"
    assert isinstance(load_sam(str(sam1_path), device="cpu"), Sam1Segmenter)
    assert isinstance(load_sam(str(sam2_dir), device="cpu"), Sam2Segmenter)
