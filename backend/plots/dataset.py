"""Plotly figure builders for the Dataset page: pure functions of ``backend.analysis.dataset_stats``
tables (no Streamlit), so they are unit-tested on data alone.

Inputs: ``curve`` [groups x bins rows: group, progress, mean, std, sem, q25, q75, n_runs],
``runs`` [one row per run: key, label, question, group, n_tokens, final_loss, ...],
``reflections`` [one row per word: word, count, n_runs, mean_rel_change, ...].
Points carry the run key as ``customdata[0]`` so a click can open the run in Explore.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

LOSS_AXIS = "L̂ (nats)"
GROUP_COLORS = {"all": "#2a3f7a", "correct": "#15803d", "incorrect": "#b91c1c", "unknown": "#64748b"}
GROUP_LABELS = {
    "all": "all runs",
    "correct": "correct",
    "incorrect": "incorrect",
    "unknown": "no reference (model's own answer)",
}
GROUP_ORDER = ("correct", "incorrect", "unknown")
BASELINE_COLOR = "#d97706"
BANDS = {
    "ci95": "95% CI of the mean",
    "std": "± 1 std across runs",
    "iqr": "25–75% of runs",
}


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def _layout(fig: go.Figure, *, title: str, height: int, scale: float = 1.0) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        height=height,
        font=dict(family="Inter, Segoe UI, Helvetica, Arial, sans-serif", size=round(13 * scale), color="#1f2937"),
        title=dict(text=title, x=0.01, xanchor="left", font=dict(size=round(15 * scale))),
        margin=dict(l=64, r=24, t=64, b=52),
        legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="right", x=1.0),
        hoverlabel=dict(font_size=round(12 * scale)),
    )
    return fig


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


def band_bounds(curve: pd.DataFrame, band: str) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper edge of the band around the mean, [bins] each (NaN where undefined)."""
    mean = curve["mean"].to_numpy(dtype=np.float64)
    if band == "ci95":
        half = 1.96 * curve["sem"].to_numpy(dtype=np.float64)
        return mean - half, mean + half
    if band == "std":
        half = curve["std"].to_numpy(dtype=np.float64)
        return mean - half, mean + half
    if band == "iqr":
        return curve["q25"].to_numpy(dtype=np.float64), curve["q75"].to_numpy(dtype=np.float64)
    raise ValueError(f"unknown band '{band}': use one of {', '.join(BANDS)}")


def mean_loss_curve_figure(
    curve: pd.DataFrame, band: str = "ci95", split: bool = True, scale: float = 1.0
) -> go.Figure:
    """Mean L̂ over normalized progress c/n, one line per correctness group with a shaded band.

    ``split=False`` (or a single group) draws the ``all`` curve only.
    """
    present = [g for g in GROUP_ORDER if g in set(curve["group"])]
    groups = present if split and len(present) > 1 else ["all"]
    fig = go.Figure()
    for group in groups:
        part = curve[curve["group"] == group].sort_values("progress")
        if part.empty:
            continue
        color = GROUP_COLORS[group]
        x = part["progress"].to_numpy(dtype=np.float64)
        lower, upper = band_bounds(part, band)
        add_band(fig, x, lower, upper, color, f"{GROUP_LABELS[group]} band", legendgroup=group)
        n_total = int(part["n_runs"].max()) if len(part) else 0
        fig.add_trace(
            go.Scatter(
                x=x,
                y=part["mean"],
                mode="lines",
                name=f"{GROUP_LABELS[group]} ({_runs(n_total)})",
                line=dict(color=color, width=2.5),
                connectgaps=False,
                legendgroup=group,
                customdata=np.stack([part["n_runs"].to_numpy(), lower, upper], axis=1),
                hovertemplate=(
                    f"{GROUP_LABELS[group]}<br>progress %{{x:.2f}}<br>mean L̂ = %{{y:.3f}} nats"
                    "<br>band %{customdata[1]:.3f} – %{customdata[2]:.3f}<br>%{customdata[0]} runs<extra></extra>"
                ),
            )
        )
    fig.update_xaxes(title_text="progress through the trajectory (c / n)", range=[0, 1])
    fig.update_yaxes(title_text=f"mean {LOSS_AXIS}")
    return _layout(
        fig,
        title=f"Mean answer loss over the trajectory · band: {BANDS.get(band, band)}",
        height=round(400 * scale),
        scale=scale,
    )


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _segments(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index ranges where ``mask`` [n] is True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _hover_rows(runs: pd.DataFrame) -> list[str]:
    rows = []
    for r in runs.itertuples():
        question = str(r.question)
        question = html.escape(question if len(question) <= 90 else question[:90] + "…")
        label = html.escape(str(r.label or r.key[:8]))
        predicted = "—" if r.predicted_answer is None else html.escape(str(r.predicted_answer)[:40])
        rows.append(f"<b>{label}</b> · {question}<br>answer {html.escape(str(r.answer)[:40])}, model said {predicted}")
    return rows


def final_loss_vs_length_figure(runs: pd.DataFrame, scale: float = 1.0) -> go.Figure:
    """Final L̂ (after the whole trajectory) against trajectory length n, one point per run,
    coloured by correctness; click a point to open the run."""
    fig = go.Figure()
    for group in GROUP_ORDER:
        part = runs[runs["group"] == group]
        if part.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=part["n_tokens"],
                y=part["final_loss"],
                mode="markers",
                name=f"{GROUP_LABELS[group]} ({len(part)})",
                marker=dict(color=GROUP_COLORS[group], size=8, opacity=0.8, line=dict(color="white", width=0.5)),
                customdata=np.stack([part["key"].to_numpy(), _hover_rows(part)], axis=1),
                hovertemplate="%{customdata[1]}<br>n = %{x} tokens · final L̂ = %{y:.3f} nats"
                "<br><i>click to open in Explore</i><extra></extra>",
            )
        )
    fig.update_xaxes(title_text="trajectory length n (tokens)")
    fig.update_yaxes(title_text=f"final {LOSS_AXIS}")
    return _layout(fig, title="Final loss vs trajectory length", height=round(380 * scale), scale=scale)


