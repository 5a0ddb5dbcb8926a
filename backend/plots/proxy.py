"""Plotly figure builders for the parameter-proxy space: the loss surface on the proxy plane
(contour and 3-D, the path on top), the random-direction landscape, and the Compare charts.

Pure functions of arrays (no Streamlit, no torch). Shapes: B = S + 1 step boundaries,
A x A grid points. ``surface`` arguments are ``backend.analysis.landscapes.surfaces.LossSurface``-like objects
(alphas [A], betas [A'], loss [A', A], path_coords [B, 2], path_loss_plane [B],
path_loss_full [B], teacher_forced [B], layer, explained_variance [2], base_loss).
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from backend.plots import layout
from backend.plots.figures import (  # one loss colour scale and one cursor across the app
    CURSOR_COLOR,
    LOSS_COLORSCALE,
    default_ema_alpha,
    ema,
    set_path_cursor,
)

PATH_COLOR = "#ffffff"
PATH_EDGE = "#111827"


def theta_marker() -> go.Scatter:
    """θ, the model's own weights, at the origin of a random-direction landscape."""
    return go.Scatter(
        x=[0],
        y=[0],
        mode="markers+text",
        text=["θ"],
        textposition="top center",
        marker=dict(size=10, color=PATH_COLOR, line=dict(color=PATH_EDGE, width=1.5)),
        textfont=dict(color="white"),
        hoverinfo="skip",
        showlegend=False,
    )


MUTED = "#64748b"
# one colour per run on Compare (colour-blind-safe, Okabe-Ito without yellow)
RUN_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00", "#000000", "#8c564b")
CORRECT_SYMBOL = {True: "star", False: "x", None: "circle"}
CORRECT_TEXT = {True: "correct", False: "incorrect", None: "no reference"}
COMPARE_KEY = "end marker: ★ correct · ✕ incorrect · ● no reference; dotted: answer already in the text"
PROXY_NOTE = (
    "single-layer proxy: exact only for layer {layer}'s MLP at the probe token "
    "(ΔW = rank-1 edit of its gate/up weights); no trajectory in context"
)


def _style(
    fig: go.Figure,
    *,
    height: int,
    scale: float,
    title: str | None,
    subtitle: str | None = None,
    legend: str = "top",
) -> go.Figure:
    """The one figure layout (``backend.plots.layout.fit``)."""
    return layout.fit(fig, height=height, scale=scale, title=title, subtitle=subtitle, legend=legend)


