"""The 2-D path of the step boundaries in the proxy (MLP ΔW) or hidden-state space of one layer."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app import data, state, ui
from app.panels.common import View, heading
from app.panels.loss import chart_config
from backend.plots import figures, revision

SLOT = "left2"
CHART = "explore_path_chart"


@st.cache_resource(show_spinner=False, max_entries=32)
def _figure(
    root: str,
    key: str,
    stamp: float,
    layer: int,
    space: str,
    method: str,
    scale: float,
    height: int,
    dstamp: str = "",
    every_arrow: bool = False,
):
    store = data.store_at(root)
    run = data.load_run(store, key)
    proj = data.projection(store, key, layer, space, method)
    ev = proj["explained_variance"]
    names = ("PC1", "PC2") if method == "pca" else ("UMAP 1", "UMAP 2")
    axis = tuple(f"{n} ({v:.0%} of variance)" for n, v in zip(names, ev)) if ev is not None else names
    fig = figures.path_figure(
        proj["coords"],
        figures.boundary_losses(run.tokens, run.steps),
        cursor=None,
        axis_titles=axis,
        scale=scale,
        height=height,
        step_texts=[""] + run.steps["text"].astype(str).tolist(),
        max_arrows=None if every_arrow else figures.MAX_PATH_ARROWS,
    )
    return revision.stamp(fig)


def projection(view: View) -> dict | None:
    """The run's 2-D path (``coords`` [B, 2], geometry, trustworthiness), or None if there is none."""
    if not view.proxy_ok or view.layer is None:
        return None
    try:
        return data.projection(view.store, view.key, int(view.layer), view.space, view.settings.method)
    except ValueError:
        return None


def geometry(view: View):
    proj = projection(view)
    return None if proj is None else proj["geometry"]


def draw(view: View) -> None:
    space, layer = view.space, view.layer
    where = state.layer_label(space, layer)
    heading(f"Path of the steps · {state.SPACE_SHORT[space]}{f' · {where}' if where else ''}", "path")
    if not view.proxy_ok:
        st.info("The 2-D path needs backend.analysis.spaces.proxy, which this checkout does not have yet.")
        return
    if layer is None:
        st.info(f"This run stores no layers for the {space} space.")
        return
    method = view.settings.method
    try:
        dstamp = data.derived_stamp(view.store, view.key) if space == "exact" else ""
        # drawn on the server (no browser stepper), a click selects a marker: every boundary gets its arrow
        fig = _figure(
            view.root,
            view.key,
            view.stamp,
            int(layer),
            space,
            method,
            view.scale,
            view.layout.chart_h,
            dstamp,
            every_arrow=view.redraw,
        )
    except ValueError as exc:  # e.g. UMAP on too few points: say why, keep the rest
        st.warning(ui.md(exc))
        return
    proj = projection(view)
    kwargs: dict = {}
    if view.redraw:  # the server draws the ring and hears clicks as selections
        fig = go.Figure(fig)
        figures.set_path_cursor(fig, proj["coords"], view.cursor)
        fig.data[-1].customdata = [view.cursor]
        revision.stamp(fig)
        kwargs = dict(on_select=view.slots.get("on_path_select"), selection_mode="points")
    st.plotly_chart(fig, key=CHART, config=chart_config("path"), **kwargs)
    n_points = view.n_steps + 1
    every = (fig.layout.meta or {}).get("arrows_every", 1) if isinstance(fig.layout.meta, dict) else 1
    trust = proj["trustworthiness"] if n_points >= state.MIN_UMAP_POINTS else None
    kind = {"proxy": "MLP ΔW proxy", "hidden": "hidden state", "exact": "exact all-layer update"}[space]
    if not view.present:
        st.caption(
            f"{kind} · {state.layer_label(space, layer)}, {method.upper()}"
            + (f" · trustworthiness {trust:.2f}" if trust is not None else "")
            + (
                f" · {n_points} points (no UMAP below {state.MIN_UMAP_POINTS})"
                if n_points < state.MIN_UMAP_POINTS
                else ""
            )
            + (f" · an arrow every {every} steps (every point hovers)" if every > 1 else "")
            + " · click a point to jump"
        )


def marks(view: View) -> dict:
    proj = projection(view)
    if proj is None:
        return {}
    coords = proj["coords"]
    return {"charts": [{"chart": CHART, "kind": "ring", "x": coords[:, 0].tolist(), "y": coords[:, 1].tolist()}]}
