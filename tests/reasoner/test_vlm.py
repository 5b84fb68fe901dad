"""VLM backends on a tiny random Qwen2.5-VL built offline: in-process transformers, and an
OpenAI-compatible client against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import json
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from sociogeo.errors import ConfigError, ModelNotFoundError  # noqa: E402
from sociogeo.reasoner.prompts import stage1_text, stage2_text  # noqa: E402
from sociogeo.reasoner.vlm import GenerationConfig, VLMBackend, VLMRequest, load_vlm  # noqa: E402
from sociogeo.reasoner.vlm.openai_backend import OpenAIVLM, VLMBatchError, VLMServerError  # noqa: E402
from sociogeo.reasoner.vlm.transformers_backend import TransformersVLM  # noqa: E402
from sociogeo.testing.openai_server import free_port  # noqa: E402
from sociogeo.testing.tiny_vlm import SPECIAL_TOKENS, make_tiny_vlm  # noqa: E402

GREEDY = GenerationConfig.greedy(max_new_tokens=8)


def pair(seed: int, size: int = 112) -> list[np.ndarray]:
    """A random map and satellite image, size x size x 3 uint8 (112 = 4 x 28: no resize)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(2)]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"), seed=0)


@pytest.fixture(scope="module")
def vlm(tiny_dir):
    return TransformersVLM.from_pretrained(tiny_dir, device="cpu")


@pytest.fixture(scope="module")
def requests_4():
    return [
        VLMRequest(stage1_text("school"), pair(1)),
        VLMRequest("hi", pair(2)),
        VLMRequest(stage2_text("Jinan Zoo", '[{"bbox_2d": [1, 2, 30, 40]}]'), pair(3)),
        VLMRequest("Please find 'park' with bboxs.", pair(4, size=56)),
    ]


# --- the tiny checkpoint -------------------------------------------------------------------------

def test_tiny_checkpoint_is_small_and_qwen_shaped(tiny_dir, vlm):
    names = {p.name for p in tiny_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= names
    assert sum(p.stat().st_size for p in tiny_dir.iterdir()) < 5_000_000
    config = vlm.model.config
    assert config.model_type == "qwen2_5_vl"
    vision = config.vision_config
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (14, 2, 2)
    tokenizer = vlm.processor.tokenizer
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") == config.image_token_id
    assert tokenizer.convert_tokens_to_ids("<|video_pad|>") == config.video_token_id
    assert tokenizer.convert_tokens_to_ids("<|vision_start|>") == config.vision_start_token_id
    assert tokenizer.convert_tokens_to_ids("<|vision_end|>") == config.vision_end_token_id
    assert config.text_config.vocab_size >= len(tokenizer)


def test_tiny_checkpoint_is_deterministic(tiny_dir, tmp_path, vlm):
    again = TransformersVLM.from_pretrained(make_tiny_vlm(tmp_path / "again", seed=0), device="cpu")
    other = TransformersVLM.from_pretrained(make_tiny_vlm(tmp_path / "other", seed=1), device="cpu")
    for (name, a), b, _c in zip(
        vlm.model.state_dict().items(), again.model.state_dict().values(), other.model.state_dict().values()
    ):
        assert torch.equal(a, b), name
    assert any(not torch.equal(a, c) for a, c in zip(vlm.model.parameters(), other.model.parameters()))


def test_tokenizer_has_qwen_special_tokens_and_expresses_answers_compactly(vlm):
    tokenizer = vlm.processor.tokenizer
    for token in SPECIAL_TOKENS:
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tokenizer.convert_ids_to_tokens(ids[0]) == token
    answer = '<think>The map shows a school.</think><answer>[{"bbox_2d": [10, 20, 300, 400]}]</answer>'
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == answer
    # Qwen's pre-tokenizer keeps digits single, so numbers cost a token per digit; the words,
    # tags and JSON punctuation must be merged.
    assert len(ids) < 0.45 * len(answer)
    unusual = "Zürich 東京 \t\n~"  # byte-level: anything is expressible
    assert tokenizer.decode(tokenizer(unusual, add_special_tokens=False)["input_ids"]) == unusual
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"


# --- TransformersVLM -----------------------------------------------------------------------------

def test_from_pretrained_defaults(vlm, tiny_dir):
    assert isinstance(vlm, VLMBackend)
    assert vlm.name == str(tiny_dir)
    assert vlm.device.type == "cpu" and vlm.model.dtype == torch.float32
    assert not vlm.model.training
    assert vlm.processor.tokenizer.padding_side == "left"
    size = vlm.processor.image_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (56 * 56, 768 * 768)


def test_release_pixel_bounds_win_over_the_checkpoint_config(tiny_dir, tmp_path):
    # The real checkpoint's layout: preprocessor_config.json with Qwen's own (much larger)
    # max_pixels, and chat_template.json.
    import shutil

    folder = tmp_path / "legacy"
    folder.mkdir()
    files = ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json")
    for name in files:
        shutil.copy(tiny_dir / name, folder / name)
    template = (tiny_dir / "chat_template.jinja").read_text()
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
    }))
    legacy = TransformersVLM.from_pretrained(folder, device="cpu")
    with pytest.warns(UserWarning, match="resized by the processor to 756 x 756"):
        batch = legacy.prepare([VLMRequest("x", pair(0, size=1000))])
    assert batch["image_grid_thw"].tolist() == [[1, 54, 54], [1, 54, 54]]  # 756 px, as released
    small = TransformersVLM.from_pretrained(folder, device="cpu", max_pixels=112 * 112)
    with pytest.warns(UserWarning):
        batch = small.prepare([VLMRequest("x", pair(0, size=756))])
    assert batch["image_grid_thw"].tolist() == [[1, 8, 8], [1, 8, 8]]


