"""The prompts must match the released ones byte for byte (docs/interface.md)."""

from __future__ import annotations

from sociogeo.reasoner.prompts import answer_text, build_messages, stage1_text, stage2_text

# Typed from the spec, sentences joined with no space between them.
STAGE1_SCHOOL = (
    "You will be given two images. The first is a map and the second is a corresponding satellite image."
    "Please find 'school' with bboxs."
    "Compare the difference between object(s) and find the most closely matched object(s)."
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags. Please use English."
    "Output the bbox(es) in JSON format."
    "i.e., <think>thinking process here </think>"
    '<answer>[{"bbox_2d": [bx1,by1,bx2,by2]}, {"bbox_2d": [bx3,by3,bx4,by4]}]</answer>'
)

STAGE2_ZOO = (
    "You will be given two images. The first is a map and the second is a corresponding satellite image."
    'Now some bbox(s) and the results after SAM segmentation for "Jinan Zoo" have been rendered on these two images.'
    'The found bbox(s) are: [{"bbox_2d": [10, 20, 300, 400]}].'
    "Please add some points appropriately to each bbox to better represent the area of interest."
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "i.e., <think> thinking process here </think>"
    '<answer>[{"bbox_2d": [bx1,by1,bx2,by2], "points": [[px1,py1],[px2,py2],[px3,py3]]}, '
    '{"bbox_2d": [bx3,by3,bx4,by4], "points": [[px4,py4],[px5,py5],[px6,py6]}]</answer>'
)


def test_stage1_text_is_byte_exact():
    assert stage1_text("school") == STAGE1_SCHOOL
    assert stage1_text("school").encode("utf-8") == STAGE1_SCHOOL.encode("utf-8")


def test_stage2_text_is_byte_exact():
    assert stage2_text("Jinan Zoo", '[{"bbox_2d": [10, 20, 300, 400]}]') == STAGE2_ZOO


def test_quotes_differ_between_stages():
    assert "'park'" in stage1_text("park") and '"park"' not in stage1_text("park")
    assert '"park"' in stage2_text("park", "[]") and "'park'" not in stage2_text("park", "[]")


def test_stage2_keeps_the_released_unbalanced_bracket():
    text = stage2_text("x", "[]")
    example = text[text.rindex("<answer>"):]
    assert example.count("[") == example.count("]") + 1


def test_query_with_braces_and_placeholders_is_inserted_verbatim():
    query = "{boxes} café {0} 学校"
    assert f"Please find '{query}' with bboxs." in stage1_text(query)
    text = stage2_text(query, "[B]")
    assert f'for "{query}" have been' in text
    assert "The found bbox(s) are: [B]." in text


def test_answer_text_follows_the_release():
    response = '<think>a</think><answer>\n [{"bbox_2d": [1, 2, 3, 4]}] \n</answer> <answer>[9]</answer>'
    assert answer_text(response) == '[{"bbox_2d": [1, 2, 3, 4]}]'  # first match, stripped
    assert answer_text("<think>no answer</think>") == ""
    assert answer_text("<answer>unclosed [1, 2") == ""
    assert answer_text("<answer>multi\nline</answer>") == "multi\nline"  # DOTALL


def test_build_messages_is_map_satellite_text():
    messages = build_messages("hello", images=["MAP", "SAT"])
    assert len(messages) == 1 and messages[0]["role"] == "user"
    content = messages[0]["content"]
    assert [part["type"] for part in content] == ["image", "image", "text"]
    assert content[0]["image"] == "MAP" and content[1]["image"] == "SAT"
    assert content[2]["text"] == "hello"
    assert [part["type"] for part in build_messages("t")[0]["content"]] == ["image", "image", "text"]


def test_the_documented_prompts_are_the_ones_sent():
    """docs/interface.md shows both prompt templates; they must be what the code sends."""
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "interface.md").read_text(encoding="utf-8")
    assert stage1_text("{query}") in docs
    assert stage2_text("{query}", "{boxes}") in docs
