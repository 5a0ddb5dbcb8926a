"""Explore panel: the exact all-layer update (docs/exact_update.md) of the run — a button that
submits an ``exact`` job when it is not cached, one that submits ``exact_landscape`` (the loss on
the exact path's principal plane), the jobs' progress while they run, and what is cached: the
fidelity line (also under the loss chart) and the exact plane's figure in a popover.

The page never computes: the server's worker runs the jobs; this panel reads the cache."""

from __future__ import annotations

import streamlit as st

from app import jobs_view, ui
from backend.analysis.exact import data as exact_data
from backend.plots import exact as figures_exact
from backend.plots.figures import PLOTLY_CONFIG

KIND = "exact"
LANDSCAPE_KIND = "exact_landscape"
GRID, SPAN = 15, 1.5  # the exact_landscape kind's defaults (what Compare shows)


def _exact_cached(store, run) -> bool:
    path = exact_data.cache_path(run, store)
    return path is not None and path.is_file()


def _surface(store, run):
    from backend.analysis.exact import landscape as exact_landscape

    return exact_landscape.load_surface(run, grid=GRID, span=SPAN, store=store)


def render(store, run) -> None:
    st.subheader("Exact all-layer update")
    cached = _exact_cached(store, run)
    surface = _surface(store, run)
    exact_job = jobs_view.active_job(KIND, run.key)
    plane_job = jobs_view.active_job(LANDSCAPE_KIND, run.key, grid=GRID, span=SPAN)
    c1, c2, c3 = st.columns([3, 3, 6], vertical_alignment="center")
    read_only = ui.read_only()  # what is cached, no compute control (backend/readonly.py refuses one)
    if exact_job is not None:
        with c3:
            jobs_view.follow(exact_job, "Exact update", key="exact_progress")
    elif not cached and not read_only:
        help_text = "ΔW_c of every layer at every boundary (one backward pass per boundary), cached for the run"
        if c1.button("Compute the exact update", key="exact_compute", type="primary", help=help_text):
            if jobs_view.submit(KIND, {"key": run.key}) is not None:
                st.rerun()
    if plane_job is not None:
        with c3:
            jobs_view.follow(plane_job, f"Exact-plane landscape, {GRID} x {GRID}", key="exact_landscape_progress")
    elif surface is None and not read_only:
        help_text = f"L on the exact path's top-2 plane, {GRID} x {GRID} grid (computes the exact update first)"
        if c2.button("Compute its landscape", key="exact_landscape_compute", help=help_text):
            if jobs_view.submit(LANDSCAPE_KIND, {"key": run.key, "grid": GRID, "span": SPAN}) is not None:
                st.rerun()
    for failure in (jobs_view.last_failure(KIND, run.key), jobs_view.last_failure(LANDSCAPE_KIND, run.key)):
        if failure:
            st.error(failure)
    if cached:
        fidelity = (exact_data.load_meta(run, store) or {}).get("fidelity")
        line = figures_exact.fidelity_line(fidelity) if fidelity else "computed"
        st.caption(f"Exact update cached · {line}", help="also shown under the loss chart")
    elif read_only:
        st.caption("Not computed for this run.")
    elif exact_job is None:
        st.caption("Not computed yet: `raml exact` or the button above (needs the model; cached afterwards).")
    if surface is not None:
        with st.popover("Exact-plane landscape", key="exact_landscape_more"):
            fig = figures_exact.exact_surface_figure(surface)
            st.plotly_chart(fig, key="explore_exact_chart", config=PLOTLY_CONFIG)
