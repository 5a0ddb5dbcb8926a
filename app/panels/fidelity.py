"""Fidelity of the parameter-space pictures: the fraction of the descent each proxy reproduces
(single-layer proxy, exact update on its top-k layers, full exact update). Drawn only for runs
whose exact update was computed (``raml exact KEY``; docs/exact_update.md)."""

from __future__ import annotations

import streamlit as st

from app import data
from app.panels.common import View
from app.panels.loss import chart_config
from backend.analysis.exact import data as exact_data
from backend.plots import exact as figures_exact

SLOT = "right1"  # under the loss chart: the descent it measures
CHART = "explore_fidelity_chart"


@st.cache_data(show_spinner=False, max_entries=32)
def _fidelity(root: str, key: str, mtime: float) -> dict | None:
    store = data.store_at(root)
    meta = exact_data.load_meta(data.load_run(store, key), store)
    return (meta or {}).get("fidelity")


def fidelity_of(view: View) -> dict | None:
    """The run's fidelity block, or None when it has no exact update."""
    path = exact_data.cache_path(view.run, view.store)
    if path is None or not path.is_file():
        return None
    return _fidelity(view.root, view.key, path.stat().st_mtime)


def draw(view: View) -> None:
    fidelity = fidelity_of(view)
    if not fidelity:
        return
    with st.container(horizontal=True, vertical_alignment="center", gap="small", key="explore_fidelity"):
        st.caption("Exact update · " + figures_exact.fidelity_line(fidelity))
        with st.popover("Fidelity", type="tertiary", key="explore_fidelity_more"):
            fig = figures_exact.fidelity_figure(fidelity, scale=view.scale)
            st.plotly_chart(fig, key=CHART, config=chart_config("fidelity"))


def marks(view: View) -> dict:
    return {}  # no cursor: fidelity is measured at the last boundary
