"""The Dataset page's claim views, one tab each: which claim of RaML it tests, the figure with
its intervals, and the table behind it (downloadable). All numbers come from
``backend.analysis.dataset.claims`` (cached on disk per set of runs and settings); no math here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from backend.analysis.dataset import model_pairs
from backend.analysis.dataset.claims import ClaimsReport, ClaimsSettings, dataset_claims
from backend.analysis.dataset.intervals import MIN_INTERVAL_N
from backend.analysis.dataset.progress_curves import MIN_CURVE_RUNS
from backend.analysis.dataset.task_map import SPACES
from backend.analysis.spaces import samples
from backend.plots import claims as figures
from backend.plots.figures import PLOTLY_CONFIG
from backend.store.runs import RunStore

TABS = ("Descent", "Reflection", "Length", "Two models", "Samples", "Task map", "Inner loop", "Questions")
CLAIMS = {
    "Descent": "Claim: the trajectory lowers the answer's loss like an inner loop of gradient descent. "
    "Mean L̂ over progress x = c/n on a common grid, by correctness; bands are bootstrap 95% intervals over runs "
    f"(none from fewer than {MIN_INTERVAL_N}); a curve stops where fewer than {MIN_CURVE_RUNS} of its runs remain "
    "(hover: n at each x). The table's L̂ follow the same cut points as the curves.",
    "Reflection": "Claim: reflection words (wait, however, alternatively, …) mark larger moves. Each occurrence's "
    "relative change |L̂(after) − L̂(before)| / L̂(before) against windows of the same length at similar progress "
    "in the same run that contain no reflection word.",
    "Length": "Claim: longer thinking means more inner steps, so more descent. Spearman correlations over runs with "
    "bootstrap intervals.",
    "Two models": "Claim: training shapes the inner loop (e.g. SFT on others' traces vs RL on one's own). Two models "
    "on the same questions: mean curves, paired differences per question, and accuracy. Loss-level only, so the "
    "models may differ in size.",
    "Samples": "Several samples of one question: the spread of their curves, best-of-N, and the mean implicit update "
    "(the average of the samples' proxy paths, as Reptile averages inner-loop updates).",
    "Task map": "Claim: each question is a task whose adaptation generalises across tasks. Questions placed by the "
    "direction of their final implicit update; the control map uses the question alone (no trajectory), so the "
    "difference is what the trajectory adds.",
    "Questions": "",
    "Inner loop": "Inner-loop statistics: step size ‖Δu‖ and the cosine of consecutive steps in the single-layer "
    "proxy space over progress, averaged over runs with intervals, by correctness.",
}


@st.cache_data(show_spinner="Computing dataset statistics…", max_entries=8)
def _report(root: str, run_ids: tuple[tuple[str, float], ...], settings: ClaimsSettings) -> ClaimsReport:
    return dataset_claims(RunStore(root), [k for k, _ in run_ids], settings)


def report_for(store: RunStore, view: pd.DataFrame, settings: ClaimsSettings) -> ClaimsReport:
    run_ids = tuple((str(k), float(c) if pd.notna(c) else 0.0) for k, c in zip(view["key"], view["created"]))
    return _report(str(store.root), run_ids, settings)


def _download(frame: pd.DataFrame, name: str) -> None:
    st.download_button(
        f"Download {name} (CSV)",
        frame.to_csv(index=False).encode(),
        file_name=f"raml-{name.replace(' ', '-')}.csv",
        mime="text/csv",
        key=f"claims_dl_{name}",
    )


def clicked_key(event) -> str | None:
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


def draw(report: ClaimsReport, open_run, *, pairs_report: ClaimsReport, questions) -> None:
    """All claim tabs for one report (one model); ``pairs_report`` spans every model for the
    two-model view; ``open_run(key)`` opens a run in Explore; ``questions()`` draws the table."""
    tabs = st.tabs(list(TABS))
    bodies = (_descent, _reflection, _length, _two_models, _samples, _task_map, _inner)
    for name, tab, body in zip(TABS, tabs, bodies):
        with tab:
            st.caption(CLAIMS[name])
            body(pairs_report if body is _two_models else report, open_run)
    with tabs[-1]:
        questions()


def _descent(report: ClaimsReport, open_run) -> None:
    st.plotly_chart(figures.descent_figure(report.descent), config=PLOTLY_CONFIG, key="claims_descent")
    st.dataframe(report.descent_summary, hide_index=True, key="claims_descent_summary")
    _download(report.descent, "descent curves")


def _reflection(report: ClaimsReport, open_run) -> None:
    words = report.reflection_words
    if words.empty or int(words["n"].iloc[0]) == 0:
        st.info("No reflection words with a measurable loss change in these runs.")
        return
    left, right = st.columns([1, 1.2])
    with left:
        st.plotly_chart(figures.reflection_forest_figure(words), config=PLOTLY_CONFIG, key="claims_reflection_forest")
    with right:
        st.plotly_chart(
            figures.event_aligned_figure(report.reflection_events), config=PLOTLY_CONFIG, key="claims_reflection_events"
        )
    st.dataframe(words, hide_index=True, key="claims_reflection_table")
    _download(words, "reflection words")


def _length(report: ClaimsReport, open_run) -> None:
    event = st.plotly_chart(
        figures.length_figure(report.runs),
        config=PLOTLY_CONFIG,
        on_select="rerun",
        selection_mode="points",
        key="claims_length",
    )
    open_run(clicked_key(event))
    st.dataframe(report.length, hide_index=True, key="claims_length_table")
    _download(report.length, "length correlations")


def _two_models(report: ClaimsReport, open_run) -> None:
    models = model_pairs.models_with_shared_questions(report.runs)
    if len(models) < 2:
        st.info("Needs runs of two models on the same questions (e.g. `raml batch FILE --model A` and `--model B`).")
        return
    c1, c2 = st.columns(2)
    model_a = c1.selectbox("Model A", models, index=0, key="claims_model_a")
    model_b = c2.selectbox("Model B", models, index=1, key="claims_model_b")
    if model_a == model_b:
        st.warning("Choose two different models.")
        return
    comparison = model_pairs.compare_models(report.runs, report.curves, report.grid, model_a, model_b)
    st.plotly_chart(
        figures.model_pair_figure(comparison.curves, comparison.per_question, model_a, model_b),
        config=PLOTLY_CONFIG,
        key="claims_pairs",
    )
    st.dataframe(comparison.summary, hide_index=True, key="claims_pairs_summary")
    _download(comparison.per_question, "paired questions")


def _samples(report: ClaimsReport, open_run) -> None:
    runs = report.runs
    counts = runs.groupby(["model", "question"]).size()
    multi = counts[counts >= 2]
    if multi.empty:
        st.info("Needs several samples of one question (e.g. `raml batch FILE --samples 4 --temperature 0.7`).")
        return
    options = [f"{q[:90]} · {m} ({n} samples)" for (m, q), n in multi.items()]
    choice = st.selectbox("Question", range(len(options)), format_func=options.__getitem__, key="claims_sample_q")
    model, question = multi.index[choice]
    rows = np.flatnonzero(((runs["model"] == model) & (runs["question"] == question)).to_numpy())
    spread = samples.spread(
        question,
        runs["key"].iloc[rows].tolist(),
        report.curves[rows],
        runs["final_loss"].to_numpy(float)[rows],
        report.grid,
    )
    best_row = rows[runs["key"].iloc[rows].tolist().index(spread.best_key)]
    st.plotly_chart(
        figures.samples_figure(spread.curves, report.curves[best_row], question),
        config=PLOTLY_CONFIG,
        key="claims_samples",
    )
    m1, m2, m3 = st.columns(3)
    m1.metric("Samples", len(rows))
    m2.metric("Mean final L̂", f"{spread.mean_final_loss:.3f}")
    m3.metric("Best-of-N final L̂", f"{spread.best_final_loss:.3f}")
    if st.button("Open the best sample", key="claims_open_best"):
        open_run(spread.best_key)
    _download(spread.curves, "sample spread")


def _task_map(report: ClaimsReport, open_run) -> None:
    models = report.runs["model"].value_counts().index.tolist()
    if not models:
        return
    c1, c2, c3, c4 = st.columns(4)
    model = c1.selectbox("Model", models, key="claims_map_model")
    space = c2.selectbox("Space", list(SPACES)[:2], format_func=SPACES.get, key="claims_map_space")
    method = c3.selectbox("Method", ["pca", "umap"], key="claims_map_method")
    color_by = c4.selectbox(
        "Colour by", list(figures.COLOR_FIELDS), format_func=figures.COLOR_FIELDS.get, key="claims_map_color"
    )
    n_points = int(((report.runs["model"] == model).to_numpy() & np.isfinite(report.vectors[space]).all(1)).sum())
    if method == "umap" and n_points < 30:
        st.info(f"UMAP needs at least 30 runs to mean anything ({n_points} here); showing PCA.")
        method = "pca"
    if n_points < 2:
        st.info("Needs at least two runs of this model with stored proxy layers.")
        return
    fitted = report.task_map(space, model, method)
    control = report.task_map("question", model, "pca")
    if fitted["warning"]:
        st.warning(fitted["warning"])
    left, right = st.columns(2)
    with left:
        trust = fitted["trustworthiness"]
        title = f"{SPACES[space]}" + (f" · trustworthiness {trust:.2f}" if trust is not None and n_points >= 30 else "")
        event = st.plotly_chart(
            figures.task_map_figure(fitted["points"], color_by, title),
            config=PLOTLY_CONFIG,
            on_select="rerun",
            selection_mode="points",
            key="claims_map",
        )
        open_run(clicked_key(event))
    with right:
        event = st.plotly_chart(
            figures.task_map_figure(control["points"], color_by, SPACES["question"]),
            config=PLOTLY_CONFIG,
            on_select="rerun",
            selection_mode="points",
            key="claims_map_control",
        )
        open_run(clicked_key(event))
    overlap, agreement = fitted["neighbour_overlap_with_control"], fitted["similarity_agreement_with_control"]
    st.caption(
        f"Nearest neighbours shared with the question-only control: {overlap:.0%} · Spearman agreement of the two "
        f"similarity matrices: {agreement:.2f} (1 = the trajectory adds nothing to which questions look alike)."
        if np.isfinite(overlap) and np.isfinite(agreement)
        else "Too few runs to compare with the control."
    )
    neighbours = fitted["neighbours"].merge(
        report.runs[["key", "question"]].rename(columns={"key": "neighbour", "question": "neighbour question"}),
        on="neighbour",
    )
    neighbours = neighbours.merge(report.runs[["key", "question"]], on="key")
    st.markdown("**Which questions move the model the same way?**")
    st.dataframe(
        neighbours[["question", "rank", "neighbour question", "cosine"]], hide_index=True, key="claims_neighbours"
    )
    _download(neighbours, "task neighbours")


def _inner(report: ClaimsReport, open_run) -> None:
    measure = st.radio(
        "Measure",
        list(figures.INNER_LOOP_TITLES),
        format_func=figures.INNER_LOOP_TITLES.get,
        horizontal=True,
        key="claims_inner_measure",
    )
    st.plotly_chart(figures.inner_loop_figure(report.inner_loop, measure), config=PLOTLY_CONFIG, key="claims_inner")
    _download(report.inner_loop, "inner loop")
