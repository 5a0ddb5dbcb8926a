"""Grading: answers.py first, math-verify when the normalised strings differ (issue 12 item 2).

The golden file holds hand-labelled (response, reference, correct) triples of MATH, GSM8K,
AIME, multiple-choice, unit, percentage and word answers; the accuracy of both graders is
printed so the README figures can be checked with ``pytest -s tests/unit/test_grading.py``.
"""

import json
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import pytest

from backend.analysis.answers import grading
from backend.analysis.answers.extract import is_correct
from backend.analysis.answers.grading import grade_answer, grade_response
from backend.pipeline.run import RunRequest, run_question

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "grading_golden.jsonl"
pytestmark = pytest.mark.skipif(not grading.math_verify_available(), reason="extra 'math' (math-verify) not installed")
# What math-verify decides must not depend on how busy the machine is: its bound (5 s by default,
# the product's) is a deadline here, far above any real comparison; the bound itself is tested
# below with a comparison that blocks.
DEADLINE_S = 300.0


def _golden() -> list[dict]:
    return [json.loads(line) for line in GOLDEN.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_golden_file_covers_every_kind_with_both_labels():
    rows = _golden()
    assert len(rows) >= 80
    kinds = Counter(r["kind"] for r in rows)
    assert set(kinds) == {"math", "gsm8k", "aime", "mc", "units", "percent", "words"}
    for kind in kinds:
        labels = {r["correct"] for r in rows if r["kind"] == kind}
        assert labels == {True, False}, f"{kind} needs right and wrong examples"


def test_golden_accuracy_with_math_verify_is_at_least_95_percent(capsys):
    rows = _golden()
    alone = sum(bool(is_correct(r["response"], r["reference"])) == r["correct"] for r in rows)
    graded = [grade_response(r["response"], r["reference"], timeout_s=DEADLINE_S) for r in rows]
    combined = sum(g.correct == r["correct"] for g, r in zip(graded, rows))
    wrong = [(r["response"], r["reference"]) for g, r in zip(graded, rows) if g.correct != r["correct"]]
    with capsys.disabled():
        print(
            f"\ngrading golden file ({len(rows)} pairs): answers.py alone {alone}/{len(rows)} = "
            f"{alone / len(rows):.1%}; with math-verify {combined}/{len(rows)} = {combined / len(rows):.1%}"
        )
    assert combined / len(rows) >= 0.95, wrong
    assert {g.grader for g in graded} >= {"answers", "math-verify"}


@pytest.mark.parametrize(
    "predicted, reference, correct",
    [
        (r"2\sqrt{3}", r"\sqrt{12}", True),
        (r"(x+1)^2", "x^2+2x+1", True),
        (r"\{1,2,3\}", r"\{3,2,1\}", True),
        (r"[0,5)", r"(0,5]", False),
        (r"2^{10}", "1024", True),
        (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix}2\\1\end{pmatrix}", False),
    ],
)
def test_math_verify_decides_what_answers_py_cannot(predicted, reference, correct):
    grade = grade_answer(predicted, reference, timeout_s=DEADLINE_S)
    assert (grade.correct, grade.grader, grade.predicted) == (correct, "math-verify", predicted)


def test_plain_cases_never_reach_math_verify(monkeypatch):
    monkeypatch.setattr(grading, "_math_verify_equal", lambda p, r: pytest.fail("math-verify called"))
    assert grade_answer("1,000", "1000") == grading.Grade(True, "answers", "1,000")
    assert grade_answer(r"\text{(B)}", "B").correct is True
    assert grade_answer("A", "(B)").correct is False
    assert grade_answer("x", None).grader == "none"


def test_grading_works_off_the_main_thread():
    """math-verify's own timeouts use signal.alarm, which raises off the main thread."""
    results = []
    worker = threading.Thread(
        target=lambda: results.append(grade_answer(r"\sqrt{12}", r"2\sqrt{3}", timeout_s=DEADLINE_S))
    )
    worker.start()
    worker.join()
    assert results == [grading.Grade(True, "math-verify", r"\sqrt{12}")]


def test_a_hanging_comparison_is_abandoned_after_the_bound(monkeypatch):
    release, finished = threading.Event(), threading.Event()

    def hang(predicted, reference):
        release.wait(30)
        finished.set()
        return True

    monkeypatch.setattr(grading, "_math_verify_equal", hang)
    grade = grade_answer(r"\sqrt{12}", r"2\sqrt{3}", timeout_s=0.2)
    still_running = not finished.is_set()  # the grade came back while the comparison was blocked
    release.set()
    assert grade == grading.Grade(False, "math-verify-timeout", r"\sqrt{12}")
    assert still_running


def test_run_records_grader_and_predicted_answer_in_meta_and_index(store, tiny_llama, monkeypatch):
    import functools

    import backend.pipeline.run as pipeline

    monkeypatch.setattr(pipeline, "grade_answer", functools.partial(grade_answer, timeout_s=DEADLINE_S))
    traj = "<think>Twelve has the square root two root three.</think>The answer is $2\\sqrt{3}$."
    req = RunRequest(question="What is sqrt(12)?", answer=r"\sqrt{12}", trajectory=traj, model=tiny_llama.name)
    key = run_question(req, store, loaded=tiny_llama).key
    meta = store.open(key).meta
    assert (meta["predicted_answer"], meta["correct"], meta["grader"]) == (r"2\sqrt{3}", True, "math-verify")
    with sqlite3.connect(store.index_path) as con:
        row = con.execute("SELECT predicted_answer, grader, correct FROM runs WHERE key = ?", (key,)).fetchone()
    assert row == (r"2\sqrt{3}", "math-verify", 1)


def test_an_index_written_before_grading_gains_the_new_columns(tmp_path):
    from backend.store.runs import INDEX_COLUMNS, RunStore

    (tmp_path / "cache").mkdir()
    with sqlite3.connect(tmp_path / "cache" / "index.sqlite") as con:
        con.execute(
            "CREATE TABLE runs (key TEXT PRIMARY KEY, question TEXT, model TEXT, answer TEXT, answer_source TEXT, "
            "correct INTEGER, n_tokens INTEGER, n_steps INTEGER, final_loss REAL, initial_loss REAL, created REAL, "
            "label TEXT)"
        )
    store = RunStore(tmp_path / "cache")
    with sqlite3.connect(store.index_path) as con:
        columns = [row[1] for row in con.execute("PRAGMA table_info(runs)")]
    assert tuple(columns) == INDEX_COLUMNS
