"""The logit lens: what each layer predicts for the answer at every boundary."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app import data
from app.panels.common import View, heading
from app.panels.loss import chart_config
from backend.plots import figures

SLOT = "right2"
CHART = "explore_lens_chart"


@st.cache_resource(show_spinner=False, max_entries=32)
def _figure(root: str, key: str, stamp: float, value: str, scale: float, height: int):
    run = data.load_run(data.store_at(root), key)
    return figures.lens_heatmap_figure(run.lens, cursor=None, value=value, scale=scale, height=height)


def draw(view: View) -> None:
    heading("Logit lens: what each layer predicts for the answer", "lens")
    fig = _figure(view.root, view.key, view.stamp, view.settings.lens_value, view.scale, view.layout.chart_h)
    if view.redraw:
        fig = go.Figure(fig)
        figures.set_lens_cursor(fig, view.cursor, int(view.run.lens["layer"].max()) + 1)
    st.plotly_chart(fig, key=CHART, config=chart_config("lens"))


def marks(view: View) -> dict:
    return {"charts": [{"chart": CHART, "kind": "column", "x": list(range(view.n_steps + 1))}]}
