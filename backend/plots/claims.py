"""Figures of the Dataset page's claim views: pure functions of ``backend.analysis.dataset.claims`` tables.

Every aggregate is drawn with its bootstrap 95% interval (a band or error bars) and its n in
the hover; points that stand for a run carry its key as ``customdata[0]`` so a click opens it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from backend.plots.bands import GROUP_COLORS, GROUP_LABELS, LOSS_AXIS, add_band, layout

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00")
INNER_LOOP_TITLES = {
    "step_size": "step size ‖Δu‖ (mean per boundary in the bin)",
    "step_share": "share of the path length taken in the bin",
    "cosine_prev": "cosine of consecutive steps (+1 momentum, −1 oscillation)",
}
COLOR_FIELDS = {"group": "correctness", "n_tokens": "length (tokens)", "final_loss": "final L̂", "label": "source/id"}


def _band(fig: go.Figure, x, low, high, color: str, name: str, **trace_kw) -> None:
    add_band(fig, x, low, high, color, f"{name} 95% interval", legendgroup=name, **trace_kw)


def _mean_line(fig: go.Figure, part: pd.DataFrame, x: str, color: str, name: str, unit: str, **trace_kw) -> None:
    drawn = part["n"][np.isfinite(part["mean"].to_numpy(dtype=np.float64))]  # where the curve is drawn
    n_min, n_max = (int(drawn.min()), int(drawn.max())) if len(drawn) else (0, 0)
    fig.add_trace(
        go.Scatter(
            x=part[x],
            y=part["mean"],
            mode="lines",
            name=f"{name} (n = {n_max})" if n_min == n_max else f"{name} (n = {n_min}–{n_max} runs)",
            legendgroup=name,
            line=dict(color=color, width=2.5),
            customdata=np.stack([part["n"], part["low"], part["high"]], axis=1),
            hovertemplate=(
                f"{name}<br>{x} %{{x:.2f}}<br>mean %{{y:.4g}} {unit}<br>95% CI %{{customdata[1]:.4g}} – "
                "%{customdata[2]:.4g}<br>n = %{customdata[0]}<extra></extra>"
            ),
            **trace_kw,
        )
    )


def descent_figure(descent: pd.DataFrame, split: bool = True, scale: float = 1.0) -> go.Figure:
    """Mean L̂ over progress x = c/n with bootstrap bands, by correctness (or all runs)."""
    groups = [g for g in ("correct", "incorrect", "unknown") if g in set(descent["group"])]
    groups = groups if split and len(groups) > 1 else ["all"]
    fig = go.Figure()
    for group in groups:
        part = descent[descent["group"] == group].sort_values("progress")
        _band(fig, part["progress"], part["low"], part["high"], GROUP_COLORS[group], GROUP_LABELS[group])
        _mean_line(fig, part, "progress", GROUP_COLORS[group], GROUP_LABELS[group], "nats")
    fig.update_xaxes(title_text="progress through the trajectory (c / n)", range=[0, 1])
    fig.update_yaxes(title_text=f"mean {LOSS_AXIS}")
    return layout(
        fig,
        title="Does the trajectory lower the answer's loss? Mean L̂ with bootstrap 95% bands",
        height=round(380 * scale),
        scale=scale,
    )


def length_figure(runs: pd.DataFrame, scale: float = 1.0) -> go.Figure:
    """Loss drop L̂(0) − L̂(end) against trajectory length, one point per run (click to open)."""
    fig = go.Figure()
    for group in ("correct", "incorrect", "unknown"):
        part = runs[runs["group"] == group]
        if part.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=part["n_tokens"],
                y=part["initial_loss"] - part["final_loss"],
                mode="markers",
                name=f"{GROUP_LABELS[group]} (n = {len(part)})",
                marker=dict(color=GROUP_COLORS[group], size=8, opacity=0.8, line=dict(width=0.5, color="#ffffff")),
                customdata=np.stack([part["key"], part["label"].fillna("").astype(str)], axis=1),
                hovertemplate="%{customdata[1]}<br>%{x} tokens<br>drop %{y:.3f} nats<extra></extra>",
            )
        )
    fig.add_hline(y=0, line=dict(color="#94a3b8", width=1, dash="dot"))
    fig.update_xaxes(title_text="trajectory length (tokens)")
    fig.update_yaxes(title_text="loss drop L̂(0) − L̂(end) (nats)")
    return layout(fig, title="Longer thinking, more descent?", height=round(340 * scale), scale=scale)


def reflection_forest_figure(words: pd.DataFrame, scale: float = 1.0) -> go.Figure:
    """Per word (pooled first): ratio of its relative loss change to its matched control, with CI."""
    words = words[np.isfinite(words["ratio"].to_numpy(dtype=np.float64))]
    labels = [f"{w} (n = {n})" for w, n in zip(words["word"], words["n_matched"])]
    ratio = words["ratio"].to_numpy(dtype=np.float64)
    fig = go.Figure(
        go.Scatter(
            x=ratio,
            y=labels,
            mode="markers",
            marker=dict(size=10, color=["#2a3f7a" if w == "all words" else "#d97706" for w in words["word"]]),
            error_x=dict(
                type="data",
                symmetric=False,
                array=np.nan_to_num(words["ratio_high"].to_numpy(dtype=np.float64) - ratio),
                arrayminus=np.nan_to_num(ratio - words["ratio_low"].to_numpy(dtype=np.float64)),
                color="#64748b",
            ),
            hovertemplate="%{y}<br>ratio %{x:.2f}<extra></extra>",
            showlegend=False,
        )
    )
    fig.add_vline(x=1.0, line=dict(color="#94a3b8", dash="dot"))
    fig.update_xaxes(title_text="relative change at the word ÷ matched ordinary windows (1 = no effect)")
    fig.update_yaxes(autorange="reversed")
    return layout(  # drawn in half the page: its long x axis title in lines of 36 characters
        fig,
        title="Do reflection words mark larger moves?",
        height=round((170 + 34 * max(len(labels), 1)) * scale),
        scale=scale,
        axis_title_chars=36,
    )


def event_aligned_figure(events: pd.DataFrame, scale: float = 1.0) -> go.Figure:
    """Mean ΔL̂ around reflection words vs around matched ordinary windows, with bands."""
    fig = go.Figure()
    for series, color in (("reflection word", "#d97706"), ("matched control", "#64748b")):
        part = events[events["series"] == series].sort_values("offset")
        _band(fig, part["offset"], part["low"], part["high"], color, series)
        _mean_line(fig, part, "offset", color, series, "nats")
    fig.add_vline(x=0, line=dict(color="#94a3b8", dash="dot"))
    fig.update_xaxes(title_text="tokens from the start of the word (or window)")
    fig.update_yaxes(title_text="L̂(b + offset) − L̂(b) (nats)")
    return layout(fig, title="Loss around each occurrence (event-aligned)", height=round(340 * scale), scale=scale)


def model_pair_figure(
    curves: pd.DataFrame, per_question: pd.DataFrame, model_a: str, model_b: str, scale: float = 1.0
) -> go.Figure:
    """Left: both models' mean curves on the paired questions; right: per-question B − A of final L̂."""
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.62, 0.38],
        subplot_titles=("mean L̂ on the shared questions", f"final L̂: {model_b} − {model_a}"),
    )
    for model, color in ((model_a, PALETTE[0]), (model_b, PALETTE[1])):
        part = curves[curves["model"] == model].sort_values("progress")
        _band(fig, part["progress"], part["low"], part["high"], color, model, xaxis="x", yaxis="y")
        _mean_line(fig, part, "progress", color, model, "nats", xaxis="x", yaxis="y")
    if len(per_question):
        diff = per_question["final_loss_b"] - per_question["final_loss_a"]
        order = np.argsort(diff.to_numpy())
        fig.add_trace(
            go.Bar(
                x=diff.to_numpy()[order],
                y=[q[:48] for q in per_question["question"].to_numpy()[order]],
                orientation="h",
                marker_color=["#15803d" if d < 0 else "#b91c1c" for d in diff.to_numpy()[order]],
                showlegend=False,
                hovertemplate="%{y}<br>B − A = %{x:.3f} nats<extra></extra>",
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text="progress (c / n)", range=[0, 1], row=1, col=1)
    fig.update_yaxes(title_text=LOSS_AXIS, row=1, col=1)
    fig.update_yaxes(showticklabels=len(per_question) <= 25, row=1, col=2)
    fig.update_xaxes(title_text="nats (negative: B ends lower)", row=1, col=2)
    return layout(fig, title=f"{model_a} vs {model_b} on the same questions", height=round(400 * scale), scale=scale)


def samples_figure(curves: pd.DataFrame, best_curve: np.ndarray, label: str, scale: float = 1.0) -> go.Figure:
    """Spread of the samples of one question: 10–90% band, min/max, mean and the best sample."""
    fig = go.Figure()
    x = curves["progress"].to_numpy(dtype=np.float64)
    _band(fig, x, curves["q10"], curves["q90"], PALETTE[0], "10–90% of samples")
    for column, dash in (("min", "dot"), ("max", "dot")):
        fig.add_trace(
            go.Scatter(x=x, y=curves[column], mode="lines", name=column, line=dict(color="#94a3b8", dash=dash, width=1))
        )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=curves["mean"],
            mode="lines",
            name=f"mean of {int(curves['n'].max())} samples",
            line=dict(color=PALETTE[0], width=2.5),
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x, y=best_curve, mode="lines", name="best of N (lowest final L̂)", line=dict(color="#15803d", width=2)
        )
    )
    fig.update_xaxes(title_text="progress (c / n)", range=[0, 1])
    fig.update_yaxes(title_text=LOSS_AXIS)
    return layout(fig, title=f"Samples of one question: {label[:70]}", height=round(360 * scale), scale=scale)


