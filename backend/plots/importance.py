"""Figures for step importance and branches (issue 13): the importance strip aligned with the
steps, and branch loss curves overlaid on the parent's in the same axes. Pure plotly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from backend.plots import binning, layout

STRIP_ROWS = {"ablation": "ablation ΔL̂", "attention": "attention", "resampling": "resampling ΔL̂"}


def strip_rows(n_steps: int, importance: dict | None, counterfactual: list[dict] | None) -> dict[str, np.ndarray]:
    """The strip's rows ``[S]`` each (position i is step i + 1), NaN where a step has no value
    (no finished branches at it, ...)."""
    rows: dict[str, np.ndarray] = {}
    if importance:
        rows["ablation"] = np.array([np.nan if v is None else v for v in importance["ablation"]], dtype=float)
        if importance.get("attention"):
            att = importance["attention"]["head_mean"]
            rows["attention"] = np.array([np.nan if v is None else v for v in att], dtype=float)
    if counterfactual:
        values = np.full(n_steps, np.nan)
        for row in counterfactual:
            if row["loss_delta"] is not None and 1 <= row["step"] <= n_steps:
                values[row["step"] - 1] = row["loss_delta"]
        rows["resampling"] = values
    return rows


def importance_strip(rows: dict[str, np.ndarray], texts: list[str], cursor_step: int | None = None) -> go.Figure:
    """One heatmap row per measure, one column per step (x = step 1..S, the stepper's numbers);
    each row scaled to its own max |value| so the measures (nats, attention mass) share one colour
    bar of ranks of strength. ``cursor_step`` draws the cursor into the figure (the fallback; in
    the browser the stepper places it)."""
    names = list(rows)
    width = binning.bin_width(len(texts))
    if width > 1:
        return _binned_strip(rows, texts, width, cursor_step)
    z, hover = [], []
    for name in names:
        values = rows[name]
        scale = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
        z.append(values / (scale or 1.0))
        hover.append(
            [
                f"step {k + 1}: {STRIP_ROWS[name]} = {'—' if not np.isfinite(v) else f'{v:+.4f}'}<br>{texts[k][:80]}"
                for k, v in enumerate(values)
            ]
        )
    fig = go.Figure(_strip_heatmap(z, list(range(1, len(texts) + 1)), names, hover, xgap=1))
    if cursor_step:
        fig.add_vline(x=cursor_step, line_color="black", line_width=2)
    fig.update_layout(
        xaxis=dict(title=None, range=[0.5, len(texts) + 0.5]),
        yaxis=dict(autorange="reversed", type="category"),  # ablation on top, in the order of the rows
    )
    layout.fit(
        fig,
        height=layout.MODEBAR_H + 62 + 34 * len(names),
        title="Step importance (red: the answer's loss rises without the step)",
        legend="none",
    )
    layout.integer_ticks(fig.layout.xaxis, len(texts) + 1, every_up_to=20)
    return fig


def strip_column_edges(n_steps: int) -> tuple[list[float], list[float]]:
    """Left and right edge (x of the strip, steps 1..S) of the column holding each boundary b =
    0..S, [B] each: step b ± 0.5, or its whole bin when the strip is binned (b = 0, the start,
    lies left of the strip and is not drawn)."""
    width = binning.bin_width(n_steps)
    edges = binning.bin_edges(n_steps, width) + 0.5  # step k = column k - 1 sits at x = k
    j = binning.bin_of(n_steps, width)
    left, right = [-0.5], [0.5]
    return left + edges[j].tolist(), right + edges[j + 1].tolist()


def _binned_strip(rows: dict[str, np.ndarray], texts: list[str], width: int, cursor_step: int | None) -> go.Figure:
    """The strip of a long run: bins of ``width`` steps, each drawn as one brick holding the
    bin's strongest value (largest |value|, sign kept: a spike stays visible); the hover names
    the bin's steps, that step and its value, and the bin's mean."""
    names = list(rows)
    n_steps = len(texts)
    edges = binning.bin_edges(n_steps, width)
    z, hover = [], []
    for name in names:
        values = np.asarray(rows[name], dtype=float)
        scale = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
        strongest, column = binning.bin_strongest(values[None, :], edges)
        mean = binning.bin_mean(values[None, :], edges)[0]
        z.append(strongest[0] / (scale or 1.0))
        cells = []
        for j, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
            k = int(column[0, j])
            top = "—" if k < 0 else f"step {k + 1}: {strongest[0, j]:+.4f}<br>{texts[k][:80]}"
            avg = "—" if not np.isfinite(mean[j]) else f"{mean[j]:+.4f}"
            cells.append(f"steps {a + 1}–{b} · {STRIP_ROWS[name]}: strongest {top}<br>mean over the bin {avg}")
        hover.append(cells)
    # brick edges in step numbers: bin j spans steps edges[j]+1..edges[j+1]
    fig = go.Figure(_strip_heatmap(z, (edges + 0.5).tolist(), names, hover, xgap=0))
    if cursor_step:
        fig.add_vline(x=cursor_step, line_color="black", line_width=2)
    fig.update_layout(
        height=60 + 34 * len(names),
        margin=dict(l=10, r=10, t=24, b=24),
        xaxis=dict(title=None, dtick=max(1, n_steps // 20), range=[0.5, n_steps + 0.5]),
        yaxis=dict(autorange="reversed"),
        title=dict(
            text=f"Step importance, bins of {width} steps (each bin: its strongest step; red: the answer's loss "
            "rises without it)",
            font=dict(size=13),
        ),
    )
    return fig


def top_steps_table(rows: dict[str, np.ndarray], texts: list[str]) -> pd.DataFrame:
    """One row per step (``step`` 1..S): its measures and text, most important (ablation) first."""
    df = pd.DataFrame({"step": range(1, len(texts) + 1)} | {STRIP_ROWS[k]: v for k, v in rows.items()})
    df["text"] = [t.strip()[:120] for t in texts]
    if "ablation" in rows:
        df = df.sort_values(STRIP_ROWS["ablation"], ascending=False, na_position="last")
    return df.reset_index(drop=True)


def branch_overlay(
    parent: pd.DataFrame, branches: list[tuple[str, pd.DataFrame]], branch_cut: int | None = None
) -> go.Figure:
    """L̂ per cut point of the parent and of each branch, on one x axis of trajectory tokens
    (a branch shares the parent's tokens up to where it branched)."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=parent["cut"], y=parent["loss"], name="parent", mode="lines", line=dict(color="black", width=2.5))
    )
    for label, tokens in branches:
        fig.add_trace(go.Scatter(x=tokens["cut"], y=tokens["loss"], name=label, mode="lines", line=dict(width=1.5)))
    if branch_cut is not None:
        fig.add_vline(x=branch_cut, line_dash="dot", line_color="grey")
    fig.update_layout(xaxis_title="trajectory tokens read (cut point c)", yaxis_title="L̂ (nats)")
    return layout.fit(fig, height=340, title="Branches: answer loss against the parent's")


def _strip_heatmap(z, x, names, hover, xgap: int) -> go.Heatmap:
    """The strip's heatmap: one row per method, signed importance in [-1, 1] on a diverging scale around 0."""
    return go.Heatmap(
        z=z,
        x=x,
        y=[STRIP_ROWS[n] for n in names],
        text=hover,
        hoverinfo="text",
        colorscale="RdBu_r",
        zmid=0,
        zmin=-1,
        zmax=1,
        showscale=False,
        xgap=xgap,
        ygap=2,
    )