def test_chat_prompt_is_qwen_style_with_map_then_satellite(vlm):
    assert vlm.chat_prompt("Find it.") == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|image_pad|><|vision_end|>"
        "Find it.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_prepare_places_map_first_and_pads_left(vlm):
    black = np.zeros((112, 112, 3), np.uint8)
    white = np.full((56, 56, 3), 255, np.uint8)
    batch = vlm.prepare([VLMRequest(stage1_text("school"), [black, white]), VLMRequest("hi", [white, black])])
    grid = batch["image_grid_thw"]
    assert grid.tolist() == [[1, 8, 8], [1, 4, 4], [1, 4, 4], [1, 8, 8]]
    pixels = batch["pixel_values"]
    assert pixels.shape[0] == int(grid.prod(dim=1).sum())
    # Image patches follow the prompt order: request 0's map (black), then its satellite (white), ...
    sizes = grid.prod(dim=1).tolist()
    means = [chunk.mean().item() for chunk in torch.split(pixels, sizes)]
    assert means[0] < 0 < means[1] and means[2] > 0 > means[3]
    image_id = vlm.model.config.image_token_id
    ids, mask = batch["input_ids"], batch["attention_mask"]
    for row, (first, second) in enumerate([(sizes[0], sizes[1]), (sizes[2], sizes[3])]):
        tokens = ids[row][mask[row].bool()].tolist()
        runs = _runs(tokens, image_id)
        assert runs == [first // 4, second // 4]  # 2 x 2 merge
    # Left padding: the short prompt's padding is at the start, both prompts end together.
    assert mask[1, 0] == 0 and mask[1, -1] == 1 and mask[0].all()
    assert ids[1, 0] == vlm.processor.tokenizer.pad_token_id


def _runs(tokens, value):
    runs, count = [], 0
    for token in tokens + [None]:
        if token == value:
            count += 1
        elif count:
            runs.append(count)
            count = 0
    return runs


def test_generate_a_batch_of_two(vlm, requests_4):
    answers = vlm.generate(requests_4[:2], GREEDY)
    assert len(answers) == 2 and all(isinstance(a, str) and a for a in answers)
    assert vlm.generate([], GREEDY) == []


def test_greedy_is_deterministic_and_batch_equals_alone(vlm, requests_4):
    batch = vlm.generate(requests_4, GREEDY)
    assert batch == vlm.generate(requests_4, GREEDY)
    # Prompts of very different lengths: left padding must not change any answer.
    alone = [vlm.generate([r], GREEDY)[0] for r in requests_4]
    assert batch == alone
    assert len(set(alone)) == len(alone)  # distinct answers: the comparison above sees order


def test_generate_respects_max_new_tokens(vlm, requests_4):
    batch = vlm.prepare(requests_4[:1])
    with torch.inference_mode():
        out = vlm.model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape[1] - batch["input_ids"].shape[1] <= 3
    answer = vlm.generate(requests_4[:1], GenerationConfig.greedy(max_new_tokens=3))[0]
    ids = vlm.processor.tokenizer(answer, add_special_tokens=False)["input_ids"]
    assert 0 < len(ids) <= 4  # decode/encode may split one token in two at most once


def test_seeded_sampling_is_reproducible_and_keeps_global_rng(vlm, requests_4):
    config = GenerationConfig.released(max_new_tokens=12, seed=7)
    state = torch.random.get_rng_state()
    first = vlm.generate(requests_4[:2], config)
    assert torch.equal(state, torch.random.get_rng_state())
    assert vlm.generate(requests_4[:2], config) == first
    other = vlm.generate(requests_4[:2], GenerationConfig.released(max_new_tokens=12, seed=8))
    assert other != first
    assert first != vlm.generate(requests_4[:2], GenerationConfig.greedy(max_new_tokens=12))


def test_bad_requests_raise_config_errors(vlm):
    with pytest.raises(ConfigError, match="H x W x 3 uint8"):
        vlm.generate([VLMRequest("x", [np.zeros((56, 56), np.uint8), np.zeros((56, 56, 3), np.uint8)])], GREEDY)
    with pytest.raises(ConfigError, match="temperature"):
        vlm.generate([VLMRequest("x", pair(0))], GenerationConfig(do_sample=True, temperature=0.0))
    with pytest.warns(UserWarning, match="resized by the processor"):
        vlm.prepare([VLMRequest("x", pair(0, size=100))])


def test_offline_unknown_hub_id_raises_model_not_found_with_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        TransformersVLM.from_pretrained("sociogeo-tests/no-such-model", cache_dir=tmp_path / "hf")
    message = str(info.value)
    assert "sociogeo-tests/no-such-model" in message
    assert "hf download sociogeo-tests/no-such-model" in message and "huggingface-cli download" in message
    assert "HF_HOME" in message and "Offline mode is on" in message


def test_missing_local_folder_raises_model_not_found(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        TransformersVLM.from_pretrained(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        TransformersVLM.from_pretrained(tmp_path / "empty")


def test_load_vlm_dispatches(tiny_dir):
    assert isinstance(load_vlm(str(tiny_dir), device="cpu"), TransformersVLM)
    client = load_vlm("http://127.0.0.1:9/v1", model="m")
    assert isinstance(client, OpenAIVLM) and client.base_url == "http://127.0.0.1:9"
    assert load_vlm(client) is client


# --- OpenAIVLM against `transformers serve` ------------------------------------------------------

@pytest.fixture(scope="module")
def served(tiny_dir):
    for package in ("fastapi", "uvicorn", "openai"):
        pytest.importorskip(package, reason="`transformers serve` needs fastapi, uvicorn and openai")
    from sociogeo.testing.openai_server import serve_model

    with serve_model(tiny_dir) as url:
        yield url


def test_server_answers_match_in_process_concurrently_and_in_order(served, vlm, requests_4, tiny_dir):
    client = OpenAIVLM(served, max_concurrency=4)
    assert client.model == str(tiny_dir)  # model=None: the first id the server lists
    answers = client.generate(requests_4, GREEDY)
    expected = [vlm.generate([r], GREEDY)[0] for r in requests_4]
    assert len(set(expected)) == len(expected)
    assert answers == expected
    # The same server without "/v1" in the URL.
    assert OpenAIVLM(served[: -len("/v1")], model=str(tiny_dir)).generate(requests_4[:1], GREEDY) == expected[:1]


def test_server_seeded_sampling(served, requests_4):
    client = OpenAIVLM(served, max_concurrency=1)
    config = GenerationConfig.released(max_new_tokens=12, seed=3)
    first = client.generate(requests_4[:1], config)
    assert client.dialect == "transformers"  # switched after the server refused top_k
    assert client.generate(requests_4[:1], config) == first
    greedy = client.generate(requests_4[:1], GenerationConfig.greedy(max_new_tokens=12))
    samples = {
        client.generate(requests_4[:1], GenerationConfig.released(max_new_tokens=12, seed=seed))[0]
        for seed in range(3)
    }
    assert len(samples) > 1 and samples != {greedy[0]}


def test_server_unknown_model_is_an_http_error(served, requests_4):
    client = OpenAIVLM(served, model="sociogeo-tests/not-served", timeout_s=60)
    with pytest.raises(VLMBatchError) as info:
        client.generate(requests_4[:1], GREEDY)
    assert info.value.errors[0].status is not None and info.value.errors[0].status >= 400
    assert "/v1/chat/completions" in str(info.value)


# --- OpenAIVLM against a scripted server: request format and failure handling ----------------------

class _Scripted(BaseHTTPRequestHandler):
    """Answers chat completions by the request's text: "fail" -> HTTP 500, "garbage" -> not JSON,
    "empty" -> no choices; otherwise echoes the text upper-cased. Records every body."""

    bodies: ClassVar[list] = []
    models_reply = b'{"object": "list", "data": [{"id": "scripted-model"}]}'

    def log_message(self, *args):  # keep test output clean
        pass

    def _reply(self, status: int, payload: bytes):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):
        if self.path == "/v1/models":
            self._reply(200, self.models_reply)
        else:
            self._reply(404, b'{"error": "not found"}')

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        text = body["messages"][0]["content"][-1]["text"]
        if "fail" in text:
            self._reply(500, b'{"error": "boom"}')
        elif "garbage" in text:
            self._reply(200, b"<html>not json</html>")
        elif "empty" in text:
            self._reply(200, b'{"choices": []}')
        else:
            answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text.upper()}}]}
            self._reply(200, json.dumps(answer).encode())


