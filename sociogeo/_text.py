"""Text for people: messages shortened without cutting a sentence."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.;!?])\s+(?=[A-Z(`'\"])")


def one_line(text: str, limit: int) -> str:
    """``text`` on one line; over ``limit`` characters, only its leading whole sentences (at
    least the first, however long), so a notice never stops mid-sentence.
    """
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    sentences = _SENTENCE_END.split(text)
    kept = sentences[0]
    for sentence in sentences[1:]:
        if len(kept) + 1 + len(sentence) > limit:
            break
        kept = f"{kept} {sentence}"
    return kept