def correctness(value) -> bool | None:
    """meta/index ``correct`` (True, False, 1, 0, None, NaN) -> True, False or None."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return bool(value)


def plane_axis_titles(explained_variance) -> tuple[str, str]:
    """Axis titles of the proxy plane, with each direction's share of the path's variance."""
    if explained_variance is None:
        return "α (along D1)", "β (along D2)"
    ev = np.asarray(explained_variance, dtype=np.float64)
    return f"α along D1 (PC1, {ev[0]:.0%} of path variance)", f"β along D2 (PC2, {ev[1]:.0%})"


def _path_hover(surface) -> list[str]:
    B = len(surface.path_coords)
    tf = np.asarray(surface.teacher_forced, dtype=np.float64)
    return [
        f"{'start (no trajectory)' if b == 0 else f'step {b}'}<br>"
        f"L<sub>q</sub>(θ + proj ΔW) = {surface.path_loss_plane[b]:.3f}<br>"
        f"L<sub>q</sub>(θ + ΔW) = {surface.path_loss_full[b]:.3f}<br>"
        f"L̂ (teacher-forced) = {tf[b]:.3f} nats"
        for b in range(B)
    ]


def surface_contour_figure(
    surface, *, cursor: int | None = None, height: int = 500, scale: float = 1.0, title: str | None = None
) -> go.Figure:
    """Contours of L_q(θ + αD1 + βD2) with the path's boundaries on top (customdata = boundary)."""
    alphas, betas = np.asarray(surface.alphas), np.asarray(surface.betas)
    loss = np.asarray(surface.loss, dtype=np.float64)
    if loss.shape != (len(betas), len(alphas)):
        raise ValueError(f"surface loss must be [{len(betas)}, {len(alphas)}], got {loss.shape}")
    coords = np.asarray(surface.path_coords, dtype=np.float64)
    fig = go.Figure()
    fig.add_trace(
        go.Contour(
            x=alphas,
            y=betas,
            z=loss,
            name="L<sub>q</sub>",
            colorscale=LOSS_COLORSCALE,
            ncontours=18,
            contours=dict(coloring="heatmap", showlabels=True, labelfont=dict(size=round(10 * scale), color="white")),
            colorbar=dict(title=dict(text="L<sub>q</sub> (nats)"), thickness=12, len=0.9),
            hovertemplate="α = %{x:.3g}, β = %{y:.3g}<br>L<sub>q</sub> = %{z:.3f} nats<extra>surface</extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=coords[:, 0],
            y=coords[:, 1],
            mode="lines+markers",
            name="path (step boundaries)",
            customdata=np.arange(len(coords)),
            text=_path_hover(surface),
            line=dict(color=PATH_COLOR, width=2),
            marker=dict(
                size=9,
                color=PATH_COLOR,
                line=dict(color=PATH_EDGE, width=1.5),
                symbol=["square"] + ["circle"] * (len(coords) - 1),
            ),
            hovertemplate="%{text}<extra></extra>",
        )
    )
    fig.add_annotation(
        x=coords[0, 0],
        y=coords[0, 1],
        text="θ (start)",
        showarrow=False,
        yshift=14,
        font=dict(color="white", size=round(11 * scale)),
    )
    fig.add_annotation(
        x=coords[-1, 0],
        y=coords[-1, 1],
        text="end",
        showarrow=False,
        yshift=14,
        font=dict(color="white", size=round(11 * scale)),
    )
    titles = plane_axis_titles(surface.explained_variance)
    fig.update_xaxes(title_text=titles[0], range=[alphas[0], alphas[-1]])
    fig.update_yaxes(title_text=titles[1], range=[betas[0], betas[-1]])
    fig.update_layout(showlegend=False, clickmode="event+select")
    _style(
        fig,
        height=height,
        scale=scale,
        title=title or f"Loss surface on the proxy plane · layer {surface.layer}",
        subtitle=PROXY_NOTE.format(layer=surface.layer),
        legend="none",
    )
    if cursor is not None:
        set_surface_cursor(fig, coords, cursor)
    return fig


def set_surface_cursor(fig: go.Figure, coords: np.ndarray, cursor: int) -> go.Figure:
    """Ring the current boundary on a 2-D surface or compare chart (same ring as the path chart)."""
    return set_path_cursor(fig, coords, cursor, size=24)


def surface_3d_figure(
    surface, *, cursor: int | None = None, height: int = 560, scale: float = 1.0, title: str | None = None
) -> go.Figure:
    """3-D surface of L_q over (α, β) with the path drawn at height L_q(θ + proj ΔW_c)."""
    alphas, betas = np.asarray(surface.alphas), np.asarray(surface.betas)
    loss = np.asarray(surface.loss, dtype=np.float64)
    coords = np.asarray(surface.path_coords, dtype=np.float64)
    z_path = np.asarray(surface.path_loss_plane, dtype=np.float64)
    fig = go.Figure()
    fig.add_trace(
        go.Surface(
            x=alphas,
            y=betas,
            z=loss,
            colorscale=LOSS_COLORSCALE,
            name="L<sub>q</sub>",
            opacity=0.92,
            colorbar=dict(title=dict(text="L<sub>q</sub> (nats)"), thickness=12, len=0.8),
            contours=dict(z=dict(show=True, usecolormap=True, width=1)),
            hovertemplate="α = %{x:.3g}, β = %{y:.3g}<br>L<sub>q</sub> = %{z:.3f}<extra>surface</extra>",
        )
    )
    fig.add_trace(
        go.Scatter3d(
            x=coords[:, 0],
            y=coords[:, 1],
            z=z_path,
            mode="lines+markers",
            name="path",
            text=_path_hover(surface),
            hovertemplate="%{text}<extra></extra>",
            line=dict(color=PATH_EDGE, width=5),
            marker=dict(size=4, color=PATH_COLOR, line=dict(color=PATH_EDGE, width=1)),
        )
    )
    if cursor is not None:
        c = int(np.clip(cursor, 0, len(coords) - 1))
        fig.add_trace(
            go.Scatter3d(
                x=[coords[c, 0]],
                y=[coords[c, 1]],
                z=[z_path[c]],
                mode="markers",
                name="cursor",
                marker=dict(size=9, color=CURSOR_COLOR),
                hoverinfo="skip",
            )
        )
    titles = plane_axis_titles(surface.explained_variance)
    _style(
        fig,
        height=height,
        scale=scale,
        title=title or f"Loss surface on the proxy plane · layer {surface.layer} (single-layer proxy)",
        legend="none",
    )
    fig.update_layout(
        showlegend=False,
        scene=dict(
            xaxis_title=titles[0].split(" (")[0],
            yaxis_title=titles[1].split(" (")[0],
            zaxis_title="L<sub>q</sub> (nats)",
            camera=dict(eye=dict(x=1.5, y=-1.5, z=0.9)),
        ),
    )
    return fig


