"""Regexes on model text run in linear time: adversarial answers (tags repeated without closing
tags, long runs of digits) are read like ordinary ones, with the same results as the original
patterns on ordinary text."""

from __future__ import annotations

import random
import re

import pytest

from sociogeo.reasoner.parsing import parse_answer
from sociogeo.reasoner.prompts import answer_text, between_tags
from sociogeo.reasoner.strict import parse_strict
from sociogeo.train.rewards import _answer_json, _think_answer

# Before the fix each of these took hours (quadratic or worse in the text's length): a hang is the failure.
N = 300_000
ADVERSARIAL = [
    "<answer>" * N,
    "<think>" * N + "<answer>",
    "<think>" + "</think><answer></answer>" * (N // 8) + "x",
    "<answer>[" + "1" * N + "</answer>",
    "<answer>" + ("[" + "1" * 2000) * 200 + "</answer>",
]


@pytest.mark.parametrize("text", ADVERSARIAL, ids=["answers", "thinks", "pairs", "digits", "digit-runs"])
def test_adversarial_answers_are_read_without_hanging(text):
    strict = parse_strict(text)
    repaired = parse_answer(text, image_size=(1000, 1000))
    assert not strict.items and isinstance(repaired.items, list)
    assert _think_answer(text) == 0.0 and _answer_json(text) is None
    answer_text(text)


def _random_text(rng: random.Random) -> str:
    parts = ["<answer>", "</answer>", "<think>", "</think>", "<ANSWER>", " ", "\n", "x", "[1, 2]", "</answer"]
    return "".join(rng.choice(parts) for _ in range(rng.randint(0, 12)))


def test_between_tags_finds_what_the_lazy_regex_finds():
    rng = random.Random(0)
    for _ in range(5000):
        text = _random_text(rng)
        for flags in (0, re.IGNORECASE):
            match = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL | flags)
            assert between_tags(text, "answer", ignore_case=bool(flags)) == (match.group(1) if match else None)


def test_think_answer_format_is_the_fullmatch_it_replaced():
    rng = random.Random(1)
    pattern = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
    for _ in range(5000):
        text = _random_text(rng)
        if rng.random() < 0.5:
            text = "<think>" + text + "</answer>"
        assert _think_answer(text) == (1.0 if pattern.fullmatch(text) else 0.0), text