def task_map_figure(points: pd.DataFrame, color_by: str, title: str, scale: float = 1.0) -> go.Figure:
    """One point per run at its map coordinates, coloured by ``color_by``; click opens the run."""
    fig = go.Figure()
    custom = np.stack(
        [points["key"], points["label"].fillna("").astype(str), points["question"].str.slice(0, 80)], axis=1
    )
    hover = "%{customdata[1]}<br>%{customdata[2]}<extra></extra>"
    if color_by in ("group", "label"):
        values = points[color_by].fillna("").astype(str)
        for i, value in enumerate(pd.unique(values)):
            mask = (values == value).to_numpy()
            color = (
                GROUP_COLORS.get(value, PALETTE[i % len(PALETTE)]) if color_by == "group" else PALETTE[i % len(PALETTE)]
            )
            fig.add_trace(
                go.Scatter(
                    x=points["x"][mask],
                    y=points["y"][mask],
                    mode="markers",
                    name=GROUP_LABELS.get(value, value or "–") if color_by == "group" else (value or "–")[:30],
                    marker=dict(size=10, color=color, line=dict(width=0.5, color="#ffffff")),
                    customdata=custom[mask],
                    hovertemplate=hover,
                )
            )
    else:
        fig.add_trace(
            go.Scatter(
                x=points["x"],
                y=points["y"],
                mode="markers",
                marker=dict(
                    size=10,
                    color=points[color_by],
                    colorscale="Viridis",
                    showscale=True,
                    colorbar=dict(title=COLOR_FIELDS[color_by]),
                ),
                customdata=custom,
                hovertemplate=hover,
                showlegend=False,
            )
        )
    fig.update_xaxes(title_text="map axis 1", zeroline=False)
    fig.update_yaxes(title_text="map axis 2", zeroline=False, scaleanchor="x", scaleratio=1)
    return layout(fig, title=title, height=round(380 * scale), scale=scale)


def inner_loop_figure(inner: pd.DataFrame, measure: str, split: bool = True, scale: float = 1.0) -> go.Figure:
    """One inner-loop measure over progress bins, by correctness, with bootstrap bands."""
    part = inner[inner["measure"] == measure]
    groups = [g for g in ("correct", "incorrect", "unknown") if g in set(part["group"])]
    groups = groups if split and len(groups) > 1 else ["all"]
    fig = go.Figure()
    for group in groups:
        rows = part[part["group"] == group].sort_values("progress")
        _band(fig, rows["progress"], rows["low"], rows["high"], GROUP_COLORS[group], GROUP_LABELS[group])
        _mean_line(fig, rows, "progress", GROUP_COLORS[group], GROUP_LABELS[group], "")
    if measure == "cosine_prev":
        fig.add_hline(y=0, line=dict(color="#94a3b8", dash="dot"))
    fig.update_xaxes(title_text="progress (boundary cut / n)", range=[0, 1])
    fig.update_yaxes(title_text=INNER_LOOP_TITLES[measure])
    return layout(fig, title=f"Inner loop: {INNER_LOOP_TITLES[measure]}", height=round(340 * scale), scale=scale)
