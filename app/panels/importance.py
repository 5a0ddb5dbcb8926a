"""Explore panel: step importance strip aligned with the steps, the most important steps
(click a row to jump there), and a button that computes importance (with a progress bar)."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from app import data
from backend.analysis.importance.run import compute_run_importance, load_importance
from backend.pipeline.branches import counterfactual
from backend.plots import importance as plots

TABLE = "importance_table"
LAST_PICK = "importance_last_pick"  # the table row already jumped to


def _loaded(run):
    from backend.engine.models import load_model

    name = run.model_name
    return data.model_override(name) or load_model(name)


def render(store, run, cursor: int, go_to: Callable[[int], None]) -> None:
    """``cursor`` is Explore's boundary (0..S); step k ends at boundary k + 1."""
    st.subheader("Step importance")
    payload = load_importance(run, store)
    texts = run.steps["text"].tolist()
    cols = st.columns([3, 2, 7], vertical_alignment="center")
    with_attention = cols[1].checkbox("with attention", value=True, key="importance_attention")
    label = "Recompute importance" if payload else "Compute importance"
    if cols[0].button(label, key="importance_compute", help="Ablate every step (teacher-forced) and score L̂"):
        bar = st.progress(0.0, text="Ablating steps…")

        def report(stage: str, done: int, total: int) -> None:
            frac = done / total if total else 1.0
            bar.progress(min(frac, 1.0) * (0.8 if stage == "ablate" else 1.0), text=f"{stage} {done}/{total}…")

        payload = compute_run_importance(run, _loaded(run), store=store, attention=with_attention, progress=report)
        bar.progress(1.0, text="Done")
    rows = plots.strip_rows(len(texts), payload, counterfactual(store, run.key))
    if not rows:
        cols[2].caption("Not computed yet: ablation removes one step at a time and measures L̂ at the end.")
        return
    if payload:
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
