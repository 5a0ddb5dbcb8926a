"""Explore panel: a run's branches (tree, answers, loss curves overlaid on the parent's) and
"branch here" on the current step, with the cost told first and a progress bar."""

from __future__ import annotations

import streamlit as st

from app import data, ui
from backend.engine.trajectory import GenerationSettings
from backend.pipeline import branches as branching
from backend.plots import importance as plots


def _open(key: str) -> None:
    ui.set_query_params(run=key, step=None, layer=None)


def render(store, run, cursor: int) -> None:
    st.subheader("Branches")
    parent = run.parent
    if parent:
        st.button(
            f"Branched from {parent[:12]}… at step {run.branch_at}: open the parent",
            key="branch_open_parent",
            on_click=_open,
            args=(parent,),
        )
    nodes = branching.tree(store, run.key)
    if nodes:
        curves = []
        for node in nodes:
            if node["depth"] == 1:
                label = f"{node['kind']} @ step {node['branch_at']} ({node['key'][:6]})"
                curves.append((label, data.load_run(store, node["key"]).tokens))
        step_starts = run.steps["start"].tolist()
        first = min((n["branch_at"] for n in nodes if n["depth"] == 1), default=None)
        cut = step_starts[first] if first is not None and first < len(step_starts) else None
        st.plotly_chart(plots.branch_overlay(run.tokens, curves, cut), key="branch_overlay", width="stretch")
        for node in nodes:
            pad = "  " * (node["depth"] - 1)
            loss = "—" if node["final_loss"] is None else f"{node['final_loss']:.3f}"
            c1, c2 = st.columns([9, 2], vertical_alignment="center")
            c1.markdown(
                f"{pad}`{node['key'][:10]}` {node['kind']} at step {node['branch_at']}: answer "
                f"**{node['predicted_answer'] or '—'}** (correct: {node['correct']}), final L̂ {loss}"
            )
            c2.button("open", key=f"branch_open_{node['key']}", on_click=_open, args=(node["key"],))
    else:
        st.caption("No branches yet.")
    _branch_here(store, run, max(cursor - 1, 0))


def _branch_here(store, run, step: int) -> None:
    # a toggle, not an expander: its state lives in the session, so reruns (the stepper's URL
    # sync, each input's change) never fold the form away under the user's cursor
    if not st.toggle(f"Branch here (step {step})", key="branch_here_open"):
        return
    with st.container(border=True):
        mode = st.radio("How", ["resample", "edit"], horizontal=True, key="branch_mode")
        c1, c2, c3 = st.columns(3)
        samples = 1
        text, regenerate = "", False
        if mode == "resample":
            samples = int(c1.number_input("samples", 1, branching.MAX_SAMPLES, 2, key="branch_samples"))
            temperature = float(c2.number_input("temperature", 0.05, 2.0, 0.7, 0.05, key="branch_temperature"))
        else:
            text = st.text_area("Replacement for this step", run.steps["text"].iloc[step], key="branch_text")
            regenerate = st.checkbox("regenerate the rest (else keep it, teacher-forced)", key="branch_regen")
            temperature = 0.0
        max_new = int(c3.number_input("max new tokens", 1, branching.MAX_NEW_TOKENS, 64, key="branch_max_new"))
        cost = branching.estimate(run, step, samples, max_new, regenerate=(mode == "resample" or regenerate))
        st.caption(
            f"Cost: {cost['samples']} run(s), {cost['generated_tokens']} tokens to generate, "
            f"{cost['analysed_tokens']} to analyse, about {cost['seconds']:.0f} s."
        )
        if st.button(f"Branch at step {step}", key="branch_start", type="primary"):
            bar = st.progress(0.0, text="Starting…")

            def report(stage: str, done: int, total: int) -> None:
                bar.progress(min(done / total if total else 1.0, 1.0), text=f"branch {done}/{total}…")

            loaded = data.model_override(run.model_name)
            settings = GenerationSettings(max_new_tokens=max_new, temperature=temperature, top_p=0.95)
            if mode == "resample":
                branching.resample(store, run.key, step, samples, settings=settings, loaded=loaded, progress=report)
            else:
                branching.edit(
                    store, run.key, step, text, regenerate=regenerate, settings=settings, loaded=loaded, progress=report
                )
            bar.progress(1.0, text="Done")
            st.rerun()
