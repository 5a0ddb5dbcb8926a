"""Shared look of the Dataset page's figures (``backend.plots.claims``): group colours and labels,
the layout, and shaded bands with NaN gaps kept as gaps.

Inputs: ``curve`` [groups x bins rows: group, progress, mean, std, sem, q25, q75, n_runs],
``runs`` [one row per run: key, label, question, group, n_tokens, final_loss, ...],
``reflections`` [one row per word: word, count, n_runs, mean_rel_change, ...].
Points carry the run key as ``customdata[0]`` so a click can open the run in Explore.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from backend.plots import layout as plot_layout

LOSS_AXIS = "L̂ (nats)"
GROUP_COLORS = {"all": "#2a3f7a", "correct": "#15803d", "incorrect": "#b91c1c", "unknown": "#64748b"}
GROUP_LABELS = {
    "all": "all runs",
    "correct": "correct",
    "incorrect": "incorrect",
    "unknown": "no reference (model's own answer)",
}


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def layout(
    fig: go.Figure, *, title: str, height: int, scale: float = 1.0, axis_title_chars: int | None = None
) -> go.Figure:
    """The one figure layout (``backend.plots.layout.fit``), legend under the title."""
    return plot_layout.fit(fig, height=height, scale=scale, title=title, axis_title_chars=axis_title_chars)


def add_band(fig: go.Figure, x, low, high, color: str, name: str, *, legendgroup: str, **trace_kw) -> None:
    """A shaded band between ``low`` and ``high`` over ``x`` ``[G]`` each: one polygon per
    unbroken stretch (NaN gaps stay gaps), hidden from the legend and the hover."""
    x = np.asarray(x, dtype=np.float64)
    low = np.asarray(low, dtype=np.float64)
    high = np.asarray(high, dtype=np.float64)
    for start, stop in _segments(~(np.isnan(low) | np.isnan(high))):
        xs = x[start:stop]
        fig.add_trace(
            go.Scatter(
                x=np.concatenate([xs, xs[::-1]]),
                y=np.concatenate([high[start:stop], low[start:stop][::-1]]),
                mode="lines",
                fill="toself",
                fillcolor=_rgba(color, 0.16),
                line=dict(width=0),
                hoverinfo="skip",
                showlegend=False,
                legendgroup=legendgroup,
                name=name,
                **trace_kw,
            )
        )


def _segments(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index ranges where ``mask`` [n] is True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))
