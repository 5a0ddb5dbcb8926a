"""Explore panel: step importance strip aligned with the steps, the most important steps
(click a row to jump there), and a button that submits an ``importance`` job (the page never
ablates: the server's worker does, and this panel follows the job while it runs).

Steps are numbered 1..S as the stepper shows them; the strip's cursor is placed by the browser's
stepper (``marks``: a column mark at x = the step on screen), so it never lags the keyboard. A row
picked in the table moves the cursor in the table's own callback, before any widget of the next
run exists (setting the slider's state later raises StreamlitWidgetAlreadyInstantiatedError)."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from app import data, jobs_view, ui
from backend.analysis.importance.defaults import ATTENTION as DEFAULT_ATTENTION
from backend.plots import binning, revision
from backend.plots import importance as plots

TABLE = "importance_table"
STRIP = "importance_strip"
KIND = "importance"
AGREEMENT_INLINE_STEPS = 200  # longer runs compute the methods' agreement on a click (its bootstrap takes seconds)


def _cached(store, run) -> dict | None:
    from backend.analysis.importance.stored import load_importance

    return load_importance(run, store)


def _counterfactual(store, key: str):
    from backend.pipeline.lineage import counterfactual

    return counterfactual(store, key)


def rows_of(store, run) -> dict:
    """The strip's rows of ``run`` (empty before anything is computed)."""
    return plots.strip_rows(len(run.steps), _cached(store, run), _counterfactual(store, run.key))


def marks(view) -> dict:
    """The strip's cursor at every boundary b: the column of step b (b = 0, the start: none)."""
    if not rows_of(view.store, view.run):
        return {}
    mark = {"chart": STRIP, "kind": "column", "x": list(range(view.n_steps + 1))}
    if binning.bin_width(view.n_steps) > 1:  # a binned strip: the cursor outlines the step's bin
        mark["x0"], mark["x1"] = plots.strip_column_edges(view.n_steps)
    return {"charts": [mark]}


def _on_pick(steps: list[int], go_to: Callable[[int], None]) -> None:
    """The table's selection changed (a callback: runs before the page's widgets are created)."""
    event = st.session_state.get(TABLE)
    selection = event.get("selection", {}) if isinstance(event, dict) else getattr(event, "selection", None)
    rows = (selection.get("rows") if isinstance(selection, dict) else getattr(selection, "rows", None)) or []
    if rows and 0 <= int(rows[0]) < len(steps):
        go_to(int(steps[int(rows[0])]))  # step s is boundary s: the stepper shows "Step s / S"


def render(view, go_to: Callable[[int], None]) -> None:
    """``go_to(b)`` moves Explore's cursor to boundary b (= step b)."""
    store, run = view.store, view.run
    st.subheader("Step importance")
    payload = _cached(store, run)
    texts = run.steps["text"].tolist()
    cols = st.columns([3, 2, 7], vertical_alignment="center")
    job = jobs_view.active_job(KIND, run.key)
    if job is not None:
        with cols[2]:
            jobs_view.follow(job, "Step importance", key="importance_progress")
    elif not ui.read_only():  # a read-only server shows what is cached, no compute control
        with_attention = cols[1].checkbox("with attention", value=DEFAULT_ATTENTION, key="importance_attention")
        label = "Recompute importance" if payload else "Compute importance"
        if cols[0].button(label, key="importance_compute", help="Ablate every step (teacher-forced) and score L̂"):
            params = {"key": run.key, "attention": bool(with_attention)}
            if jobs_view.submit(KIND, params) is not None:
                st.rerun()
        failure = jobs_view.last_failure(KIND, run.key)
        if failure:
            st.error(failure)
    counterfactual = _counterfactual(store, run.key)
    rows = plots.strip_rows(len(texts), payload, counterfactual)
    if not rows:
        if job is None:
            cols[2].caption("Not computed yet: ablation removes one step at a time and measures L̂ at the end.")
        return
    if payload and job is None:
        cols[2].caption(
            f"L̂ at the end {payload['final_loss']:.3f} nats; ablation = L̂ without the step − L̂ "
            f"({payload['timings']['ablate_s']:.1f} s)"
        )
    cursor = view.cursor if view.redraw else None  # else the browser's stepper draws the cursor
    if cursor is None:  # the same figure object on every rerun of this run's data (drawn once per run)
        fig = _strip_figure(*_data_args(store, run))
    else:
        fig = revision.stamp(plots.importance_strip(rows, texts, cursor))
    st.plotly_chart(fig, key=STRIP, width="stretch")
    left_out = [e for row in counterfactual for e in row.get("excluded", [])]
    if left_out:
        reasons = sorted({e["reason"] for e in left_out})
        st.warning(
            f"{len(left_out)} resampled branch(es) left out of resampling importance: " + "; ".join(reasons) + ".",
            icon=":material/content_cut:",
        )
    table = plots.top_steps_table(rows, texts)
    st.dataframe(
        table,
        key=TABLE,
        on_select=lambda: _on_pick(table["step"].tolist(), go_to),
        selection_mode="single-row",
        hide_index=True,
        height=min(38 * 8, 38 * (len(table) + 1)),
        width="stretch",
    )
    if payload and payload.get("attention"):
        heads = ", ".join(f"L{h['layer']}H{h['head']}" for h in payload["attention"]["receiver_heads"])
        st.caption(f"Receiver heads (highest kurtosis across steps, as Thought Anchors): {heads}")
    _agreement(store, run, len(rows))