@pytest.fixture()
def scripted():
    from sociogeo.testing.loopback import serve

    _Scripted.bodies = []
    with serve(_Scripted) as server:
        yield server.url


def _decode_data_url(url: str) -> np.ndarray:
    from PIL import Image

    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url[len(prefix):]))))


def test_request_format(scripted):
    images = pair(5, size=56)
    client = OpenAIVLM(scripted + "/v1/", api_key="secret-token")
    assert client.generate([VLMRequest("find it", images)], GREEDY) == ["FIND IT"]
    body = _Scripted.bodies[-1]
    assert body["model"] == "scripted-model" and body["max_tokens"] == 8 and body["temperature"] == 0.0
    assert "top_k" not in body
    content = body["messages"][0]["content"]
    assert [part["type"] for part in content] == ["image_url", "image_url", "text"]
    assert np.array_equal(_decode_data_url(content[0]["image_url"]["url"]), images[0])  # map first
    assert np.array_equal(_decode_data_url(content[1]["image_url"]["url"]), images[1])
    client.generate([VLMRequest("a", images)] * 3, GenerationConfig.released(max_new_tokens=5, seed=10))
    sampled = _Scripted.bodies[-3:]
    assert {(b["temperature"], b["top_p"], b["top_k"], b["max_tokens"]) for b in sampled} == {(1.0, 0.8, 100, 5)}
    assert sorted(b["seed"] for b in sampled) == [10, 11, 12]  # distinct samples for identical prompts
    client.generate([VLMRequest("a", images)], GenerationConfig(do_sample=True, top_k=0))
    assert _Scripted.bodies[-1]["top_k"] == -1  # "no top-k" in every vLLM version


