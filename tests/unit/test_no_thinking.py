"""Thinking vs no thinking (issue 21 item 2): the no-thinking prompt (the template's own switch,
else an empty think block with the model's own markers) and the paired statistics over
questions, checked against a hand computation."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest

from backend.analysis.dataset.intervals import mean_interval
from backend.analysis.dataset.thinking_pairs import compare_conditions, condition_pairs, thinking_comparison
from backend.engine.trajectory import build_no_thinking_prompt, build_prompt, has_thinking_switch, think_markers

# Qwen3's chat template, reduced to what decides the generation prompt (its own switch, verbatim logic)
QWEN3_LIKE = (
    "{%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)
# DeepSeek-R1 distills open the thinking part in the generation prompt themselves
R1_LIKE = (
    "{%- for message in messages %}{{ '<｜User｜>' + message['content'] }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{%- endif %}"
)
EMPTY_THINK = "<think>\n\n</think>\n\n"


def _with_template(tokenizer, template: str):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = template
    return tok


def test_the_templates_own_switch_empties_the_thinking_part(smol_tokenizer):
    tok = _with_template(smol_tokenizer, QWEN3_LIKE)
    assert has_thinking_switch(tok) and think_markers(tok) == ("<think>", "</think>")
    made = build_no_thinking_prompt(tok, "  What is 2 + 2? ")
    expected = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 2?"}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )
    assert (
        made.prompt == expected == "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n" + EMPTY_THINK
    )
    assert made.as_meta() == {"method": "template-switch", "markers": ["<think>", "</think>"]}
    assert build_prompt(tok, "What is 2 + 2?", think=False).endswith("<|im_start|>assistant\n")  # thinking: no block


def test_without_a_switch_an_empty_think_block_is_prefilled(smol_tokenizer):
    assert not has_thinking_switch(smol_tokenizer)  # SmolLM2's own template
    made = build_no_thinking_prompt(smol_tokenizer, "What is 2 + 2?")
    assert made.prompt == build_prompt(smol_tokenizer, "What is 2 + 2?", think=False) + EMPTY_THINK
    assert made.method == "prefill" and made.markers == ("<think>", "</think>")


def test_a_prompt_that_opens_the_thinking_part_is_closed_not_opened_twice(smol_tokenizer):
    tok = _with_template(smol_tokenizer, R1_LIKE)
    made = build_no_thinking_prompt(tok, "Q?")
    assert made.prompt == "<｜User｜>Q?<｜Assistant｜><think>\n\n</think>\n\n" and made.method == "prefill"


def test_a_switch_that_changes_nothing_falls_back_to_the_prefill(smol_tokenizer):
    ignored = QWEN3_LIKE.replace("enable_thinking is defined and enable_thinking is false", "false") + (
        "{# enable_thinking: not supported #}"
    )
    tok = _with_template(smol_tokenizer, ignored)
    assert has_thinking_switch(tok)
    made = build_no_thinking_prompt(tok, "Q?")
    assert made.method == "prefill" and made.prompt == "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n" + (
        EMPTY_THINK
    )


def test_the_models_own_markers_are_used(smol_tokenizer):
    template = QWEN3_LIKE.replace("<think>\\n\\n</think>", "").replace(
        "{%- endif %}{%- endif %}", "{%- endif %}{%- endif %}{# <|begin_of_thought|> … <|end_of_thought|> #}"
    )
    tok = _with_template(smol_tokenizer, template)
    assert think_markers(tok) == ("<|begin_of_thought|>", "<|end_of_thought|>")
    made = build_no_thinking_prompt(tok, "Q?")  # its switch renders no think block: prefilled with its markers
    assert made.method == "prefill" and made.prompt.endswith("<|begin_of_thought|>\n\n<|end_of_thought|>\n\n")


# ----------------------------------------------------------------------------- paired statistics
def _index_rows() -> pd.DataFrame:
    """Library rows: q1 has two pairs (seeds 0 and 1), q2 and q3 one each; one no-thinking run
    has no partner (left out), one thinking run has none either, q3's no-thinking run is ungraded."""
    rows = [
        # key, question, condition, partner, final_loss, correct
        ("t1a", "q1", "thinking", "n1a", 1.0, 1),
        ("n1a", "q1", "no-thinking", "t1a", 3.0, 0),
        ("t1b", "q1 ", "thinking", "n1b", 2.0, 1),  # the same question up to whitespace
        ("n1b", "q1", "no-thinking", "t1b", 3.5, 1),
        ("t2", "q2", "thinking", "n2", 2.0, 0),
        ("n2", "q2", "no-thinking", "t2", 2.5, 1),
        ("t3", "q3", "thinking", "n3", 1.5, 1),
        ("n3", "q3", "no-thinking", "t3", 1.0, None),
        ("lonely", "q4", "no-thinking", None, 9.0, 0),
        ("plain", "q4", None, None, 1.0, 1),  # an index row from before thinking pairs: thinking
    ]
    frame = pd.DataFrame(rows, columns=["key", "question", "condition", "partner", "final_loss", "correct"])
    return frame.assign(model="tiny")


