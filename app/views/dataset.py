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
    paired_view = view  # thinking vs no thinking compares the pairs of this view, whatever the condition shown
    condition = _condition_choice(view)
    view = of_condition(view, condition)
    if view.empty:
        st.warning("No runs of this condition match this filter.")
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
    pairs_report = claims_panels.report_for(
        store, of_condition(filter_runs(runs, ALL_MODELS, text), condition), settings
    )
    samples_of = st.query_params.get("samples") or None  # the Samples tab opens on this question
    claims_panels.draw(
        report, _open, pairs_report=pairs_report, questions=lambda: _questions(report), samples_of=samples_of
    )
    _thinking_pairs(runs, paired_view)
    _importance_agreement(store, view)


CONDITION_LABELS = {"thinking": "thinking", "no-thinking": "no thinking", "both": "both (pooled)"}


def of_condition(runs: pd.DataFrame, condition: str) -> pd.DataFrame:
    """The index rows of one thinking condition (``both``: all of them)."""
    from backend.analysis.dataset.thinking_pairs import condition_of

    return runs if condition == "both" else runs[condition_of(runs) == condition]


def _condition_choice(view: pd.DataFrame) -> str:
    """With no-thinking runs in the view, which condition the claims describe (thinking by default:
    the two regimes pooled would blur every curve); ``both`` when the view has one condition only."""
    from backend.analysis.dataset.thinking_pairs import condition_of

    if not (condition_of(view) == "no-thinking").any():
        return "both"
    return st.radio(
        "Condition",
        list(CONDITION_LABELS),
        format_func=CONDITION_LABELS.get,
        horizontal=True,
        key="dataset_condition",
        help="runs made with --no-thinking (the thinking part empty) or without; the section "
        "'Thinking vs no thinking' below compares the linked pairs",
    )


def thinking_summary_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The paired statistics as the page shows them: one row per statistic, intervals as text."""

    def cell(row, part: str) -> str:
        value, low, high = row[part], row[f"{part}_low"], row[f"{part}_high"]
        if pd.isna(value):
            return "—"
        sign = "+" if part == "difference" else ""
        text = f"{value:{sign}.3f}"
        return text + (f" [{low:{sign}.3f}, {high:{sign}.3f}]" if pd.notna(low) else "")

    names = {"final_loss": "final L̂ (nats)", "correct": "correct (share)"}
    return pd.DataFrame(
        [
            {
                "statistic": names.get(row["statistic"], row["statistic"]),
                "thinking": cell(row, "thinking"),
                "no thinking": cell(row, "no_thinking"),
                "difference (no thinking − thinking)": cell(row, "difference"),
                "n questions": int(row["n_questions"]),
            }
            for _, row in summary.iterrows()
        ]
    )


def _thinking_pairs(runs: pd.DataFrame, view: pd.DataFrame) -> None:
    """Thinking vs no thinking over the linked pairs of this view: paired differences per question."""
    from backend.analysis.dataset.intervals import MIN_INTERVAL_N
    from backend.analysis.dataset.thinking_pairs import thinking_comparison

    comparison = thinking_comparison(runs, view["key"].tolist())
    if comparison.pairs.empty:
        return
    st.subheader("Thinking vs no thinking")
    n_questions = len(comparison.per_question)
    st.caption(
        f"{len(comparison.pairs)} linked pair(s) of runs (`raml run --no-thinking` and the same run without it) on "
        f"{n_questions} question(s). Per question the difference no thinking − thinking (mean over its pairs); "
        "95% interval from resampling questions"
        + (f"; no interval from fewer than {MIN_INTERVAL_N} questions." if n_questions < MIN_INTERVAL_N else ".")
    )
    st.dataframe(thinking_summary_frame(comparison.summary), hide_index=True, key="dataset_thinking_summary")
    table = comparison.per_question.rename(
        columns={
            "final_loss_thinking": "L̂ thinking",
            "final_loss_no_thinking": "L̂ no thinking",
            "final_loss_difference": "ΔL̂",
            "correct_thinking": "correct thinking",
            "correct_no_thinking": "correct no thinking",
            "correct_difference": "Δ correct",
            "n_pairs": "pairs",
        }
    )
    st.dataframe(
        table,
        hide_index=True,
        key="dataset_thinking_questions",
        column_config={
            "question": st.column_config.TextColumn("question", width="large"),
            **{c: st.column_config.NumberColumn(format="%.3f") for c in ("L̂ thinking", "L̂ no thinking")},
            "ΔL̂": st.column_config.NumberColumn(format="%+.3f"),
            "Δ correct": st.column_config.NumberColumn(format="%+.2f"),
        },
    )


def _importance_agreement(store, view: pd.DataFrame) -> None:
    """Do the importance methods agree across this view? Pooled over its runs and per question."""
    from app.panels.importance import agreement_frame
    from backend.pipeline.agreement import dataset_agreement

    st.subheader("Do the importance methods agree?")
    if not st.toggle("Rank correlations of ablation, attention and resampling", key="dataset_agreement"):
        st.caption("Reads every run's stored importance and branches (runs without two measures are left out).")
        return
    report = dataset_agreement(store, view["key"].tolist())
    if not report["pooled"]:
        st.info("No run of this view has two importance measures yet (Explore: Compute importance, Branches).")
        return
    st.caption(
        f"{report['runs']} runs. Pooled: each run's values as within-run ranks, 95% interval from resampling runs "
        "(cluster bootstrap); per question: the same over that question's runs (one run: over its steps)."
    )
    st.dataframe(agreement_frame(report["pooled"]), hide_index=True, key="dataset_agreement_pooled", width="stretch")
    per_question = agreement_frame(report["per_question"])
    per_question.insert(0, "question", [r["question"][:80] for r in report["per_question"]])
    st.dataframe(per_question, hide_index=True, key="dataset_agreement_questions", width="stretch")


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
        question = str(table["question"].iloc[rows[0]])
        n = int((runs["question"] == question).sum())
        if n > 1:  # several samples: open them together, or this one run
            c1, c2, _ = st.columns([2, 2, 4])
            if c1.button(f"Open the {n} samples of this question", key="dataset_open_samples", type="primary"):
                st.query_params["samples"] = question
                st.rerun()
            if c2.button("Open this run in Explore", key="dataset_open_run"):
                _open(str(table["key"].iloc[rows[0]]))
            return
        _open(str(table["key"].iloc[rows[0]]))


if __name__ == "__main__":  # executed as a page script by st.navigation
    render()