def test_failures_are_collected_with_indices_and_other_results_kept(scripted):
    texts = ["one", "fail here", "two", "garbage out", "three", "empty"]
    client = OpenAIVLM(scripted, model="m", max_concurrency=3)
    with pytest.raises(VLMBatchError) as info:
        client.generate([VLMRequest(t, pair(0, 56)) for t in texts], GREEDY)
    error = info.value
    assert sorted(error.errors) == [1, 3, 5]
    assert error.results == ["ONE", None, "TWO", None, "THREE", None]
    assert error.errors[1].status == 500 and "/v1/chat/completions" in error.errors[1].url
    assert "malformed JSON" in str(error.errors[3]) and "malformed chat completion" in str(error.errors[5])
    assert "3 of 6" in str(error) and "indices 1, 3, 5" in str(error)


def test_concurrent_results_keep_request_order(scripted):
    texts = [f"request {i}" for i in range(20)]
    client = OpenAIVLM(scripted, model="m", max_concurrency=8)
    assert client.generate([VLMRequest(t, pair(0, 56)) for t in texts], GREEDY) == [t.upper() for t in texts]


def test_dead_port_raises_typed_errors_with_the_url():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(VLMServerError, match="cannot reach") as info:
        OpenAIVLM(url).generate([VLMRequest("x", pair(0, 56))], GREEDY)
    assert info.value.url == url + "/v1/models" and info.value.status is None
    with pytest.raises(VLMBatchError) as batch:
        OpenAIVLM(url, model="m").generate([VLMRequest("x", pair(0, 56))] * 2, GREEDY)
    assert sorted(batch.value.errors) == [0, 1] and batch.value.results == [None, None]
    assert url in str(batch.value)