def _data_args(store, run) -> tuple:
    """What the strip and the agreement table are functions of: the run, its derived data, its branches."""
    from backend.store.derived import derived_stamp

    children = tuple(store.children(run.key)) if store.indexing else ()
    return (str(store.root), run.key, data.run_stamp(store, run.key), derived_stamp(run, store), children)


@st.cache_resource(show_spinner=False, max_entries=16)
def _strip_figure(root: str, key: str, stamp: float, dstamp: str, children: tuple[str, ...]):
    store = data.store_at(root)
    run = data.load_run(store, key)
    return revision.stamp(plots.importance_strip(rows_of(store, run), run.steps["text"].tolist()))


@st.cache_data(show_spinner=False, max_entries=16)
def _agreement_rows(root: str, key: str, stamp: float, dstamp: str, children: tuple[str, ...]) -> list[dict]:
    """The run's agreement table (bootstrap intervals: seconds at 1,500 steps), once per run,
    derived data and set of branches."""
    from backend.pipeline.agreement import run_agreement

    store = data.store_at(root)
    return run_agreement(store, data.load_run(store, key))


@st.cache_resource(show_spinner=False)
def _agreements_shown() -> set:
    """Agreement tables of long runs this server has computed (they are then shown without asking)."""
    return set()


def _agreement(store, run, n_measures: int) -> None:
    """Do the methods agree? Rank correlations of each pair of measures this run has. Their
    bootstrap costs about 8 ms of CPU per step (12 s at 1,500 steps): above
    ``AGREEMENT_INLINE_STEPS`` steps the table waits for a click, so the page opens without it."""
    if n_measures < 2:
        return
    args = _data_args(store, run)
    n_steps = len(run.steps)
    if n_steps > AGREEMENT_INLINE_STEPS and args not in _agreements_shown():
        if not st.button(
            f"Do the methods agree? (bootstrap over {n_steps} steps, about {max(1, round(n_steps * 0.008))} s)",
            key="importance_agreement_compute",
            help="Spearman's ρ and Kendall's τ between the measures, with 95% bootstrap intervals over steps",
        ):
            return
    rows = _agreement_rows(*args)
    _agreements_shown().add(args)
    if not rows:
        return
    st.markdown("**Do the methods agree?** Rank correlation over the steps (95% bootstrap interval over steps)")
    st.dataframe(agreement_frame(rows), hide_index=True, key="importance_agreement", width="stretch")


def agreement_frame(rows: list[dict]):
    """The agreement rows as a table: pair, steps, ρ and τ with their intervals (or why not)."""
    import pandas as pd

    def cell(value, low, high):
        if value is None:
            return "—"
        return f"{value:+.2f}" + (f" [{low:+.2f}, {high:+.2f}]" if low is not None else "")

    return pd.DataFrame(
        [
            {
                "methods": f"{r['a']} · {r['b']}",
                "steps": r["n"],
                **({"runs": r["runs"]} if r.get("runs", 1) > 1 else {}),
                "Spearman ρ": cell(r["spearman"], r["spearman_low"], r["spearman_high"]),
                "Kendall τ": cell(r["kendall"], r["kendall_low"], r["kendall_high"]),
                "note": r.get("note", ""),
            }
            for r in rows
        ]
    )
