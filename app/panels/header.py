"""The run's header: question, answer, prediction, model, sizes, where the trace came from."""

from __future__ import annotations

import streamlit as st

from app import ui
from app.panels.common import esc


def source_label(trajectory_source: str, gen: dict) -> str:
    """Where the trajectory came from: an imported trace, or generated greedy / sampled (T, top-p, seed)."""
    if trajectory_source == "imported":
        return "imported trace"
    temperature = float(gen.get("temperature", 0.0) or 0.0)
    if trajectory_source != "generated" and not gen:
        return "trace of unknown origin"
    if temperature <= 0:
        return "generated, greedy"
    top_p = gen.get("top_p")
    parts = [f"T = {temperature:g}"] + ([f"top-p {float(top_p):g}"] if top_p not in (None, 1, 1.0) else [])
    return f"generated, sampled ({', '.join(parts)}, seed {gen.get('seed', '?')})"


def md_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\`*_{}[]()#+-.!|<>$~" else c for c in text)


def question_html(question: str, present: bool) -> str:
    """The question, whole and wrapping: in presentation mode all of it, elsewhere at most
    ``state.QUESTION_LINES`` lines (CSS ``line-clamp``) with all of it on hover."""
    q = question.strip()
    cls = "raml-title present" if present else "raml-title"
    return f'<div class="{cls}" id="raml-question" title="{esc(q)}">{esc(q)}</div>'


def draw(run, present: bool) -> None:
    st.html(question_html(run.question, present))
    predicted = run.predicted_answer
    source = "reference" if run.answer_source == "reference" else "model's own (no reference given)"
    summary = run.summary
    st.html(
        f'<div class="raml-meta">answer <b>{esc(run.answer)}</b> ({source}) · predicted '
        f"<b>{esc(predicted) if predicted else '—'}</b> {ui.correctness_badge(run.correct)} · "
        f"{esc(run.model_name)} · {esc(source_label(run.trajectory_source, run.generation))}"
        f"{' after an empty thinking part' if run.empty_thinking else ''} · "
        f"{summary.n_tokens} tokens · {summary.n_steps} steps ({esc(run.segmentation)}) · "
        f"L̂ {summary.initial_loss:.2f} → {summary.final_loss:.2f} nats</div>"
    )
    if not present:
        warnings = run.warnings
        if warnings:
            st.caption(" · ".join(f"⚠ {w}" for w in warnings))
