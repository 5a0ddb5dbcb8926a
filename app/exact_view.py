"""Compare's exact-update landscape (docs/exact_update.md): the loss on the exact path's principal
plane, drawn when ``raml exact`` and its surface are cached for the run (never computed here)."""

from __future__ import annotations

import streamlit as st

from backend.plots import exact as figures_exact
from backend.plots.figures import PLOTLY_CONFIG


def draw_exact_landscape(store, run) -> bool:
    """The cached exact-plane surface of ``run`` and its fidelity line; False (draws nothing) if not cached."""
    from backend.analysis.exact import data as exact_data
    from backend.analysis.exact import landscape as exact_landscape

    surface = exact_landscape.load_surface(run, store=store)
    if surface is None:
        return False
    st.plotly_chart(figures_exact.exact_surface_figure(surface), key="compare_exact_chart", config=PLOTLY_CONFIG)
    meta = exact_data.load_meta(run, store) or {}
    fidelity = meta.get("fidelity")
    rel = figures_exact.relative_distance(surface)
    st.caption(
        f"Exact all-layer update: the path's points lie {rel.max():.0%} (at most) of ‖ΔW_c‖ off this plane; "
        f"PC1 + PC2 hold {float(surface.explained_variance.sum()):.0%} of the path's variance."
        + (f" {figures_exact.fidelity_line(fidelity)}." if fidelity else "")
    )
    st.divider()
    return True
