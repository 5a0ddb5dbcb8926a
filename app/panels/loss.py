"""The loss descent: L̂ of the answer at every cut point, its EMA, p(answer) below."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app import data
from app.panels.common import View, heading
from backend.plots import figures, revision

SLOT = "right1"
CHART = "explore_loss_chart"


# Shared, never mutated figure objects (cache_resource: no copy), so a chart's spec is identical
# on every rerun and the browser never re-mounts it; the fallback path copies before drawing.
@st.cache_resource(show_spinner=False, max_entries=32)
def _figure(root: str, key: str, stamp: float, alpha: float, scale: float, height: int):
    run = data.load_run(data.store_at(root), key)
    fig = figures.loss_descent_figure(run.tokens, run.steps, cursor=None, alpha=alpha, scale=scale, height=height)
    return revision.stamp(fig)


def cursor_x(view: View) -> list[float]:
    """Progress (x of the loss chart) of every boundary, [B]."""
    n_tokens = max(int(view.run.n_tokens), 1)
    return [float(c) / n_tokens for c in figures.boundary_cuts(view.run.steps)]


def draw(view: View) -> None:
    heading("Loss descent: L̂ of the answer at every cut point", "loss")
    fig = _figure(view.root, view.key, view.stamp, float(view.settings.alpha), view.scale, view.layout.chart_h)
    if view.redraw:
        fig = go.Figure(fig)
        revision.stamp(figures.set_loss_cursor(fig, cursor_x(view)[view.cursor]))
    st.plotly_chart(fig, key=CHART, config=chart_config("loss"))


def marks(view: View) -> dict:
    return {"charts": [{"chart": CHART, "kind": "vline", "x": cursor_x(view)}]}


def chart_config(name: str) -> dict:
    cfg = dict(figures.PLOTLY_CONFIG)
    cfg["toImageButtonOptions"] = dict(cfg["toImageButtonOptions"], filename=f"raml-{name}")
    return cfg
