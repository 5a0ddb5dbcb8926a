"""Dataset: what holds across many questions. Mean loss over normalized progress (correct vs
incorrect), final loss vs trajectory length and vs correctness, the reflection-word effect
table, and every question in a table; a click on a point or a row opens the run in Explore.

All numbers come from ``backend.analysis.dataset_stats`` (cached on disk per set of runs, and in memory
here), so the page stays quick on hundreds of runs. State in the URL: ``?model=&q=``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import data, ui
from backend.analysis import dataset_stats
from backend.plots import dataset as figures_dataset
from backend.plots.figures import PLOTLY_CONFIG
from backend.store.runs import RunStore

EXPLORE_PAGE = "views/explore.py"
BIN_OPTIONS = (20, 50, 100)
ALL_MODELS = "all models"


@st.cache_data(show_spinner="Aggregating runs…", max_entries=16)
def _stats(root: str, run_ids: tuple[tuple[str, float], ...], bins: int, exclude_after_answer: bool):
    """``run_ids``: (key, created) pairs, so a recomputed run refreshes the aggregate."""
    return dataset_stats.dataset_stats(
        RunStore(root), [k for k, _ in run_ids], bins=bins, exclude_after_answer=exclude_after_answer
    )


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


def _clicked_key(event) -> str | None:
    """Run key of the point clicked on a chart (``customdata[0]``), else None."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return None
    for point in points or []:
        custom = point.get("customdata") if isinstance(point, dict) else None
        if isinstance(custom, (list, tuple)) and custom:
            return str(custom[0])
    return None


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
    c1, c2, c3, c4 = st.columns([2.2, 2.6, 1.1, 1.6], vertical_alignment="bottom")
    model = c1.selectbox(
        "Model",
        model_options,
        index=model_options.index(wanted),
        help="the model with most runs by default: losses of different models are not on one scale",
    )
    text = c2.text_input(
        "Filter questions", value=str(st.query_params.get("q", ""))[:100], placeholder="word in the question or its id"
    )
    bins = c3.selectbox("Bins", BIN_OPTIONS, index=BIN_OPTIONS.index(dataset_stats.DEFAULT_BINS))
    band = c4.selectbox("Band", list(figures_dataset.BANDS), format_func=figures_dataset.BANDS.get)
    exclude = st.checkbox(
        "Drop cut points after the answer already appears in the text (as the paper does)",
        value=True,
        help="short numeric answers often appear mid-trajectory; the loss there is "
        "trivially low, so the reference drops those points",
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
    run_ids = tuple((str(k), float(c) if pd.notna(c) else 0.0) for k, c in zip(view["key"], view["created"]))
    stats = _stats(str(store.root), run_ids, int(bins), bool(exclude))
    for line in stats.skipped[:5]:
        st.warning(f"Skipped a damaged run: {line}")
    _summary(stats)

    st.plotly_chart(
        figures_dataset.mean_loss_curve_figure(stats.curve, band=band), config=PLOTLY_CONFIG, key="dataset_curve"
    )
    st.caption(
        f"x = cut point / trajectory length, in {bins} bins; each run counts once per bin (the mean L̂ of "
        "its cut points there). Click a point below to open that run in Explore."
    )
    left, right = st.columns(2)
    with left:
        event = st.plotly_chart(
            figures_dataset.final_loss_vs_length_figure(stats.runs),
            config=PLOTLY_CONFIG,
            on_select="rerun",
            selection_mode="points",
            key="dataset_scatter",
        )
        _open(_clicked_key(event))
    with right:
        event = st.plotly_chart(
            figures_dataset.final_loss_by_correctness_figure(stats.runs),
            config=PLOTLY_CONFIG,
            on_select="rerun",
            selection_mode="points",
            key="dataset_box",
        )
        _open(_clicked_key(event))

    _reflections(stats)
    _questions(stats)


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


def _reflections(stats) -> None:
    st.subheader("Reflection words")
    base = stats.baseline
    table = stats.reflections
    if table.empty:
        st.info("No reflection words (wait, however, alternatively, …) were found in these trajectories.")
        return
    st.caption(
        f"Relative loss change across each word, |L̂(after) − L̂(before)| / L̂(before), against the same change "
        f"per ordinary token (baseline {base['mean_rel_change']:.4f} over {base['count']} tokens). "
        "Ratio > 1: the word moves the answer loss more than an ordinary token does."
    )
    left, right = st.columns([1.25, 1])
    left.dataframe(
        table,
        hide_index=True,
        key="dataset_reflections",
        column_config={
            "word": st.column_config.TextColumn("word"),
            "count": st.column_config.NumberColumn("times"),
            "n_runs": st.column_config.NumberColumn("runs"),
            "mean_rel_change": st.column_config.NumberColumn("mean", format="%.4f", help="mean |ΔL̂| / L̂(before)"),
            "median_rel_change": st.column_config.NumberColumn("median", format="%.4f"),
            "ratio": st.column_config.NumberColumn("× token", format="%.2f", help="mean over the per-token baseline"),
        },
    )
    with right:
        st.plotly_chart(
            figures_dataset.reflection_effect_figure(table, base), config=PLOTLY_CONFIG, key="dataset_reflection_chart"
        )


def _questions(stats) -> None:
    st.subheader("Questions")
    st.caption("Select a row to open that run in Explore.")
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