def path_losses_figure(
    surface, *, cursor: int | None = None, height: int = 320, scale: float = 1.0, title: str | None = None
) -> go.Figure:
    """Per boundary: teacher-forced L̂(c) next to L_q(θ + ΔW_c) and L_q(θ + proj ΔW_c)."""
    B = len(surface.path_coords)
    x = np.arange(B)
    fig = go.Figure()
    series = (
        ("L̂(c), trajectory in context", surface.teacher_forced, "#2a3f7a", "solid"),
        (f"L<sub>q</sub>(θ + ΔW_c), layer {surface.layer} edit", surface.path_loss_full, "#D55E00", "dash"),
        ("L<sub>q</sub>(θ + ΔW_c projected on the plane)", surface.path_loss_plane, "#009E73", "dot"),
    )
    for name, values, color, dash in series:
        fig.add_trace(
            go.Scatter(
                x=x,
                y=np.asarray(values, dtype=np.float64),
                mode="lines+markers",
                name=name,
                line=dict(color=color, dash=dash, width=2),
                marker=dict(size=5),
                hovertemplate="boundary %{x}: %{y:.3f} nats<extra>" + html.escape(name) + "</extra>",
            )
        )
    fig.update_xaxes(title_text="step boundary (0 = no trajectory)")
    fig.update_yaxes(title_text="loss (nats)")
    _style(fig, height=height, scale=scale, title=title or "Loss along the path: teacher-forced vs. single-layer proxy")
    layout.integer_ticks(fig.layout.xaxis, B)
    if cursor is not None:
        fig.add_vline(x=int(np.clip(cursor, 0, B - 1)), line=dict(color=CURSOR_COLOR, width=2))
    return fig


def random_landscape_figure(
    landscape, *, kind: str = "contour", height: int = 500, scale: float = 1.0, title: str | None = None
) -> go.Figure:
    """L_q(θ + α d1 + β d2) for two random filter-normalized directions (RaML reference)."""
    if kind not in ("contour", "surface"):
        raise ValueError(f"kind must be 'contour' or 'surface', got {kind!r}")
    alphas, betas = np.asarray(landscape.alphas), np.asarray(landscape.betas)
    loss = np.asarray(landscape.loss, dtype=np.float64)
    title = title or f"Random-direction landscape (seed {landscape.seed}, all layers, embeddings/LM head fixed)"
    fig = go.Figure()
    if kind == "contour":
        fig.add_trace(
            go.Contour(
                x=alphas,
                y=betas,
                z=loss,
                colorscale=LOSS_COLORSCALE,
                ncontours=18,
                contours=dict(
                    coloring="heatmap", showlabels=True, labelfont=dict(size=round(10 * scale), color="white")
                ),
                colorbar=dict(title=dict(text="L<sub>q</sub> (nats)"), thickness=12, len=0.9),
                hovertemplate="α = %{x:.3g}, β = %{y:.3g}<br>L<sub>q</sub> = %{z:.3f} nats<extra></extra>",
            )
        )
        fig.add_trace(theta_marker())
        fig.update_xaxes(title_text="α (random direction 1, per-tensor norm)")
        fig.update_yaxes(title_text="β (random direction 2)")
        _style(fig, height=height, scale=scale, title=title, legend="none")
    else:
        fig.add_trace(
            go.Surface(
                x=alphas,
                y=betas,
                z=loss,
                colorscale=LOSS_COLORSCALE,
                colorbar=dict(title=dict(text="L<sub>q</sub> (nats)"), thickness=12, len=0.8),
                contours=dict(z=dict(show=True, usecolormap=True, width=1)),
                hovertemplate="α = %{x:.3g}, β = %{y:.3g}<br>L<sub>q</sub> = %{z:.3f}<extra></extra>",
            )
        )
        _style(fig, height=height, scale=scale, title=title, legend="none")
        fig.update_layout(
            scene=dict(
                xaxis_title="α",
                yaxis_title="β",
                zaxis_title="L<sub>q</sub> (nats)",
                camera=dict(eye=dict(x=1.5, y=-1.5, z=0.9)),
            )
        )
    return fig