def final_loss_by_correctness_figure(runs: pd.DataFrame, scale: float = 1.0) -> go.Figure:
    """Distribution of final L̂ per correctness group (box with every run as a point)."""
    fig = go.Figure()
    for group in GROUP_ORDER:
        part = runs[runs["group"] == group]
        if part.empty:
            continue
        fig.add_trace(
            go.Box(
                y=part["final_loss"],
                name=f"{group} ({len(part)})",
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker=dict(color=GROUP_COLORS[group], size=6, opacity=0.7),
                line=dict(color=GROUP_COLORS[group]),
                customdata=np.stack([part["key"].to_numpy(), _hover_rows(part)], axis=1),
                hovertemplate="%{customdata[1]}<br>final L̂ = %{y:.3f} nats<extra></extra>",
            )
        )
    fig.update_yaxes(title_text=f"final {LOSS_AXIS}")
    fig.update_layout(showlegend=False)
    return _layout(fig, title="Final loss by correctness", height=round(380 * scale), scale=scale)


def reflection_effect_figure(reflections: pd.DataFrame, baseline: dict, scale: float = 1.0) -> go.Figure:
    """Mean relative loss change across each reflection word (bars, count as text), with the
    per-token baseline as a dashed line in the legend."""
    table = reflections.sort_values("mean_rel_change")
    fig = go.Figure(
        go.Bar(
            x=table["mean_rel_change"],
            y=table["word"],
            orientation="h",
            marker_color="#2a3f7a",
            text=[f"n={c}" for c in table["count"]],
            textposition="outside",
            cliponaxis=False,
            customdata=np.stack(
                [table["count"].to_numpy(), table["n_runs"].to_numpy(), table["median_rel_change"].to_numpy()], axis=1
            ),
            hovertemplate=(
                "“%{y}”<br>mean |ΔL̂| / L̂ = %{x:.4f}<br>median %{customdata[2]:.4f}"
                "<br>%{customdata[0]} times in %{customdata[1]} runs<extra></extra>"
            ),
            name="reflection word (mean)",
            showlegend=False,
        )
    )
    top = float(table["mean_rel_change"].max()) if len(table) else 0.0
    base = baseline.get("mean_rel_change")
    if base is not None and np.isfinite(base):
        fig.add_trace(
            go.Scatter(
                x=[base, base],
                y=[-0.5, len(table) - 0.5],
                mode="lines",
                yaxis="y2",
                line=dict(color=BASELINE_COLOR, width=2, dash="dash"),
                name=f"ordinary token: {base:.4f} (n={baseline.get('count', 0)})",
                hovertemplate="per-token baseline %{x:.4f}<extra></extra>",
            )
        )
        top = max(top, float(base))
        fig.update_layout(yaxis2=dict(overlaying="y", range=[-0.5, len(table) - 0.5], visible=False))
    fig.update_xaxes(title_text="mean |ΔL̂| / L̂(before)", range=[0, top * 1.22 if top > 0 else 1], tickformat="~g")
    fig.update_yaxes(title_text=None)
    fig = _layout(
        fig,
        title="Reflection words vs ordinary tokens",
        height=round(max(280, 120 + 34 * len(table)) * scale),
        scale=scale,
    )
    fig.update_layout(
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0.0),
        margin=dict(l=110, r=40, t=80, b=52),
    )
    return fig
