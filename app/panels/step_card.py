"""The step card: ΔL̂ over the step, step size and cosine in the path space, top answer tokens now.
The card's HTML is ``backend.plots.step_card`` (shared with the exported run pages); every
boundary's card is built once per run and view settings (a 1,500-step run has 1,501 cards) and sent
as one template with its values per boundary."""

from __future__ import annotations

import streamlit as st

from app import data
from app.panels import path
from app.panels.common import View
from backend.plots.step_card import WHITESPACE, card_fill, card_html, visible_token

SLOT = "left1"
__all__ = ["SLOT", "WHITESPACE", "card_html", "draw", "marks", "visible_token"]


def draw(view: View) -> None:
    st.html(card_html(view.run, view.cursor, path.geometry(view)))


@st.cache_data(show_spinner=False, max_entries=16)
def _cards(root: str, key: str, stamp: float, layer, space: str, method: str, dstamp: str) -> dict:
    """The card of every boundary of one run in one space: a fill mark (``backend.plots.fill``)."""
    store = data.store_at(root)
    run = data.load_run(store, key)
    geometry = None
    if layer is not None and data.proxy_available():
        try:
            geometry = data.projection(store, key, int(layer), space, method)["geometry"]
        except ValueError:
            geometry = None
    return card_fill(run, geometry)


def marks(view: View) -> dict:
    """The card at every boundary as a fill mark (replaces ``#raml-step-card`` in the browser)."""
    dstamp = data.derived_stamp(view.store, view.key) if view.space == "exact" else ""
    cards = _cards(view.root, view.key, view.stamp, view.layer, view.space, view.settings.method, dstamp)
    return {"fill": {"raml-step-card": cards}}