# ---------------------------------------------------------------------------- Compare
@dataclass
class CompareCurve:
    """One run's loss curve: progress [n+1] in 0..1, loss [n+1], after_answer [n+1] bool."""

    key: str
    label: str
    progress: np.ndarray
    loss: np.ndarray
    after_answer: np.ndarray
    correct: bool | None = None


def run_label(key: str, label: str | None, model: str, correct) -> str:
    """Legend text of a run: its label (or key prefix), model, and how it ended."""
    mark = {True: "✓", False: "✗", None: "·"}[correctness(correct)]
    name = (label or "").strip() or key[:8]
    return f"{mark} {name} · {model}"


def compare_loss_figure(
    curves: list[CompareCurve],
    *,
    alpha: float | None = None,
    show_raw: bool = True,
    height: int = 460,
    scale: float = 1.0,
    title: str | None = None,
    over_tokens: bool = False,
) -> go.Figure:
    """Loss curves of several runs over normalized progress: EMA bold (dotted once the answer
    already appears in the text), raw faint; the end marker says whether the run ended correct.
    ``over_tokens``: each curve's ``progress`` holds cut points c (tokens read) instead, for runs
    whose lengths are the point (thinking vs no thinking)."""
    x_hover = "c = %{x:.0f} tokens" if over_tokens else "progress %{x:.2f}"
    fig = go.Figure()
    for i, c in enumerate(curves):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        progress = np.asarray(c.progress, dtype=np.float64)
        loss = np.asarray(c.loss, dtype=np.float64)
        seen = np.asarray(c.after_answer, dtype=bool)
        a = alpha if alpha is not None else default_ema_alpha(max(len(loss) - 1, 1))
        smooth = ema(loss, a) if len(loss) else loss
        if show_raw:
            fig.add_trace(
                go.Scatter(
                    x=progress,
                    y=loss,
                    mode="lines",
                    line=dict(color=color, width=0.8),
                    opacity=0.35,
                    legendgroup=c.key,
                    showlegend=False,
                    hoverinfo="skip",
                )
            )
        before = np.where(~seen, smooth, np.nan)
        if seen.any():  # keep the dotted part joined to the solid one
            first = int(np.argmax(seen))
            after = np.where(seen, smooth, np.nan)
            if first > 0:
                after[first - 1] = smooth[first - 1]
        fig.add_trace(
            go.Scatter(
                x=progress,
                y=before,
                mode="lines",
                name=c.label,
                legendgroup=c.key,
                customdata=[c.key] * len(progress),
                line=dict(color=color, width=3),
                hovertemplate=f"{html.escape(c.label)}<br>{x_hover} · EMA L̂ = %{{y:.3f}} nats<extra></extra>",
            )
        )
        if seen.any():
            fig.add_trace(
                go.Scatter(
                    x=progress,
                    y=after,
                    mode="lines",
                    legendgroup=c.key,
                    showlegend=False,
                    line=dict(color=color, width=2, dash="dot"),
                    hoverinfo="skip",
                )
            )
        if len(loss):
            fig.add_trace(
                go.Scatter(
                    x=[progress[-1]],
                    y=[smooth[-1]],
                    mode="markers",
                    legendgroup=c.key,
                    showlegend=False,
                    customdata=[c.key],
                    marker=dict(
                        symbol=CORRECT_SYMBOL[c.correct], size=15, color=color, line=dict(color="white", width=1)
                    ),
                    hovertemplate=f"{html.escape(c.label)}: ended {CORRECT_TEXT[c.correct]}<br>"
                    "final EMA L̂ = %{y:.3f} nats<extra></extra>",
                )
            )
    if over_tokens:
        fig.update_xaxes(title_text="trajectory tokens read (cut point c)", rangemode="tozero")
    else:
        fig.update_xaxes(title_text="progress through the trajectory (cut point / n tokens)", range=[-0.01, 1.03])
    fig.update_yaxes(title_text="L̂ (nats)")
    return _style(fig, height=height, scale=scale, title=title or "Loss over normalized progress", subtitle=COMPARE_KEY)


