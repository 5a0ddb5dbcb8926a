"""Explore panel: step importance strip aligned with the steps, the most important steps
(click a row to jump there), and a button that submits an ``importance`` job (the page never
ablates: the server's worker does, and this panel follows the job while it runs)."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from app import jobs_view
from backend.analysis.importance.defaults import ATTENTION as DEFAULT_ATTENTION
from backend.plots import importance as plots

TABLE = "importance_table"
LAST_PICK = "importance_last_pick"  # the table row already jumped to
KIND = "importance"


def _cached(store, run) -> dict | None:
    from backend.analysis.importance.run import load_importance

    return load_importance(run, store)


def _counterfactual(store, key: str):
    from backend.pipeline.branches import counterfactual

    return counterfactual(store, key)


def render(store, run, cursor: int, go_to: Callable[[int], None]) -> None:
    """``cursor`` is Explore's boundary (0..S); step k ends at boundary k + 1."""
    st.subheader("Step importance")
    payload = _cached(store, run)
    texts = run.steps["text"].tolist()
    cols = st.columns([3, 2, 7], vertical_alignment="center")
    job = jobs_view.active_job(KIND, run.key)
    if job is not None:
        with cols[2]:
            jobs_view.follow(job, "Step importance", key="importance_progress")
    else:
        with_attention = cols[1].checkbox("with attention", value=DEFAULT_ATTENTION, key="importance_attention")
        label = "Recompute importance" if payload else "Compute importance"
        if cols[0].button(label, key="importance_compute", help="Ablate every step (teacher-forced) and score L̂"):
            params = {"key": run.key, "attention": bool(with_attention)}
            if jobs_view.submit(KIND, params) is not None:
                st.rerun()
        failure = jobs_view.last_failure(KIND, run.key)
        if failure:
            st.error(failure)
    rows = plots.strip_rows(len(texts), payload, _counterfactual(store, run.key))
    if not rows:
        if job is None:
            cols[2].caption("Not computed yet: ablation removes one step at a time and measures L̂ at the end.")
        return
    if payload and job is None:
        cols[2].caption(
            f"L̂ at the end {payload['final_loss']:.3f} nats; ablation = L̂ without the step − L̂ "
            f"({payload['timings']['ablate_s']:.1f} s)"
        )
    cursor_step = max(cursor - 1, 0)
    st.plotly_chart(plots.importance_strip(rows, texts, cursor_step), key="importance_strip", width="stretch")
    table = plots.top_steps_table(rows, texts)
    event = st.dataframe(
        table,
        key=TABLE,
        on_select="rerun",
        selection_mode="single-row",
        hide_index=True,
        height=min(38 * 8, 38 * (len(table) + 1)),
        width="stretch",
    )
    selected = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    picked = int(table["step"].iloc[selected[0]]) if selected else None
    if picked != st.session_state.get(LAST_PICK):  # act once per new selection, not on every rerun
        st.session_state[LAST_PICK] = picked
        if picked is not None and picked + 1 != cursor:
            go_to(picked + 1)
            st.rerun()
    if payload and payload.get("attention"):
        heads = ", ".join(f"L{h['layer']}H{h['head']}" for h in payload["attention"]["receiver_heads"])
        st.caption(f"Receiver heads (highest kurtosis across steps, as Thought Anchors): {heads}")