def test_paired_statistics_equal_a_hand_computation():
    comparison = thinking_comparison(_index_rows())
    assert len(comparison.pairs) == 4 and set(comparison.pairs["key_no_thinking"]) == {"n1a", "n1b", "n2", "n3"}
    per_q = comparison.per_question.set_index("question")
    # final L̂, no thinking − thinking: q1 = ((3 − 1) + (3.5 − 2)) / 2 = 1.75, q2 = 0.5, q3 = −0.5
    assert per_q["final_loss_difference"].to_dict() == {"q1": 1.75, "q2": 0.5, "q3": -0.5}
    assert per_q.loc["q1", ["final_loss_thinking", "final_loss_no_thinking", "n_pairs"]].tolist() == [1.5, 3.25, 2]
    # correctness: q1 = ((0 − 1) + (1 − 1)) / 2 = −0.5, q2 = 1 − 0 = 1, q3 ungraded without thinking: none
    assert per_q.loc["q1", "correct_difference"] == -0.5 and per_q.loc["q2", "correct_difference"] == 1.0
    assert math.isnan(per_q.loc["q3", "correct_difference"])
    summary = comparison.summary.set_index("statistic")
    loss = summary.loc["final_loss"]
    assert loss["difference"] == pytest.approx((1.75 + 0.5 - 0.5) / 3) and loss["n_questions"] == 3
    assert loss["thinking"] == pytest.approx((1.5 + 2.0 + 1.5) / 3)
    assert loss["no_thinking"] == pytest.approx((3.25 + 2.5 + 1.0) / 3)
    by_hand = mean_interval(np.array([1.75, 0.5, -0.5]))  # bootstrap over the 3 questions
    assert (loss["difference_low"], loss["difference_high"]) == (by_hand.low, by_hand.high)
    assert loss["difference_low"] <= loss["difference"] <= loss["difference_high"]
    correct = summary.loc["correct"]
    assert correct["difference"] == pytest.approx(0.25) and correct["n_questions"] == 2
    assert math.isnan(correct["difference_low"]) and math.isnan(correct["difference_high"])  # n < 3: no interval
    payload = comparison.to_json()
    assert (payload["n_pairs"], payload["n_questions"], payload["difference"]) == (4, 3, "no thinking - thinking")


def test_pairs_with_a_run_in_the_selection_and_no_pairs():
    rows = _index_rows()
    picked = condition_pairs(rows, keys=["t2"])  # the thinking run selects its pair; its partner comes from the rows
    assert picked[["key_thinking", "key_no_thinking"]].values.tolist() == [["t2", "n2"]]
    empty = compare_conditions(condition_pairs(rows, keys=["plain"]))
    assert empty.pairs.empty and empty.per_question.empty
    assert empty.summary["n_questions"].tolist() == [0, 0]
    assert condition_pairs(rows.drop(columns=["partner"])).empty  # an index from before thinking pairs
