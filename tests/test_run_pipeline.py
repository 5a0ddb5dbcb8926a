"""A run end to end on the tiny model: tables, keys, cache hits, self answers, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY

from backend.engine.trajectory import encode
from backend.errors import ContextTooLongError, InputError
from backend.pipeline.run import RunRequest, estimate_probe_tokens, run_question


def test_run_tables_are_consistent(tiny_run):
    store, key = tiny_run
    run = store.open(key)
    n = run.meta["summary"]["n_tokens"]
    assert run.tokens["cut"].tolist() == list(range(n + 1))
    assert run.steps["end"].iloc[-1] == n and run.steps["start"].iloc[0] == 0
    loss_at = dict(zip(run.tokens["cut"], run.tokens["loss"]))
    assert np.allclose(run.steps["loss"], [loss_at[e] for e in run.steps["end"]])
    boundaries = run.tensor("boundary_cuts").astype(int).tolist()
    assert boundaries == [0] + run.steps["end"].tolist()
    L = run.meta["model"]["n_layers"]
    assert len(run.lens) == len(boundaries) * L
    last = run.lens[run.lens["layer"] == L - 1].sort_values("boundary")
    assert np.allclose(last["nll"], [loss_at[c] for c in boundaries], atol=1e-4)
    assert run.tensor("hidden").shape == (len(boundaries), L, run.meta["model"]["d_model"])
    assert run.meta["proxy_layers"] == [0, 1, 2, 3]
    assert run.meta["correct"] is True and run.meta["answer_source"] == "reference"
    assert "Wait" in run.tokens["reflection"].tolist()
    assert run.tokens["after_answer_seen"].any()  # "6" appears in the text before the end


def test_second_identical_request_is_a_cache_hit(tiny_run, tiny_llama):
    store, key = tiny_run
    req = RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, model=tiny_llama.name)
    outcome = run_question(req, store, loaded=tiny_llama)
    assert outcome.cached and outcome.key == key
    other = run_question(
        RunRequest(question=SAMPLE_QUESTION, answer="7", trajectory=SAMPLE_TRAJECTORY), store, loaded=tiny_llama
    )
    assert not other.cached and other.key != key


def test_self_answer_from_think_format(store, tiny_llama):
    traj = "<think>5 + 8 = 13 and 13 - 7 = 6.</think>\nSo the answer is \\boxed{6}."
    outcome = run_question(RunRequest(question=SAMPLE_QUESTION, trajectory=traj), store, loaded=tiny_llama)
    run = store.open(outcome.key)
    assert run.meta["answer"] == "6" and run.meta["answer_source"] == "self"
    assert run.meta["correct"] is None and run.meta["think_format"] is True
    assert run.meta["trajectory"] == "5 + 8 = 13 and 13 - 7 = 6."
    assert run.meta["prompt"].endswith("<think>\n")


def test_generated_trajectory_is_reproducible(store, tiny_llama):
    from backend.engine.trajectory import GenerationSettings

    req = RunRequest(
        question="What is 2 + 2?", answer="4", generation=GenerationSettings(max_new_tokens=12, temperature=1.0, seed=3)
    )
    first = run_question(req, store, loaded=tiny_llama)
    again = run_question(req, store, loaded=tiny_llama)
    assert not first.cached and again.cached and again.key == first.key
    meta = store.open(first.key).meta
    assert meta["trajectory_source"] == "generated" and meta["generation"]["seed"] == 3
    greedy = RunRequest(question="What is 2 + 2?", answer="4", generation=GenerationSettings(max_new_tokens=12))
    with pytest.raises(InputError, match="only whitespace"):  # this random model greedily emits newlines
        run_question(greedy, store, loaded=tiny_llama)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(question="  "), "question is empty"),
        (dict(question="q", answer=" "), "answer is empty"),
        (dict(question="q", trajectory="   "), "trajectory is empty"),
        (dict(question="q", trajectory="x", segmentation="words"), "unknown segmentation"),
        (dict(question="q", trajectory="x", cuts="some"), "unknown cut-point option"),
    ],
)
def test_bad_requests_name_the_problem(store, tiny_llama, kwargs, error):
    with pytest.raises(InputError, match=error):
        run_question(RunRequest(**kwargs), store, loaded=tiny_llama)
    assert store.list_runs().empty


def test_context_overflow_errors_or_truncates(store, smol_tokenizer):
    from conftest import build_tiny

    small = build_tiny("llama", smol_tokenizer, seed=3)
    small.model.config.max_position_embeddings = 120
    long_text = " ".join([SAMPLE_TRAJECTORY] * 2)
    with pytest.raises(ContextTooLongError, match="--truncate"):
        run_question(RunRequest(question="q?", answer="6", trajectory=long_text), store, loaded=small)
    assert store.list_runs().empty
    outcome = run_question(
        RunRequest(question="q?", answer="6", trajectory=long_text, truncate=True), store, loaded=small
    )
    run = store.open(outcome.key)
    assert run.meta["truncated_tokens"] > 0 and outcome.warnings
    prompt_len = len(encode(smol_tokenizer, run.meta["prompt"]))
    assert prompt_len + run.meta["summary"]["n_tokens"] + 10 <= 120 + 10
    assert long_text.endswith(run.meta["trajectory"])


def test_cost_estimate():
    assert estimate_probe_tokens(100, "all", 10) == 100 + 101 * 10
    assert estimate_probe_tokens(100, "stride:10", 10) == 100 + 11 * 10
