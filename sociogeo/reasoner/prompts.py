"""The user-turn texts SocioReasoner was trained on (docs/interface.md), and the chat message around them.

The released checkpoint only answers well when it sees exactly the prompt it was trained on, so
the texts here are reproduced byte for byte: sentences joined with no space between them, the
query in single quotes in stage 1 and in double quotes in stage 2, and the stage-2 example's
unbalanced bracket kept as released.
"""

from __future__ import annotations

import re

_INTRO = (
    "You will be given two images. The first is a map and the second is a corresponding satellite image."
)

# Stage 1: find the object(s) with boxes.
_STAGE1_FIND = "Please find '{query}' with bboxs."
_STAGE1_TAIL = (
    "Compare the difference between object(s) and find the most closely matched object(s)."
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags. "
    "Please use English."
    "Output the bbox(es) in JSON format."
    "i.e., <think>thinking process here </think>"
    '<answer>[{"bbox_2d": [bx1,by1,bx2,by2]}, {"bbox_2d": [bx3,by3,bx4,by4]}]</answer>'
)

# Stage 2: add points to the rendered stage-1 boxes.
_STAGE2_RENDERED = (
    'Now some bbox(s) and the results after SAM segmentation for "{query}" '
    "have been rendered on these two images."
)
_STAGE2_BOXES = "The found bbox(s) are: {boxes}."
_STAGE2_TAIL = (
    "Please add some points appropriately to each bbox to better represent the area of interest."
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "i.e., <think> thinking process here </think>"
    # The missing "]" after [px6,py6] is in the released prompt; the checkpoint was trained on it.
    '<answer>[{"bbox_2d": [bx1,by1,bx2,by2], "points": [[px1,py1],[px2,py2],[px3,py3]]}, '
    '{"bbox_2d": [bx3,by3,bx4,by4], "points": [[px4,py4],[px5,py5],[px6,py6]}]</answer>'
)


def between_tags(text: str, tag: str, *, ignore_case: bool = False) -> str | None:
    """The text between the first ``<tag>`` and the first ``</tag>`` after it; None when either is missing.

    What ``re.search(r"<tag>(.*?)</tag>", text, re.DOTALL)`` finds, in time linear in ``len(text)``:
    that regex tries every ``<tag>`` in turn and scans to the end from each, so a model answer
    repeating ``<tag>`` without a closing tag takes quadratic time. (When the first ``<tag>`` has
    no ``</tag>`` after it, no later one does either.)
    """
    flags = re.IGNORECASE if ignore_case else 0
    opening = re.compile(f"<{re.escape(tag)}>", flags).search(text)
    if opening is None:
        return None
    closing = re.compile(f"</{re.escape(tag)}>", flags).search(text, opening.end())
    return None if closing is None else text[opening.end():closing.start()]


def _fill(template: str, name: str, value: str) -> str:
    # Plain replacement, not str.format: queries may contain braces.
    return template.replace("{" + name + "}", value)


def stage1_text(query: str) -> str:
    """The stage-1 user text for ``query`` (the socio-semantic entity to find, e.g. ``"school"``)."""
    return _INTRO + _fill(_STAGE1_FIND, "query", str(query)) + _STAGE1_TAIL


def stage2_text(query: str, boxes_json: str) -> str:
    """The stage-2 user text: ``boxes_json`` is the stage-1 answer's JSON list as text
    (see :func:`answer_text`), inserted unchanged.
    """
    return (
        _INTRO
        + _fill(_STAGE2_RENDERED, "query", str(query))
        + _fill(_STAGE2_BOXES, "boxes", str(boxes_json))
        + _STAGE2_TAIL
    )


def answer_text(response: str) -> str:
    """The text between the first ``<answer>`` and ``</answer>``, stripped; ``""`` when absent.

    This is what the release inserts into the stage-2 prompt as ``{boxes}``: the model's own
    text, not a re-serialisation of the parsed boxes.
    """
    body = between_tags(response or "", "answer")
    return "" if body is None else body.strip()


def build_messages(text: str, images=None) -> list[dict]:
    """The single user turn ``[image (map), image (satellite), text]`` for ``apply_chat_template``.

    ``images`` optionally gives the two images (map first, satellite second) to attach to the
    image entries; templating the text alone needs none.
    """
    images = [None, None] if images is None else list(images)
    content: list[dict] = []
    for image in images:
        entry: dict = {"type": "image"}
        if image is not None:
            entry["image"] = image
        content.append(entry)
    content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


__all__ = ["answer_text", "build_messages", "stage1_text", "stage2_text"]
