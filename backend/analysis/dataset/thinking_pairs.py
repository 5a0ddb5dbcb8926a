"""Thinking vs no thinking across questions (issue 21 item 2; the RaML reference's "nothinking" mode).

A pair is a run of the no-thinking condition (the prompt's thinking part empty) and its partner:
the run of the same model, question, answer and settings generated with the model thinking
(``meta.partner``, both ways; ``backend.pipeline.run.link_condition_pair``). Per question, the
difference **no thinking − thinking** of the final L̂ (nats) and of correctness (1 correct, 0 not;
a pair with an ungraded run is left out of it), averaged over the question's pairs (samples with
other seeds, other models); each condition's own mean likewise. Intervals: percentile bootstrap
over questions (``intervals.mean_interval``), none from fewer than 3 questions; n is the number of
questions. Pure functions over the library's index rows: no model, no run files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from backend.analysis.dataset.intervals import mean_interval
from backend.analysis.dataset.model_pairs import question_id
from backend.store.schema import CONDITION_NO_THINKING, CONDITION_THINKING

STATISTICS = ("final_loss", "correct")
PAIR_COLUMNS = (
    "question",
    "model",
    "key_thinking",
    "key_no_thinking",
    "final_loss_thinking",
    "final_loss_no_thinking",
    "correct_thinking",
    "correct_no_thinking",
)


def _float_or_nan(value) -> float:
    return float("nan") if value is None else float(value)


def _grade(value) -> float:
    """1.0 / 0.0 for a graded run, NaN for none (the index stores 1, 0 or NULL)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return float("nan")
    return float(bool(value))


def condition_of(runs: pd.DataFrame) -> pd.Series:
    """Each index row's condition (rows from before thinking pairs: ``thinking``)."""
    if "condition" not in runs:
        return pd.Series(CONDITION_THINKING, index=runs.index)
    return runs["condition"].fillna(CONDITION_THINKING).astype(str)


def condition_pairs(runs: pd.DataFrame, keys=None) -> pd.DataFrame:
    """One row per linked pair (``PAIR_COLUMNS``) among the index rows ``runs`` (columns key,
    question, model, condition, partner, final_loss, correct). With ``keys``: only the pairs
    with at least one of their two runs among ``keys`` (the partner is looked up in ``runs``)."""
    if runs.empty or "partner" not in runs:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    by_key = runs.set_index("key")
    wanted = None if keys is None else set(keys)
    rows = []
    no_thinking = runs[condition_of(runs) == CONDITION_NO_THINKING]
    for row in no_thinking.itertuples(index=False):
        partner = row.partner if isinstance(row.partner, str) else None
        if partner is None or partner not in by_key.index:
            continue
        if wanted is not None and row.key not in wanted and partner not in wanted:
            continue
        other = by_key.loc[partner]
        if isinstance(other, pd.DataFrame):  # a key listed twice (should not happen): the first row
            other = other.iloc[0]
        rows.append(
            {
                "question": question_id(row.question),
                "model": row.model,
                "key_thinking": partner,
                "key_no_thinking": row.key,
                "final_loss_thinking": _float_or_nan(other["final_loss"]),
                "final_loss_no_thinking": _float_or_nan(row.final_loss),
                "correct_thinking": _grade(other["correct"]),
                "correct_no_thinking": _grade(row.correct),
            }
        )
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


@dataclass
class ConditionComparison:
    """summary: one row per statistic (thinking, no_thinking and difference = no thinking −
    thinking, each with low/high, and n_questions); per_question: one row per question with
    both conditions; pairs: every linked pair."""

    summary: pd.DataFrame
    per_question: pd.DataFrame
    pairs: pd.DataFrame

    def to_json(self) -> dict:
        return {
            "difference": "no thinking - thinking",
            "n_pairs": len(self.pairs),
            "n_questions": len(self.per_question),
            "summary": self.summary.to_dict("records"),
            "per_question": self.per_question.to_dict("records"),
        }


def per_question(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per question: each condition's mean final L̂ and correctness over its pairs, their
    differences (no thinking − thinking; correctness over the pairs graded in both), and n_pairs."""
    rows = []
    for question, group in pairs.groupby("question", sort=True):
        row: dict = {"question": question, "n_pairs": len(group)}
        for stat in STATISTICS:
            a = group[f"{stat}_thinking"].to_numpy(np.float64)
            b = group[f"{stat}_no_thinking"].to_numpy(np.float64)
            both = np.isfinite(a) & np.isfinite(b)
            row[f"{stat}_thinking"] = float(a[both].mean()) if both.any() else float("nan")
            row[f"{stat}_no_thinking"] = float(b[both].mean()) if both.any() else float("nan")
            row[f"{stat}_difference"] = float((b[both] - a[both]).mean()) if both.any() else float("nan")
        rows.append(row)
    columns = ["question", "n_pairs"] + [
        f"{s}_{c}" for s in STATISTICS for c in ("thinking", "no_thinking", "difference")
    ]
    return pd.DataFrame(rows, columns=columns)


def compare_conditions(pairs: pd.DataFrame) -> ConditionComparison:
    """Paired statistics of the linked ``pairs`` (``condition_pairs``) over questions."""
    table = per_question(pairs)
    summary = []
    for stat in STATISTICS:
        intervals = {
            part: mean_interval(table[f"{stat}_{part}"].to_numpy(np.float64) if len(table) else np.zeros(0))
            for part in ("thinking", "no_thinking", "difference")
        }
        row: dict = {"statistic": stat}
        for part, interval in intervals.items():
            row |= {part: interval.estimate, f"{part}_low": interval.low, f"{part}_high": interval.high}
        row["n_questions"] = intervals["difference"].n
        summary.append(row)
    return ConditionComparison(pd.DataFrame(summary), table, pairs.reset_index(drop=True))


def thinking_comparison(runs: pd.DataFrame, keys=None) -> ConditionComparison:
    """``compare_conditions(condition_pairs(runs, keys))``: what the Dataset page and ``raml stats`` show."""
    return compare_conditions(condition_pairs(runs, keys))
