"""Segmentation (issue 12 item 4): sentences keep enumerations, abbreviations and decimals whole
and merge short fragments; the thought-anchors mode reproduces Thought Anchors' published chunks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.engine.trajectory import (
    SEGMENTER_VERSION,
    encode_with_offsets,
    segment,
    thought_anchors_chunks,
    thought_anchors_spans,
)
from backend.errors import InputError

PUBLISHED = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "thought_anchors_chunks.json").read_text("utf-8")
)


def _char_steps(text: str, spec: str) -> list[str]:
    """Steps with one 'token' per character, so step texts show the character boundaries."""
    return [s.text for s in segment(text, [(i, i + 1) for i in range(len(text))], spec)]


def test_sentences_keep_enumerations_abbreviations_and_decimals():
    text = (
        "Plan:\n1. Compute the area first.\n2. Then halve it.\n"
        "Dr. Smith measured 3.14 cm, i.e. about pi. Prices rose, e.g. by 2.5 percent. Next we check it."
    )
    assert _char_steps(text, "sentences") == [
        "Plan:\n1. Compute the area first.\n",
        "2. Then halve it.\n",
        "Dr. Smith measured 3.14 cm, i.e. about pi. ",
        "Prices rose, e.g. by 2.5 percent. ",
        "Next we check it.",
    ]


def test_sentences_merge_fragments_under_ten_characters():
    text = "Okay. So. The total is 12 apples. Yes! Done."
    steps = _char_steps(text, "sentences")
    assert steps == ["Okay. So. The total is 12 apples. ", "Yes! Done."]
    assert all(len(s.strip()) >= 10 for s in steps)
    assert "".join(steps) == text


@pytest.mark.parametrize("problem", PUBLISHED["problems"], ids=lambda p: p["problem"])
def test_thought_anchors_mode_reproduces_their_published_chunks(problem):
    text = problem["solution_text"]
    assert thought_anchors_chunks(text) == problem["chunks"]
    spans = thought_anchors_spans(text)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # the spans tile the text
    for start, end, chunk in spans:
        assert " ".join(text[start:end].split()) == " ".join(chunk.split())


@pytest.mark.parametrize("problem", PUBLISHED["problems"][:1], ids=lambda p: p["problem"])
def test_thought_anchors_steps_on_real_tokens(problem, smol_tokenizer):
    text = problem["solution_text"]
    ids, offsets = encode_with_offsets(smol_tokenizer, text)
    steps = segment(text, offsets, "thought-anchors")
    assert len(steps) == len(problem["chunks"])
    assert steps[0].start == 0 and steps[-1].end == len(ids)
    same = [" ".join(s.text.split()) == " ".join(c.split()) for s, c in zip(steps, problem["chunks"])]
    assert sum(same) / len(same) >= 0.95, [c for c, ok in zip(problem["chunks"], same) if not ok][:3]


def test_inline_enumerations_and_abbreviations_stay_with_their_sentence():
    text = (
        "Let me list the steps. 1. Dr. Lee has 3.5 kg of flour, i.e. 3500 g. "
        "2. Each loaf needs 500 g. So 3500 / 500 = 7 loaves. Wait. Let me check: 7 x 500 = 3500. Yes. "
        "The answer is 7."
    )
    assert _char_steps(text, "sentences") == [
        "Let me list the steps. ",
        "1. Dr. Lee has 3.5 kg of flour, i.e. 3500 g. ",
        "2. Each loaf needs 500 g. ",
        "So 3500 / 500 = 7 loaves. ",
        "Wait. Let me check: 7 x 500 = 3500. ",
        "Yes. The answer is 7.",
    ]
    assert thought_anchors_chunks(text)[1:3] == ["1. Dr. Lee has 3.5 kg of flour, i.e.", "3500 g. 2."]  # their rule


def test_thought_anchors_refuses_think_tags_and_version_is_recorded(tiny_run):
    with pytest.raises(InputError, match="without <think>"):
        thought_anchors_spans("<think>a. b.</think>")
    store, key = tiny_run
    assert store.open(key).meta["segmenter_version"] == SEGMENTER_VERSION == 2
