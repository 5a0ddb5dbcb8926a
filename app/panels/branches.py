"""Explore panel: a run's branches (tree, answers, loss curves overlaid on the parent's) and
"branch here" on the current step, with the cost told first. "Branch" submits a ``branch`` job:
the server's worker generates and analyses the branches; this panel follows the job and the
tree shows the new runs when it is done."""

from __future__ import annotations

import streamlit as st

from app import data, jobs_view, ui
from backend.plots import importance as plots

KIND = "branch"


def _branching():
    from backend.pipeline import branches

    return branches


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
    branching = _branching()
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
    job = jobs_view.active_job(KIND, run.key)
    if job is not None:
        jobs_view.follow(job, f"Branch at step {job.params.get('step')}", key="branch_progress")
    if not st.toggle(f"Branch here (step {step})", key="branch_here_open"):
        return
    branching = _branching()
    with st.container(border=True):
        mode = st.radio("How", ["resample", "edit"], horizontal=True, key="branch_mode")
        c1, c2, c3 = st.columns(3)
        samples = 1
        text, regenerate = None, False
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
        failure = jobs_view.last_failure(KIND, run.key)
        if failure and job is None:
            st.error(failure)
        if st.button(f"Branch at step {step}", key="branch_start", type="primary", disabled=job is not None):
            params = {
                "key": run.key,
                "step": int(step),
                "mode": mode,
                "samples": samples,
                "temperature": temperature,
                "top_p": 0.95,
                "max_new_tokens": max_new,
                "text": text,
                "regenerate": bool(regenerate),
            }
            if jobs_view.submit(KIND, params) is not None:
                st.rerun()