def compare_paths_figure(
    coords: list[np.ndarray],
    losses: list[np.ndarray],
    labels: list[str],
    correct: list,
    *,
    keys: list[str] | None = None,
    axis_titles: tuple[str, str] = ("component 1", "component 2"),
    height: int = 500,
    scale: float = 1.0,
    title: str | None = None,
) -> go.Figure:
    """Several runs' paths in one fitted basis: coords [B_i, 2] each, markers coloured by L̂
    [B_i] on one shared scale, a line colour per run, the end symbol by correctness."""
    if not (len(coords) == len(losses) == len(labels) == len(correct)):
        raise ValueError("coords, losses, labels and correct must have one entry per run")
    all_loss = np.concatenate([np.asarray(v, dtype=np.float64) for v in losses]) if losses else np.zeros(1)
    cmin, cmax = float(np.nanmin(all_loss)), float(np.nanmax(all_loss))
    keys = keys or [str(i) for i in range(len(coords))]
    fig = go.Figure()
    for i, (xy, loss, label, ok) in enumerate(zip(coords, losses, labels, correct)):
        xy = np.asarray(xy, dtype=np.float64)
        loss = np.asarray(loss, dtype=np.float64)
        color = RUN_COLORS[i % len(RUN_COLORS)]
        ok = correctness(ok)
        fig.add_trace(
            go.Scatter(
                x=xy[:, 0],
                y=xy[:, 1],
                mode="lines",
                name=label,
                legendgroup=keys[i],
                line=dict(color=color, width=2),
                hoverinfo="skip",
            )
        )
        symbols = ["square"] + ["circle"] * max(len(xy) - 2, 0) + ([CORRECT_SYMBOL[ok]] if len(xy) > 1 else [])
        sizes = [10] + [8] * max(len(xy) - 2, 0) + ([16] if len(xy) > 1 else [])
        fig.add_trace(
            go.Scatter(
                x=xy[:, 0],
                y=xy[:, 1],
                mode="markers",
                legendgroup=keys[i],
                showlegend=False,
                customdata=np.stack([[keys[i]] * len(xy), np.arange(len(xy))], 1),
                marker=dict(
                    symbol=symbols,
                    size=sizes,
                    color=loss,
                    colorscale=LOSS_COLORSCALE,
                    cmin=cmin,
                    cmax=cmax,
                    line=dict(color=color, width=1.5),
                    showscale=i == 0,
                    colorbar=dict(title=dict(text="L̂ (nats)"), thickness=12, len=0.9),
                ),
                hovertemplate=f"{html.escape(label)}<br>boundary %{{customdata[1]}} · L̂ = %{{marker.color:.3f}} nats"
                "<extra></extra>",
            )
        )
    fig.update_xaxes(title_text=axis_titles[0], zeroline=False)
    fig.update_yaxes(title_text=axis_titles[1], zeroline=False)
    return _style(fig, height=height, scale=scale, title=title or "Paths in one shared basis")
