"""The reasoning text: current step highlighted, earlier dimmed, optionally coloured per token by ΔL̂.

The box holds a window of steps around the cursor (``backend.plots.text.text_window``), never
every step: the browser's stepper re-renders the window from each step's HTML (``marks``), so a
1,500-step run keeps a bounded number of spans on the page.
"""

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


@st.cache_data(show_spinner=False, max_entries=16)
def _text_marks(root: str, key: str, stamp: float, colour_tokens: bool) -> dict:
    """Per run (and colouring): each step's HTML [S], its characters [S] and the window of every boundary [B]."""
    run = data.load_run(data.store_at(root), key)
    chars = [len(t) for t in run.steps["text"].astype(str)]
    inner = _token_html(root, key, stamp) if colour_tokens else text_view.step_html(run.steps, run.reflections)
    return {
        "chars": chars,
        "future_chars": FUTURE_CHARS,
        "html": inner,
        "window": text_view.text_windows(chars, FUTURE_CHARS),
        "before": text_view.BEFORE_NOTE,
    }


def draw(view: View) -> None:
    if not view.present:
        heading("Reasoning", "text")
    colour = view.settings.colour_tokens
    inner = _text_marks(view.root, view.key, view.stamp, True)["html"] if colour else None
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
    """The window of steps at every boundary and each step's HTML: the browser renders the window."""
    return {"text": _text_marks(view.root, view.key, view.stamp, bool(view.settings.colour_tokens))}