def test_malformed_models_listing(scripted, monkeypatch):
    monkeypatch.setattr(_Scripted, "models_reply", b'{"data": "nope"}')
    with pytest.raises(VLMServerError, match="malformed /v1/models"):
        _ = OpenAIVLM(scripted).model
    monkeypatch.setattr(_Scripted, "models_reply", b'{"data": []}')
    with pytest.raises(VLMServerError, match="lists no models"):
        _ = OpenAIVLM(scripted).model


def test_client_argument_errors():
    with pytest.raises(ConfigError):
        OpenAIVLM("localhost:8000")
    with pytest.raises(ConfigError):
        OpenAIVLM("http://127.0.0.1:1", max_concurrency=0)
    with pytest.raises(ConfigError):
        OpenAIVLM("http://127.0.0.1:1", dialect="tgi")


def test_quiet_loading_prints_no_progress_bars(tmp_path, capfd):
    """With sociogeo's progress switched off, creating and loading models writes nothing to stderr."""
    import sociogeo
    from sociogeo.testing import make_tiny_models

    capfd.readouterr()
    with sociogeo.options.context(progress=False):
        models = make_tiny_models(tmp_path / "models")
        TransformersVLM.from_pretrained(models.vlm)
    assert capfd.readouterr().err == ""
    import transformers

    assert transformers.utils.logging.is_progress_bar_enabled()  # restored afterwards


def test_a_fleet_of_servers_shares_the_requests():
    """A list of URLs is one backend; each batch's requests are spread over every server, in order."""
    import json
    from http.server import BaseHTTPRequestHandler

    from sociogeo.testing.loopback import serve

    seen = {"a": 0, "b": 0}

    def handler(name):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self._json({"object": "list", "data": [{"id": "m", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                seen[name] += 1
                text = body["messages"][-1]["content"][-1]["text"]
                self._json({"choices": [{"index": 0, "message": {"role": "assistant", "content": f"{name}:{text}"}}]})

            def _json(self, data):
                payload = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        return Handler

    with serve(handler("a")) as a, serve(handler("b")) as b:
        fleet = load_vlm([a.url, b.url])
        requests = [VLMRequest(f"q{i}", []) for i in range(6)]
        answers = fleet.generate(requests, GREEDY)
        assert [x.split(":")[1] for x in answers] == [f"q{i}" for i in range(6)]  # in request order
        assert seen == {"a": 3, "b": 3}
        fleet.generate(requests[:1], GREEDY)
        fleet.generate(requests[:1], GREEDY)
        assert seen == {"a": 4, "b": 4}  # single requests alternate too
        assert a.url in fleet.name and b.url in fleet.name
