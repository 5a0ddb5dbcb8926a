"""The step card: ΔL̂ over the step, step size and cosine in the path space, top answer tokens now.
The card's HTML is ``backend.plots.step_card`` (shared with the exported run pages)."""

from __future__ import annotations

import streamlit as st

from app.panels import path
from app.panels.common import View
from backend.plots.step_card import WHITESPACE, card_html, visible_token

SLOT = "left1"
__all__ = ["SLOT", "WHITESPACE", "card_html", "draw", "marks", "visible_token"]


def draw(view: View) -> None:
    st.html(card_html(view.run, view.cursor, path.geometry(view)))


def marks(view: View) -> dict:
    """The card's HTML at every boundary, [B] (replaces ``#raml-step-card`` in the browser)."""
    geometry = path.geometry(view)
    return {"html": {"raml-step-card": [card_html(view.run, b, geometry) for b in range(view.n_steps + 1)]}}
