"""The lens grid: what each layer predicts for the answer at every boundary, read through the logit
lens (the model's own readout) or the model's tuned lens (``?lens=tuned``; docs/lens.md). The tuned
grid is the run's derived data: a button submits the ``lens_grid`` job when it is missing."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app import data, jobs_view, ui
from app.panels.common import View, heading
from app.panels.loss import chart_config
from app.state import LENS_KINDS
from backend.plots import binning, figures, revision

SLOT = "right2"
CHART = "explore_lens_chart"
KIND = "lens_grid"
SWITCH = "explore_lens_kind"
LABELS = {"logit": "logit", "tuned": "tuned"}


def _on_switch() -> None:
    kind = st.session_state.get(SWITCH, "logit")
    ui.set_query_params(lens=None if kind == "logit" else kind)


def lens_switch(current: str) -> str:
    """The sidebar's logit / tuned switch (kept in the URL as ``lens``); returns the chosen kind."""
    st.session_state[SWITCH] = current if current in LENS_KINDS else "logit"
    kind = st.radio(
        "Lens",
        LENS_KINDS,
        horizontal=True,
        format_func=LABELS.get,
        key=SWITCH,
        on_change=_on_switch,
        help="logit: each layer read with the model's own final norm and LM head; tuned: through a learned "
        "affine translator per layer first (`raml lens train`), which reads early layers far better",
    )
    return str(kind)


class _NoGrid(Exception):
    """The run's tuned grid is not computed: raised, not returned, so the cache never keeps "missing"."""


@st.cache_resource(show_spinner=False, max_entries=32)
def _figure(root: str, key: str, stamp: float, value: str, scale: float, height: int, kind: str, lens_stamp: str):
    from backend.analysis.lens.grid import load_tuned_grid

    store = data.store_at(root)
    run = data.load_run(store, key)
    frame = run.lens if kind == "logit" else load_tuned_grid(run, store)
    if frame is None:
        raise _NoGrid()
    return revision.stamp(figures.lens_heatmap_figure(frame, cursor=None, value=value, scale=scale, height=height))


def _lens_stamp(view: View) -> str:
    """The stored tuned lens's checksum ('' when there is none): a retrained lens redraws the grid."""
    from backend.store.lenses import LensError, has_lens, lens_dir, read_config

    fp = view.run.model_fingerprint
    if not fp or not has_lens(view.root, fp):
        return ""
    try:
        return str(read_config(lens_dir(view.root, fp)).get("params_sha256", ""))
    except LensError:
        return ""


def _missing(view: View, lens_stamp: str) -> None:
    name = view.run.model_name
    if not lens_stamp:
        if ui.read_only():
            st.info(f"No tuned lens for {ui.md(name)} on this server.")
            return
        st.info(
            f"No tuned lens for {name} yet. Train one with `raml lens train --model {name}` (a few minutes on a CPU)."
        )
        return
    if ui.read_only():
        st.caption("The tuned-lens grid of this run is not computed (this server is read-only).")
        return
    job = jobs_view.active_job(KIND, view.key)
    if job is not None:
        jobs_view.follow(job, "Tuned-lens grid", key="lens_grid_progress")
        return
    st.caption("The tuned-lens grid of this run is not computed yet (one pass over its boundaries).")
    if st.button("Compute the tuned-lens grid", key="lens_grid_compute"):
        if jobs_view.submit(KIND, {"key": view.key}) is not None:
            st.rerun()
    failure = jobs_view.last_failure(KIND, view.key)
    if failure:
        st.error(failure)


def draw(view: View) -> None:
    kind = view.settings.lens_kind
    if kind == "tuned":
        heading("Tuned lens: what each layer predicts for the answer", "lens")
    else:
        heading("Logit lens: what each layer predicts for the answer", "lens")
    lens_stamp = _lens_stamp(view) if kind == "tuned" else ""
    try:
        fig = _figure(
            view.root, view.key, view.stamp, view.settings.lens_value, view.scale, view.layout.chart_h, kind, lens_stamp
        )
    except _NoGrid:
        _missing(view, lens_stamp)
        return
    if view.redraw:
        fig = go.Figure(fig)
        revision.stamp(
            figures.set_lens_cursor(fig, view.cursor, int(view.run.lens["layer"].max()) + 1, view.n_steps + 1)
        )
    st.plotly_chart(fig, key=CHART, config=chart_config("lens"))


def marks(view: View) -> dict:
    kind = view.settings.lens_kind
    if kind == "tuned":
        args = (view.root, view.key, view.stamp, view.settings.lens_value, view.scale, view.layout.chart_h)
        try:
            _figure(*args, kind, _lens_stamp(view))
        except _NoGrid:
            return {"charts": []}  # no grid drawn: nothing for the stepper to move
    mark = {"chart": CHART, "kind": "column", "x": list(range(view.n_steps + 1))}
    if binning.bin_width(view.n_steps + 1) > 1:  # a binned grid: the cursor outlines the bin
        mark["x0"], mark["x1"] = figures.lens_column_edges(view.n_steps + 1)
    return {"charts": [mark]}
