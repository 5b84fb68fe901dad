"""OpenAIVLM against a real misbehaving server on 127.0.0.1 (sociogeo.testing.chat_server):
busy answers are retried honouring Retry-After, every request has a total deadline, dropped
connections are retried, and unusable answers are typed errors."""

from __future__ import annotations

import numpy as np
import pytest

from sociogeo.errors import ConfigError, VLMBatchError, VLMServerError
from sociogeo.reasoner.vlm.base import GenerationConfig, VLMRequest
from sociogeo.reasoner.vlm.openai_backend import OpenAIVLM
from sociogeo.testing.chat_server import ChatServer

GREEDY = GenerationConfig.greedy(max_new_tokens=8)
IMAGES = [np.zeros((28, 28, 3), np.uint8)] * 2


@pytest.fixture()
def server():
    with ChatServer() as running:
        yield running


def _client(server, **kwargs):
    kwargs.setdefault("backoff_s", 0.01)
    return OpenAIVLM(server.url, model=server.model, **kwargs)


def test_429_is_retried_after_the_wait_the_server_asks_for(server):
    server.inject("429", retry_after=1, first=2)
    assert _client(server).generate([VLMRequest("hello", IMAGES)], GREEDY) == ["HELLO"]
    assert len(server.times) == 3
    gaps = np.diff(server.times)
    assert (gaps >= 0.95).all()  # Retry-After: 1 was honoured, not the 10 ms backoff


@pytest.mark.parametrize("status", ["503", "500"])
def test_busy_server_is_retried_with_backoff_but_a_500_is_not(server, status):
    server.inject(status, first=2)
    client = _client(server, retries=3)
    if status == "503":
        assert client.generate([VLMRequest("hi", IMAGES)], GREEDY) == ["HI"]
        assert len(server.times) == 3
    else:
        with pytest.raises(VLMBatchError) as info:
            client.generate([VLMRequest("hi", IMAGES)], GREEDY)
        assert info.value.errors[0].status == 500 and len(server.times) == 1


def test_retries_end_with_a_typed_error_naming_the_status(server):
    server.inject("503")
    with pytest.raises(VLMBatchError) as info:
        _client(server, retries=2).generate([VLMRequest("hi", IMAGES)], GREEDY)
    error = info.value.errors[0]
    assert error.status == 503 and "gave up after 3 attempts" in str(error)
    assert len(server.times) == 3


def test_a_retry_after_past_the_deadline_fails_at_once(server):
    server.inject("429", retry_after=3600)
    # the message comes from the check made before any wait: the hour is never slept
    with pytest.raises(VLMBatchError, match=r"waiting 3\.6e\+03 s more would pass the 30 s deadline"):
        _client(server, timeout_s=30).generate([VLMRequest("hi", IMAGES)], GREEDY)
    assert len(server.times) == 1


def test_a_dripping_answer_hits_the_total_deadline(server):
    # one byte every 0.2 s: every socket read is quick, the ~90-byte answer takes ~18 s
    server.inject("drip", delay_s=0.2)
    with pytest.raises(VLMBatchError, match=r"within 1 s") as info:
        _client(server, timeout_s=1).generate([VLMRequest("hello", IMAGES)], GREEDY)
    assert isinstance(info.value.errors[0], VLMServerError)
    (drip,) = server.faults
    assert 0 < drip.sent < drip.size / 2  # the client gave up while the answer was still coming


def test_a_connection_dropped_mid_answer_is_retried(server):
    server.inject("reset", first=1)
    assert _client(server).generate([VLMRequest("again", IMAGES)], GREEDY) == ["AGAIN"]
    assert len(server.times) == 2


@pytest.mark.parametrize("kind", ["nested", "malformed"])
def test_unparseable_answers_are_typed_errors(server, kind):
    server.inject(kind)
    with pytest.raises(VLMBatchError) as info:
        _client(server).generate([VLMRequest("x", IMAGES)] * 2, GREEDY)
    assert sorted(info.value.errors) == [0, 1]
    assert all("malformed JSON" in str(e) for e in info.value.errors.values())


def test_bad_retry_settings_are_config_errors():
    with pytest.raises(ConfigError):
        OpenAIVLM("http://127.0.0.1:1", timeout_s=0)
    with pytest.raises(ConfigError):
        OpenAIVLM("http://127.0.0.1:1", retries=-1)
