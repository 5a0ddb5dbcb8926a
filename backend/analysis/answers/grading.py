"""Grading a response against a reference answer: the project's extractor first, math-verify
when the normalised strings differ.

``answers.py`` extracts the final answer (last ``\\boxed{}``, an answer marker, the last
number) and settles plain cases (equal normalised strings, equal numbers, words). When it
cannot say the two are equal, ``math-verify`` (extra ``math``) parses both as LaTeX and
compares them symbolically (``\\sqrt{12}`` = ``2\\sqrt{3}``, sets, intervals, matrices,
``2^{10}``). math-verify's own timeouts use ``signal.alarm``, which only works on the main
thread; here its timeouts are switched off (``parsing_timeout=None``,
``timeout_seconds=None``) and the call runs on a daemon thread that the caller waits on for
at most ``timeout_s`` seconds, so grading also works off the main thread (Streamlit, job
workers). A comparison that runs out of time counts as "not equal" with grader
``math-verify-timeout``.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass

from backend.analysis.answers.extract import answers_match, extract_final_answer, normalize_answer

log = logging.getLogger(__name__)

GRADER_VERSION = 1
DEFAULT_TIMEOUT_S = 5.0

# "(B)", "\text{(B)}", "\textbf{(A) }", "B": a multiple-choice letter A-E
_CHOICE = re.compile(r"^\(?\s*([a-e])\s*\)?$")


@dataclass(frozen=True)
class Grade:
    """Outcome of grading one answer: ``correct`` is None when there is nothing to grade."""

    correct: bool | None
    grader: str  # "answers" | "math-verify" | "math-verify-timeout" | "none"
    predicted: str | None


def math_verify_available() -> bool:
    try:
        import math_verify  # noqa: F401
    except ImportError:
        return False
    return True


def _choice_letter(answer: str) -> str | None:
    m = _CHOICE.match(normalize_answer(answer).strip())
    return m.group(1) if m else None


def _as_latex(answer: str) -> str:
    s = answer.strip()
    return s if s.startswith("$") or s.startswith("\\(") or s.startswith("\\[") else f"${s}$"


def _math_verify_equal(predicted: str, reference: str) -> bool:
    """math-verify with its signal-based timeouts off (safe on any thread)."""
    from math_verify import parse, verify

    # it warns once that its own timeouts are off; the bound is ours (math_verify_equal)
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    gold = parse(_as_latex(reference), parsing_timeout=None)
    pred = parse(_as_latex(predicted), parsing_timeout=None)
    if not gold or not pred:
        return False
    return bool(verify(gold, pred, timeout_seconds=None))


def math_verify_equal(predicted: str, reference: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool | None:
    """True/False from math-verify, or None when it did not finish within ``timeout_s``.

    The comparison runs on a daemon thread; a comparison that hangs (sympy on a huge power)
    is abandoned, never waited on past the bound, and does not keep the process alive.
    """
    outcome: list[bool] = []

    def work() -> None:
        try:
            outcome.append(_math_verify_equal(predicted, reference))
        except Exception as exc:  # sympy/antlr failures on odd input mean "not shown equal"
            log.debug("math-verify failed on %r vs %r: %s", predicted, reference, exc)
            outcome.append(False)

    worker = threading.Thread(target=work, name="math-verify", daemon=True)
    worker.start()
    worker.join(timeout_s)
    return outcome[0] if outcome else None


def grade_answer(
    predicted: str | None, reference: str | None, *, use_math_verify: bool = True, timeout_s: float = DEFAULT_TIMEOUT_S
) -> Grade:
    """Grade an extracted answer against the reference."""
    if reference is None or not str(reference).strip():
        return Grade(None, "none", predicted)
    if predicted is None or not predicted.strip():
        return Grade(False, "answers", predicted)
    if answers_match(predicted, reference):
        return Grade(True, "answers", predicted)
    pred_choice, ref_choice = _choice_letter(predicted), _choice_letter(reference)
    if pred_choice and ref_choice:
        return Grade(pred_choice == ref_choice, "answers", predicted)
    if not use_math_verify or not math_verify_available():
        return Grade(False, "answers", predicted)
    same = math_verify_equal(predicted, reference, timeout_s)
    if same is None:
        return Grade(False, "math-verify-timeout", predicted)
    return Grade(same, "math-verify", predicted)


def grade_response(
    response: str, reference: str | None, *, use_math_verify: bool = True, timeout_s: float = DEFAULT_TIMEOUT_S
) -> Grade:
    """Extract the final answer of a full response and grade it."""
    return grade_answer(
        extract_final_answer(response or ""), reference, use_math_verify=use_math_verify, timeout_s=timeout_s
    )
