"""The bundled questions and the demo: no answer leaked by the question (a model's
restatement of the question would reveal it), worked traces whose answers appear only late,
and, scored by the real SmolLM2, a demo trace whose loss of the answer clearly falls."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from backend import demo

QUESTIONS = Path(__file__).resolve().parents[2] / "assets" / "questions" / "math_logic.jsonl"
# Logic puzzles whose answer is one of the people or types the question names: the answer is
# necessarily in the text, as one option among several; listed so any new leak stands out.
CHOICE_QUESTIONS = {"q08", "q09", "q20", "q29", "q35", "q42", "q47"}


def _mentions(text: str, answer: str) -> re.Match | None:
    """The answer as a whole token (the engine's ``first_answer_cut`` rule: ``8`` is not in ``18``)."""
    return re.compile(r"(?<![\w.])" + re.escape(answer.strip()) + r"(?![\w])", re.IGNORECASE).search(text)


def _bundled() -> list[dict]:
    rows = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows + demo.worked_traces()


def test_no_bundled_answer_is_leaked_by_its_question():
    leaked = {r["id"] for r in _bundled() if _mentions(r["question"], r["answer"])}
    assert leaked == CHOICE_QUESTIONS, f"answers leaked by the question: {sorted(leaked - CHOICE_QUESTIONS)}"
    for row in _bundled():
        if row["id"] in CHOICE_QUESTIONS:
            assert not re.fullmatch(r"[-\d./%]+", row["answer"]), "a numeric answer is never an option"
            other_names = set(re.findall(r"\b[A-Z][a-z]+\b", row["question"])) - {row["answer"]}
            assert other_names or "knight" in row["question"], f"{row['id']}: the answer must be one of several"


def test_worked_traces_are_labelled_and_reveal_their_answer_late():
    traces = demo.worked_traces()
    assert len(traces) >= 4 and traces[0]["id"] == "demo"
    questions = {json.loads(line)["id"]: json.loads(line) for line in QUESTIONS.read_text().splitlines()}
    assert traces[0]["question"] == questions["demo"]["question"], "the demo question is the set's first line"
    assert traces[0]["answer"] == questions["demo"]["answer"]
    for t in traces:
        assert t["source"] == "written for RaML Explorer"
        first = _mentions(t["trajectory"], t["answer"])
        assert first is not None, f"{t['id']}: the trace never reaches its answer"
        assert first.start() / len(t["trajectory"]) >= 0.55, f"{t['id']}: the answer appears too early"
    reqs = demo.demo_requests()
    assert [r.label for r in reqs[:-1]] == [t["id"] for t in traces]
    assert all(r.trajectory for r in reqs[:-1]), "worked traces are imported, not generated"
    assert reqs[-1].trajectory is None and reqs[-1].label == demo.GENERATED_LABEL
    assert reqs[-1].question == traces[0]["question"], "the model's own run answers the same demo question"


def test_demo_trace_scored_by_smollm2_shows_the_descent(smollm2, store):
    """The main demo, scored by the default model: before the answer is seen, the smoothed
    loss of the answer over the last fifth is far below the first fifth."""
    from backend.pipeline.run import run_question

    req = demo.demo_request()
    key = run_question(req, store, loaded=smollm2).key
    run = store.open(key)
    assert run.meta["trajectory_source"] == "imported" and run.meta["label"] == "demo"
    seen = run.meta["first_answer_cut"]
    n = run.meta["summary"]["n_tokens"]
    assert seen is not None and seen / n > 0.8
    loss = run.tokens.loc[~run.tokens["after_answer_seen"], "loss"].to_numpy()
    fifth = max(1, len(loss) // 5)
    start, end = float(np.mean(loss[:fifth])), float(np.mean(loss[-fifth:]))
    assert end < start - 0.8, f"no clear descent: {start:.2f} -> {end:.2f} nats"
    assert demo.demo_key(store) == key, "found from the index without loading the model"


@pytest.mark.parametrize("row", demo.worked_traces(), ids=lambda r: r["id"])
def test_worked_trace_answers_grade_as_correct(row):
    from backend.analysis.answers.extract import answers_match, extract_final_answer

    assert answers_match(extract_final_answer(row["trajectory"]), row["answer"])
