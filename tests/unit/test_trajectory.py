"""Prompt, <think> parsing, segmentation into steps, reflection words, answer-seen flag."""

from __future__ import annotations

import pytest
from conftest import SAMPLE_TRAJECTORY

from backend.engine.specs import parse_cuts
from backend.engine.trajectory import (
    build_prompt,
    encode_with_offsets,
    first_answer_cut,
    reflection_marks,
    segment,
    split_thinking,
)
from backend.errors import InputError


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>a b</think>The answer is 3", ("a b", "The answer is 3", True)),
        ("a b</think>\\boxed{3}", ("a b", "\\boxed{3}", True)),  # template put <think> in the prompt
        ("<think>still thinking", ("still thinking", "", True)),
        ("plain response", ("plain response", "", False)),
    ],
)
def test_split_thinking(text, expected):
    assert split_thinking(text) == expected


def test_prompt_uses_chat_template_and_think_prefix(smol_tokenizer):
    prompt = build_prompt(smol_tokenizer, "What is 2+2?", think=True)
    assert "<|im_start|>user\nWhat is 2+2?" in prompt and prompt.endswith("<think>\n")
    with pytest.raises(InputError, match="question is empty"):
        build_prompt(smol_tokenizer, "   ", think=False)


def test_sentence_segmentation_covers_all_tokens(smol_tokenizer):
    ids, offsets = encode_with_offsets(smol_tokenizer, SAMPLE_TRAJECTORY)
    steps = segment(SAMPLE_TRAJECTORY, offsets, "sentences")
    assert steps[0].start == 0 and steps[-1].end == len(ids)
    assert all(a.end == b.start for a, b in zip(steps, steps[1:]))
    assert "".join(s.text for s in steps) == SAMPLE_TRAJECTORY
    texts = [s.text.strip() for s in steps]
    assert texts[0] == "Maya starts with 5 apples."
    assert texts[2].startswith("Wait, let me check that")
    assert [s.index for s in steps if s.reflection_words] == [2, 5, 6]
    assert steps[2].reflection_words == ["Wait", "let me check"]


@pytest.mark.parametrize("mode, n_steps", [("lines", 2), ("paragraphs", 1), ("tokens:10", None)])
def test_other_segmentations(smol_tokenizer, mode, n_steps):
    ids, offsets = encode_with_offsets(smol_tokenizer, SAMPLE_TRAJECTORY)
    steps = segment(SAMPLE_TRAJECTORY, offsets, mode)
    expected = n_steps if n_steps is not None else -(-len(ids) // 10)
    assert len(steps) == expected
    assert steps[-1].end == len(ids)


def test_bad_segmentation_is_named():
    with pytest.raises(InputError, match="unknown segmentation 'words'"):
        segment("a. b.", [(0, 2), (2, 5)], "words")
    with pytest.raises(InputError, match="positive window"):
        segment("a. b.", [(0, 2), (2, 5)], "tokens:0")


def test_reflection_marks_bracket_the_word(smol_tokenizer):
    ids, offsets = encode_with_offsets(smol_tokenizer, SAMPLE_TRAJECTORY)
    marks = reflection_marks(SAMPLE_TRAJECTORY, offsets)
    assert [m.word for m in marks] == ["Wait", "let me check", "However", "Hmm"]
    for m in marks:
        covered = SAMPLE_TRAJECTORY[offsets[m.cut_before][0] : offsets[m.cut_after - 1][1]]
        assert m.word in covered and m.cut_before < m.cut_after


def test_first_answer_cut(smol_tokenizer):
    text = "We get 16 here, then 6 remains. So 6."
    ids, offsets = encode_with_offsets(smol_tokenizer, text)
    cut = first_answer_cut(text, offsets, "6")
    assert "6" in smol_tokenizer.decode(ids[:cut]) and "6 remains" not in smol_tokenizer.decode(ids[: cut - 1])
    assert first_answer_cut(text, offsets, "99") is None


def test_parse_cuts():
    assert parse_cuts("all", 10) is None
    assert parse_cuts("stride:4", 10) == [0, 4, 8, 10]
    assert parse_cuts("steps", 10, [0, 3, 10]) == [0, 3, 10]
    with pytest.raises(InputError, match="unknown cut-point option"):
        parse_cuts("every", 10)
