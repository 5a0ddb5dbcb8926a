"""Dataset: RaML's claims tested on many questions, each aggregate with n and a bootstrap 95%
interval: descent over progress, reflection words against a matched control, length, two
models on the same questions, samples of one question, a map of tasks by their implicit
updates, inner-loop statistics, and every question in a table; a click on a point or a row
opens the run in Explore.

All numbers come from ``backend.analysis.dataset.claims`` (cached on disk per set of runs and
settings, and in memory here), so reopening the page is quick. State in the URL: ``?model=&q=``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import claims_panels, data, ui
from backend.analysis.dataset.claims import ClaimsSettings
from backend.analysis.dataset.progress_curves import PAPER_EMA_ALPHA

EXPLORE_PAGE = "views/explore.py"
ALL_MODELS = "all models"


def render() -> None:
    ui.guard(_render)


def filter_runs(runs: pd.DataFrame, model: str, text: str) -> pd.DataFrame:
    """Index rows of one model (or all) whose question or label contains ``text``."""
    view = runs if model == ALL_MODELS else runs[runs["model"] == model]
    text = text.strip().lower()
    if text:
        haystack = view["question"].fillna("").str.lower() + " " + view["label"].fillna("").str.lower()
        view = view[haystack.str.contains(text, regex=False)]
    return view


_clicked_key = claims_panels.clicked_key  # point or row -> run key (customdata[0])


def _open(key: str | None) -> None:
    if key:
        st.switch_page(EXPLORE_PAGE, query_params={"run": key})


def _render() -> None:
    st.html(ui.BASE_CSS)
    st.title("Dataset")
    store = data.get_store()
    runs = data.list_runs(store)
    if runs.empty:
        st.info(ui.EMPTY_STATE + "\n- `python -m backend batch QUESTIONS.jsonl` for a whole question set.")
        return

    models = runs["model"].value_counts()
    model_options = [ALL_MODELS, *models.index.tolist()] if len(models) > 1 else models.index.tolist()
    most_runs = str(models.index[0])
    wanted = str(st.query_params.get("model", most_runs))
    if wanted not in model_options:
        st.warning(f"No runs of model '{wanted[:60]}' in the cache; showing {most_runs}.")
        wanted = most_runs
    c1, c2, c3 = st.columns([2.2, 2.6, 1.6], vertical_alignment="bottom")
    model = c1.selectbox(
        "Model",
        model_options,
        index=model_options.index(wanted),
        help="the model with most runs by default: losses of different models are not on one scale",
    )
    text = c2.text_input(
        "Filter questions", value=str(st.query_params.get("q", ""))[:100], placeholder="word in the question or its id"
    )
    smooth = c3.checkbox(
        "Smooth curves (EMA α = 0.01)", value=False, help="the reference's smoothing, per run, before averaging"
    )
    exclude = st.checkbox(
        "Drop cut points after the answer already appears in the text (as the paper does)",
        value=True,
        help="short numeric answers often appear mid-trajectory; the loss there is "
        "trivially low, so the reference drops those points",
    )
    branches = st.checkbox(
        "Include branches (intervals then resample whole questions: a cluster bootstrap)",
        value=False,
        key="dataset_include_branches",
        help="a branch repeats its parent's question and most of its text: counted as an independent run it "
        "would narrow every interval; by default branches are left out",
    )
    for name, value, default in (("model", model, most_runs), ("q", text.strip(), "")):
        if value != default:
            st.query_params[name] = value
        elif name in st.query_params:
            del st.query_params[name]

    view = filter_runs(runs, model, text)
    if view.empty:
        st.warning("No runs match this filter.")
        return
    if model == ALL_MODELS and view["model"].nunique() > 1:
        st.caption("Runs of several models are pooled: their losses are not on one scale.")
    settings = ClaimsSettings(
        ema_alpha=PAPER_EMA_ALPHA if smooth else None,
        exclude_after_answer=bool(exclude),
        include_branches=bool(branches),
    )
    n_branches = int(view["parent"].fillna("").astype(str).str.len().gt(0).sum()) if "parent" in view else 0
    if n_branches and not branches:
        st.caption(f"{n_branches} branch run(s) left out (each repeats its parent's question).")
    report = claims_panels.report_for(store, view, settings)
    for line in report.skipped[:5]:
        st.warning(f"Skipped a damaged run: {line}")
    _summary(report)
    pairs_report = claims_panels.report_for(store, filter_runs(runs, ALL_MODELS, text), settings)
    claims_panels.draw(report, _open, pairs_report=pairs_report, questions=lambda: _questions(report))


def _summary(stats) -> None:
    runs = stats.runs
    graded = runs[runs["group"] != "unknown"]
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Runs", f"{len(runs)}", help=f"{runs['question'].nunique()} distinct questions")
    m2.metric(
        "Accuracy",
        "—" if graded.empty else f"{(graded['group'] == 'correct').mean():.0%}",
        help=f"{len(graded)} runs with a reference answer",
    )
    m3.metric("Median final L̂", f"{runs['final_loss'].median():.3f}", help="nats")
    m4.metric("Median length", f"{runs['n_tokens'].median():.0f} tokens")


def _questions(stats) -> None:
    st.caption("Every run of this view; select a row to open it in Explore.")
    runs = stats.runs.sort_values(["final_loss"], ascending=False, ignore_index=True)
    table = runs.assign(correct=runs["group"].map({"correct": "✓", "incorrect": "✗"}).fillna("–"))[
        [
            "label",
            "question",
            "answer",
            "predicted_answer",
            "correct",
            "n_tokens",
            "n_steps",
            "initial_loss",
            "final_loss",
            "n_reflections",
            "key",
        ]
    ]
    event = st.dataframe(
        table,
        hide_index=True,
        key="dataset_questions",
        on_select="rerun",
        selection_mode="single-row",
        column_config={
            "label": st.column_config.TextColumn("id"),
            "question": st.column_config.TextColumn("question", width="large"),
            "predicted_answer": st.column_config.TextColumn("model said"),
            "n_tokens": st.column_config.NumberColumn("tokens"),
            "n_steps": st.column_config.NumberColumn("steps"),
            "initial_loss": st.column_config.NumberColumn("L̂ start (nats)", format="%.3f"),
            "final_loss": st.column_config.NumberColumn("L̂ end (nats)", format="%.3f"),
            "n_reflections": st.column_config.NumberColumn("reflections"),
            "key": st.column_config.TextColumn("key", width="small"),
        },
    )
    rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    if rows and rows[0] < len(table):
        _open(str(table["key"].iloc[rows[0]]))


if __name__ == "__main__":  # executed as a page script by st.navigation
    render()
