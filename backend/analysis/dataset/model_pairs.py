"""Two models on the same questions (a base and a reasoning-tuned model, a student and its teacher).

Only loss-level statistics, so the models may have different hidden sizes. Questions are
matched by their whitespace-normalised text; a model's value for a question is the mean over
its samples of that question. Paired differences are B − A per question, with intervals over
questions; accuracy is over the runs of the paired questions that have a reference answer.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from backend.analysis.dataset.intervals import column_mean_intervals, mean_interval


def question_id(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


@dataclass
class ModelComparison:
    """summary: one row per statistic (statistic, model_a, model_b, difference with interval, n);
    per_question: one row per paired question; curves: (model, progress, mean, low, high, n)."""

    model_a: str
    model_b: str
    summary: pd.DataFrame
    per_question: pd.DataFrame
    curves: pd.DataFrame


def models_with_shared_questions(runs: pd.DataFrame) -> list[str]:
    """Models that share at least one question with another model."""
    questions = runs.assign(qid=runs["question"].map(question_id)).groupby("qid")["model"].nunique()
    shared = set(questions[questions >= 2].index)
    return sorted(runs[runs["question"].map(question_id).isin(shared)]["model"].unique())


def compare_models(
    runs: pd.DataFrame, curves: np.ndarray, grid: np.ndarray, model_a: str, model_b: str
) -> ModelComparison:
    """runs: one row per run (key, model, question, correct, final_loss, auc); curves ``[R, G]``
    aligned with ``runs`` rows, on ``grid`` ``[G]``."""
    if model_a == model_b:
        raise ValueError("choose two different models")
    runs = runs.reset_index(drop=True).assign(qid=lambda f: f["question"].map(question_id))
    per_model = {}
    for model in (model_a, model_b):
        part = runs[runs["model"] == model]
        if part.empty:
            raise ValueError(f"no runs of model {model!r}")
        per_model[model] = part
    shared = sorted(set(per_model[model_a]["qid"]) & set(per_model[model_b]["qid"]))
    rows = []
    curve_rows: dict[str, list[np.ndarray]] = {model_a: [], model_b: []}
    for qid in shared:
        row = {"question": qid}
        for tag, model in (("a", model_a), ("b", model_b)):
            part = per_model[model][per_model[model]["qid"] == qid]
            known = [bool(v) for v in part["correct"] if v is not None and not (isinstance(v, float) and np.isnan(v))]
            row[f"final_loss_{tag}"] = float(part["final_loss"].mean())
            row[f"auc_{tag}"] = float(part["auc"].mean())
            row[f"accuracy_{tag}"] = float(np.mean(known)) if known else float("nan")
            row[f"samples_{tag}"] = len(part)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # grid points no sample reaches stay NaN
                curve_rows[model].append(np.nanmean(curves[part.index.to_numpy()], axis=0))
        rows.append(row)
    per_question = pd.DataFrame(rows)
    summary_rows = []
    for stat in ("final_loss", "auc", "accuracy"):
        a = per_question[f"{stat}_a"].to_numpy() if rows else np.zeros(0)
        b = per_question[f"{stat}_b"].to_numpy() if rows else np.zeros(0)
        ia, ib, diff = mean_interval(a), mean_interval(b), mean_interval(b - a)
        summary_rows.append(
            {
                "statistic": stat,
                "model_a": ia.estimate,
                "model_a_low": ia.low,
                "model_a_high": ia.high,
                "model_b": ib.estimate,
                "model_b_low": ib.low,
                "model_b_high": ib.high,
                "difference": diff.estimate,
                "difference_low": diff.low,
                "difference_high": diff.high,
                "n_questions": diff.n,
            }
        )
    frames = []
    for model in (model_a, model_b):
        if curve_rows[model]:
            mean, low, high, n = column_mean_intervals(np.array(curve_rows[model]))
            frames.append(
                pd.DataFrame({"model": model, "progress": grid, "mean": mean, "low": low, "high": high, "n": n})
            )
    curve_frame = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["model", "progress", "mean", "low", "high", "n"])
    )
    return ModelComparison(model_a, model_b, pd.DataFrame(summary_rows), per_question, curve_frame)
