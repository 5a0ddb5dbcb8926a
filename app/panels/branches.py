"""Explore panel: a run's branches (tree, answers, loss curves overlaid on the parent's) and
"branch here" on the current step, with the cost told first. "Branch" submits a ``branch`` job:
the server's worker generates and analyses the branches; this panel follows the job and the
tree shows the new runs when it is done.

"Here" is the step on screen (issue 25): the stepper rewrites the panel's step line and button
label at every boundary in the browser (``marks``), sends the server its step before any click,
and reruns the page while the form is open so its edit box holds the step's own text. At the
start (boundary 0) there is no step on screen; "branch here" acts on step 1. Branches that hit
the generation cap are flagged here and left out of counterfactual importance."""

from __future__ import annotations

import streamlit as st

from app import data, jobs_view, ui
from backend.pipeline.branch_defaults import DEFAULTS
from backend.plots import fill
from backend.plots import importance as plots

KIND = "branch"
OPEN = "branch_here_open"
AT_ID = "raml-branch-at"
START_LABEL = ".st-key-branch_start button p"


def step_here(boundary: int) -> int:
    """The step "branch here" acts on at boundary b: step b (the one on screen), step 1 at the start."""
    return max(int(boundary), 1)


AT_PARTS = (f'<div id="{AT_ID}" class="raml-branch-at" data-step="', '">Branch here acts on ', ".</div>")


def _at_values(boundary: int, n_steps: int) -> tuple[str, str]:
    """The "acts on step s" line's values at boundary b: the step, and where it is."""
    where = (
        "the first step (the cursor is at the start)" if boundary == 0 else f"step {boundary} / {n_steps}, on screen"
    )
    return str(step_here(boundary)), where


def _at_fill(n_steps: int) -> dict:
    """The line at every boundary 0..S, a fill mark (``backend.plots.fill``)."""
    steps, wheres = zip(*(_at_values(b, n_steps) for b in range(n_steps + 1)))
    return fill.fill_mark(AT_PARTS, [list(steps), list(wheres)])


def _at_html(boundary: int, n_steps: int) -> str:
    return fill.join(AT_PARTS, _at_values(boundary, n_steps))


def marks(view) -> dict:
    """The step line and the start button's label at every boundary (the browser rewrites them)."""
    bs = range(view.n_steps + 1)
    return {
        "fill": {AT_ID: _at_fill(view.n_steps)},
        "texts": {START_LABEL: [f"Branch at step {step_here(b)}" for b in bs]},
    }


def needs_cursor() -> bool:
    """Whether the panel shows something of the current step that only a page rerun can redraw."""
    return bool(st.session_state.get(OPEN)) and not ui.read_only()


def _branching():
    from backend.pipeline import branches

    return branches


def _open(key: str) -> None:
    ui.set_query_params(run=key, step=None, layer=None)


def render(view) -> None:
    store, run, cursor = view.store, view.run, view.cursor
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
                label = node["label"] or f"{node['kind']} @ step {node['branch_at']} ({node['key'][:6]})"
                label += " · cut at the cap" if node["truncated"] else ""
                curves.append((label, data.load_run(store, node["key"]).tokens))
        step_starts = run.steps["start"].tolist()
        first = min((n["branch_at"] for n in nodes if n["depth"] == 1), default=None)
        cut = step_starts[first - 1] if first is not None and 1 <= first <= len(step_starts) else None
        st.plotly_chart(plots.branch_overlay(run.tokens, curves, cut), key="branch_overlay", width="stretch")
        for node in nodes:
            pad = "  " * (node["depth"] - 1)
            loss = "—" if node["final_loss"] is None else f"{node['final_loss']:.3f}"
            c1, c2 = st.columns([9, 2], vertical_alignment="center")
            flag = f" ✂ {node['truncated_reason']}: not in resampling importance" if node["truncated"] else ""
            c1.markdown(
                f"{pad}`{node['key'][:10]}` {node['kind']} at step {node['branch_at']}: answer "
                f"**{node['predicted_answer'] or '—'}** (correct: {node['correct']}), final L̂ {loss}{flag}"
            )
            c2.button("open", key=f"branch_open_{node['key']}", on_click=_open, args=(node["key"],))
    else:
        st.caption("No branches yet.")
    if ui.read_only():  # no branch or edit control on a read-only server (the queue refuses one anyway)
        return
    st.html(_at_html(cursor, view.n_steps))
    _branch_here(store, run, step_here(cursor))


def _branch_here(store, run, step: int) -> None:
    # a toggle, not an expander: its state lives in the session, so reruns (the stepper's URL
    # sync, each input's change) never fold the form away under the user's cursor
    job = jobs_view.active_job(KIND, run.key)
    if job is not None:
        jobs_view.follow(job, f"Branch at step {job.params.get('step')}", key="branch_progress")
    if not st.toggle("Branch here", key=OPEN, help="acts on the step on screen (the line above says which)"):
        return
    branching = _branching()
    with st.container(border=True):
        mode = st.radio("How", ["resample", "edit"], horizontal=True, key="branch_mode")
        c1, c2, c3 = st.columns(3)
        samples = 1
        text, regenerate = None, False
        if mode == "resample":
            samples = int(c1.number_input("samples", 1, branching.MAX_SAMPLES, DEFAULTS.samples, key="branch_samples"))
            temperature = float(
                c2.number_input("temperature", 0.05, 2.0, DEFAULTS.temperature, 0.05, key="branch_temperature")
            )
        else:
            text = st.text_area(
                f"Replacement for step {step}", run.steps["text"].iloc[step - 1], key=f"branch_text_{step}"
            )
            regenerate = st.checkbox("regenerate the rest (else keep it, teacher-forced)", key="branch_regen")
            temperature = 0.0
        max_new = int(
            c3.number_input(
                "cap: max new tokens",
                1,
                branching.MAX_NEW_TOKENS,
                DEFAULTS.max_new_tokens,
                key="branch_max_new",
                help="a resample stops earlier when the model ends its answer (end token or a closed \\boxed{}); "
                "one that reaches the cap is flagged and left out of resampling importance",
            )
        )
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
                "top_p": DEFAULTS.top_p,
                "max_new_tokens": max_new,
                "text": text,
                "regenerate": bool(regenerate),
            }
            if jobs_view.submit(KIND, params) is not None:
                st.rerun()
