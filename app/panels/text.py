"""The reasoning text: current step highlighted, earlier dimmed, optionally coloured per token by ΔL̂."""

from __future__ import annotations

import streamlit as st

from app import data
from app.panels.common import View, heading
from backend.plots import text as text_view

SLOT = "left1"
FUTURE_CHARS = 360
KEY_H = 30  # px: the one line of the token-colour key above the box (with the page's gap)


@st.cache_data(show_spinner=False, max_entries=16)
def _token_html(root: str, key: str, stamp: float) -> list[str]:
    run = data.load_run(data.store_at(root), key)
    return text_view.token_delta_html(run.tokens, run.steps)


def draw(view: View) -> None:
    if not view.present:
        heading("Reasoning", "text")
    colour = view.settings.colour_tokens
    inner = _token_html(view.root, view.key, view.stamp) if colour else None
    if colour:  # the key of the colours, in the box's height (the row keeps its size)
        st.html(text_view.token_delta_legend_html(view.run.tokens))
    st.html(
        text_view.trajectory_html(
            view.run.steps,
            view.run.reflections,
            view.cursor,
            future_chars=FUTURE_CHARS,
            height_px=max(60, view.layout.text_h - (KEY_H if colour else 0)),
            font_rem=0.95 * view.scale,
            every_step=not view.redraw,
            step_inner_html=inner,
        )
    )


def marks(view: View) -> dict:
    """Characters of each step [S]: the browser re-classes the step spans and hides far-future ones."""
    return {"text": {"chars": [len(t) for t in view.run.steps["text"].astype(str)], "future_chars": FUTURE_CHARS}}
