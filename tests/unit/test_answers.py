"""Tests for backend.analysis.answers.extract and the bundled question set."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.analysis.answers.extract import (  # noqa: E402
    answers_match,
    extract_final_answer,
    is_correct,
    normalize_answer,
)

QUESTIONS = ROOT / "assets" / "questions" / "math_logic.jsonl"


# ---------------------------------------------------------------------------
# extract_final_answer
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        # boxed answers
        (r"So the result is \boxed{42}.", "42"),
        (r"Half of it: \boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\boxed{\frac{\sqrt{2}}{2}}", r"\frac{\sqrt{2}}{2}"),
        (r"First guess \boxed{3}, corrected: \boxed{5}. Later 99.", "5"),
        (r"Answer: \boxed{\text{Alice}}", r"\text{Alice}"),
        (r"We get $\boxed{1,000}$ meters.", "1,000"),
        (r"Truncated \boxed{7} then \boxed{8", "7"),
        # no box: last number in last line that has one
        ("First 3 then 5.\nSo she has 8 apples.", "8"),
        ("She has 8 apples.\n\nDone!", "8"),
        ("2 + 3 = 5", "5"),
        ("It is -3.", "-3"),
        ("So the fraction left is 3/8.", "3/8"),
        ("The tank holds 1,250 liters.", "1,250"),
        ("The speed is 24.5 km/h.", "24.5"),
        # explicit markers
        ("The answer is 42.", "42"),
        ("Work: 6 * 7.\nThe answer is 42.", "42"),
        ("The answer is 12 apples, from 3 bags of 4.", "12"),
        ("Final answer: **Alice**.", "Alice"),
        ("Step 1: 3 people.\nFinal answer: Carol", "Carol"),
        ("Final answer:\n\n7", "7"),
        ("Let me find the answer: 3 + 4 = 7", "7"),
        ("The answer is 5.\nWait, recheck: it is actually 6.", "6"),
        # no numbers at all
        ("Carol is the shortest.", "Carol is the shortest"),
        ("knave\n", "knave"),
        # empty
        ("", None),
        ("   \n\t ", None),
    ],
)
def test_extract_final_answer(text, expected):
    assert extract_final_answer(text) == expected


def test_extract_none_input():
    assert extract_final_answer(None) is None  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# normalize_answer
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  42 ", "42"),
        ("$12$", "12"),
        (r"\boxed{7}", "7"),
        (r"\boxed{\dfrac{6}{8}}", "3/4"),
        (r"\frac{3}{4}", "3/4"),
        (r"\frac{4}{2}", "2"),
        (r"-\frac{1}{2}", "-1/2"),
        (r"\frac12", "1/2"),
        ("6/8", "3/4"),
        ("3 / 9", "1/3"),
        ("10/5", "2"),
        ("1,000", "1000"),
        (r"1\,000", "1000"),
        ("1,234,567", "1234567"),
        ("4.0", "4"),
        ("2.50", "2.5"),
        (".5", "0.5"),
        ("-0.0", "0"),
        ("50%", "50"),
        (r"50\%", "50"),
        ("12 apples", "12"),
        ("5 km", "5"),
        ("72 square centimeters", "72"),
        (r"12\text{ apples}", "12"),
        (r"\$4.00", "4"),
        ("x = 5", "5"),
        ("y=3/4", "3/4"),
        (r"\text{Alice}", "alice"),
        ("Alice.", "alice"),
        ("The knave", "knave"),
        (r"90^\circ", "90"),
        ("(5)", "5"),
        ("1/0", "1/0"),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


# ---------------------------------------------------------------------------
# answers_match
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "predicted, reference, expected",
    [
        ("1/2", "0.5", True),
        (r"\frac{3}{4}", "3/4", True),
        (r"\frac{3}{4}", "0.75", True),
        (r"\dfrac{2}{4}", "1/2", True),
        ("1,000", "1000", True),
        ("4.0", "4", True),
        ("$12$", "12", True),
        ("12 apples", "12", True),
        ("Alice", "alice", True),
        (r"\text{Carol}", "Carol", True),
        ("x = 7", "7", True),
        ("50%", "50", True),
        ("21.60", "21.6", True),
        ("0.3333333333", "1/3", True),
        ("1000000.4", "1000000", True),  # within 1e-6 relative tolerance
        ("7", "8", False),
        ("1/3", "0.33", False),
        ("1000001.5", "1000000", False),
        ("Bob", "Alice", False),
        ("-3", "3", False),
        ("", "0", False),
        (None, "5", False),
    ],
)
def test_answers_match(predicted, reference, expected):
    assert answers_match(predicted, reference) is expected


# ---------------------------------------------------------------------------
# is_correct
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response, reference, expected",
    [
        (r"5 + 8 - 6 - 1 = 6, so \boxed{6}", "6", True),
        (r"She ends with \boxed{7}", "6", False),
        ("Half the pizza: 4/8 = 1/2.\nThe answer is 0.5.", "1/2", True),
        (r"The probability is $\boxed{\frac{5}{10}}$.", "1/2", True),
        ("The total is 4,200 meters.", "4200", True),
        ("Final answer: Quinn", "Quinn", True),
        ("Final answer: Quinn", "Ravi", False),
        ("", "5", False),
        (r"\boxed{6}", "", None),
        (r"\boxed{6}", "   ", None),
    ],
)
def test_is_correct(response, reference, expected):
    assert is_correct(response, reference) is expected


# ---------------------------------------------------------------------------
# Question set
# ---------------------------------------------------------------------------


def _load_questions():
    rows = []
    with QUESTIONS.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            assert line.strip(), f"blank line {lineno} in {QUESTIONS.name}"
            rows.append(json.loads(line))
    return rows


def test_question_file_is_valid():
    rows = _load_questions()
    assert len(rows) >= 40
    assert rows[0]["id"] == "demo"
    ids = []
    for row in rows:
        assert isinstance(row, dict)
        for key in ("id", "question", "answer"):
            assert isinstance(row.get(key), str), (row, key)
            assert row[key].strip(), (row, key)
        ids.append(row["id"])
    assert len(ids) == len(set(ids)), "duplicate ids"


def test_question_answers_are_self_consistent():
    """Every reference answer matches itself through the grader, boxed or not."""
    for row in _load_questions():
        ans = row["answer"]
        assert answers_match(ans, ans), row
        assert is_correct(f"Reasoning...\n\\boxed{{{ans}}}", ans) is True, row
        assert is_correct(f"The answer is {ans}.", ans) is True, row


def test_demo_answer_is_small_integer():
    demo = _load_questions()[0]
    assert demo["answer"].isdigit()
    assert 0 < int(demo["answer"]) < 100
