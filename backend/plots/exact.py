"""Plotly figures of the exact all-layer update (docs/exact_update.md): the loss landscape on the
exact path's principal plane, side by side with the single-layer proxy surface and the reference's
random-direction landscape, and the fidelity of each proxy.

Pure functions of arrays (no Streamlit, no torch). Shapes: K boundaries, grid [Nβ, Nα].
``surface`` is a ``backend.analysis.exact.landscape.ExactSurface``-like object (alphas [Nα],
betas [Nβ], loss [Nβ, Nα], path_coords [K, 2], path_loss [K], path_loss_plane [K],
plane_distance [K], norms [K], explained_variance [2]); ``fidelity`` is the ``fidelity`` block of
the exact run's meta (``backend.analysis.exact.run.fidelity``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from backend.plots import layout
from backend.plots.figures import LOSS_COLORSCALE
from backend.plots.proxy import MUTED, PATH_COLOR, PATH_EDGE, plane_axis_titles, theta_marker

EXACT_NOTE = "exact all-layer update: ΔW on every attention output projection W_o; no trajectory in context"
GROUP_COLORS = {"exact": "#0072B2", "top-k": "#56B4E9", "proxy": "#D55E00"}


def relative_distance(surface) -> np.ndarray:
    """‖ΔW_c − proj ΔW_c‖_F / ‖ΔW_c‖_F ``[K]`` (0 where ΔW_c = 0, i.e. at the start)."""
    dist = np.asarray(surface.plane_distance, dtype=np.float64)
    norms = np.asarray(surface.norms, dtype=np.float64)
    safe = np.where(norms > 0, norms, 1.0)
    return np.where(norms > 0, dist / safe, 0.0)


def path_hover(surface) -> list[str]:
    """One hover text per boundary: L̂(c) = L(θ + ΔW_c), the loss at its projection, its distance from the plane."""
    rel = relative_distance(surface)
    return [
        f"{'start (no trajectory)' if k == 0 else f'step {k}'}<br>"
        f"L(θ + ΔW<sub>c</sub>) = L̂(c) = {float(surface.path_loss[k]):.3f} nats<br>"
        f"L(θ + proj ΔW<sub>c</sub>) = {float(surface.path_loss_plane[k]):.3f} nats<br>"
        f"distance from the plane ‖ΔW − proj ΔW‖ = {float(surface.plane_distance[k]):.3g} "
        f"({rel[k]:.0%} of ‖ΔW<sub>c</sub>‖ = {float(surface.norms[k]):.3g})"
        for k in range(len(surface.path_coords))
    ]


def _check_grid(alphas, betas, loss) -> np.ndarray:
    loss = np.asarray(loss, dtype=np.float64)
    if loss.shape != (len(betas), len(alphas)):
        raise ValueError(f"surface loss must be [{len(betas)}, {len(alphas)}], got {loss.shape}")
    return loss


def _contour(alphas, betas, loss, scale: float, *, showscale: bool, name: str) -> go.Contour:
    return go.Contour(
        x=np.asarray(alphas),
        y=np.asarray(betas),
        z=loss,
        name=name,
        colorscale=LOSS_COLORSCALE,
        ncontours=16,
        showscale=showscale,
        contours=dict(coloring="heatmap", showlabels=True, labelfont=dict(size=round(9 * scale), color="white")),
        colorbar=dict(title=dict(text="L<sub>q</sub> (nats)"), thickness=12, len=0.9),
        hovertemplate="α = %{x:.3g}, β = %{y:.3g}<br>L<sub>q</sub> = %{z:.3f} nats<extra>" + name + "</extra>",
    )


def _path(coords: np.ndarray, hover: list[str], name: str, marker_size=9) -> go.Scatter:
    return go.Scatter(
        x=coords[:, 0],
        y=coords[:, 1],
        mode="lines+markers",
        name=name,
        customdata=np.arange(len(coords)),
        text=hover,
        line=dict(color=PATH_COLOR, width=2),
        marker=dict(
            size=marker_size,
            color=PATH_COLOR,
            line=dict(color=PATH_EDGE, width=1.5),
            symbol=["square"] + ["circle"] * (len(coords) - 1),
        ),
        hovertemplate="%{text}<extra></extra>",
        showlegend=False,
    )


def marker_sizes(surface, small: float = 6.0, large: float = 13.0) -> np.ndarray:
    """Marker size per boundary ``[K]``: larger where the point lies farther from the plane (relative)."""
    rel = np.clip(relative_distance(surface), 0.0, 1.0)
    return small + (large - small) * rel


def exact_surface_figure(surface, *, height: int = 500, scale: float = 1.0, title: str | None = None) -> go.Figure:
    """Contours of L(θ + αD1 + βD2) on the exact path's principal plane, the path on top (hover: each
    point's loss, the loss at its projection, and its distance from the plane; marker size grows with it)."""
    loss = _check_grid(surface.alphas, surface.betas, surface.loss)
    coords = np.asarray(surface.path_coords, dtype=np.float64)
    fig = go.Figure([_contour(surface.alphas, surface.betas, loss, scale, showscale=True, name="exact plane")])
    fig.add_trace(_path(coords, path_hover(surface), "path (step boundaries)", marker_sizes(surface)))
    titles = plane_axis_titles(surface.explained_variance)
    fig.update_xaxes(title_text=titles[0], range=[surface.alphas[0], surface.alphas[-1]])
    fig.update_yaxes(title_text=titles[1], range=[surface.betas[0], surface.betas[-1]])
    fig.update_layout(showlegend=False, clickmode="event+select")
    return layout.fit(
        fig,
        height=height,
        scale=scale,
        title=title or "Loss on the exact update's principal plane",
        subtitle=EXACT_NOTE,
        legend="none",
    )


def _proxy_hover(surface) -> list[str]:
    tf = np.asarray(surface.teacher_forced, dtype=np.float64)
    return [
        f"{'start' if b == 0 else f'step {b}'}<br>L<sub>q</sub>(θ + ΔW) = {float(surface.path_loss_full[b]):.3f}"
        f"<br>L̂ = {tf[b]:.3f} nats"
        for b in range(len(surface.path_coords))
    ]


def landscape_panels(exact_surface, proxy_surface=None, random_landscape=None) -> list[str]:
    """Titles of the panels the side-by-side figure draws, left to right (the ones that are available)."""
    panels = ["Exact all-layer update (PCA plane of the path)"]
    if proxy_surface is not None:
        panels.append(f"Single-layer proxy, layer {proxy_surface.layer} (PCA plane)")
    if random_landscape is not None:
        panels.append(f"Random directions (RaML reference, seed {random_landscape.seed})")
    return panels


def landscape_comparison_figure(
    exact_surface,
    proxy_surface=None,
    random_landscape=None,
    *,
    height: int = 460,
    scale: float = 1.0,
    title: str | None = None,
) -> go.Figure:
    """The exact-plane landscape beside the single-layer proxy surface and the random-direction
    landscape (each drawn when given; each with its own contour labels, since their ranges differ)."""
    titles = landscape_panels(exact_surface, proxy_surface, random_landscape)
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles, horizontal_spacing=0.06)
    col = 1
    loss = _check_grid(exact_surface.alphas, exact_surface.betas, exact_surface.loss)
    fig.add_trace(
        _contour(exact_surface.alphas, exact_surface.betas, loss, scale, showscale=False, name="exact"), 1, col
    )
    coords = np.asarray(exact_surface.path_coords, dtype=np.float64)
    fig.add_trace(_path(coords, path_hover(exact_surface), "exact path", marker_sizes(exact_surface)), 1, col)
    ax = plane_axis_titles(exact_surface.explained_variance)
    fig.update_xaxes(title_text=ax[0], row=1, col=col)
    fig.update_yaxes(title_text=ax[1], row=1, col=col)
    if proxy_surface is not None:
        col += 1
        loss = _check_grid(proxy_surface.alphas, proxy_surface.betas, proxy_surface.loss)
        fig.add_trace(
            _contour(proxy_surface.alphas, proxy_surface.betas, loss, scale, showscale=False, name="proxy"), 1, col
        )
        pc = np.asarray(proxy_surface.path_coords, dtype=np.float64)
        fig.add_trace(_path(pc, _proxy_hover(proxy_surface), "proxy path"), 1, col)
        ax = plane_axis_titles(proxy_surface.explained_variance)
        fig.update_xaxes(title_text=ax[0], row=1, col=col)
        fig.update_yaxes(title_text=ax[1], row=1, col=col)
    if random_landscape is not None:
        col += 1
        loss = _check_grid(random_landscape.alphas, random_landscape.betas, random_landscape.loss)
        fig.add_trace(
            _contour(random_landscape.alphas, random_landscape.betas, loss, scale, showscale=False, name="random"),
            1,
            col,
        )
        fig.add_trace(
            theta_marker(),
            1,
            col,
        )
        fig.update_xaxes(title_text="α (random direction 1)", row=1, col=col)
        fig.update_yaxes(title_text="β (random direction 2)", row=1, col=col)
    fig.update_layout(showlegend=False)
    return layout.fit(
        fig,
        height=height,
        scale=scale,
        title=title or "Loss landscapes around θ (answer loss L<sub>q</sub>, nats)",
        legend="none",
    )


# ---------------------------------------------------------------------------- fidelity
@dataclass
class FidelityRow:
    """One proxy's share of the descent: label, fraction (None when the run has no descent), loss, group."""

    label: str
    fraction: float | None
    loss: float
    group: str  # "exact" | "top-k" | "proxy"


def fidelity_rows(fidelity: dict) -> list[FidelityRow]:
    """The fidelity block as rows: full exact, exact top-k layers (k ascending), single-layer proxy per layer."""
    rows = [FidelityRow("full exact (all layers)", fidelity["exact"]["fraction"], fidelity["exact"]["loss"], "exact")]
    for k, v in sorted(fidelity.get("exact_top_k", {}).items(), key=lambda kv: int(kv[0])):
        rows.append(FidelityRow(f"exact, top-{k} layer{'s' if int(k) > 1 else ''}", v["fraction"], v["loss"], "top-k"))
    for layer, v in sorted(fidelity.get("single_layer_proxy", {}).items(), key=lambda kv: int(kv[0])):
        rows.append(FidelityRow(f"single-layer proxy, layer {layer}", v["fraction"], v["loss"], "proxy"))
    return rows


def _pct(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{fraction:.0%}"


def fidelity_line(fidelity: dict) -> str:
    """One line: the full exact update, its best top-k truncation and the best single-layer proxy."""
    rows = fidelity_rows(fidelity)
    parts = [f"full exact {_pct(rows[0].fraction)}"]
    for group in ("top-k", "proxy"):
        scored = [r for r in rows if r.group == group and r.fraction is not None]
        if scored:
            best = max(scored, key=lambda r: r.fraction)  # type: ignore[arg-type, return-value]
            parts.append(f"best {best.label} {_pct(best.fraction)}")
    return (
        f"Fraction of the descent L̂ {fidelity['initial_loss']:.2f} → {fidelity['final_loss']:.2f} reproduced: "
        + " · ".join(parts)
    )


def fidelity_figure(fidelity: dict, *, height: int = 260, scale: float = 1.0, title: str | None = None) -> go.Figure:
    """Horizontal bars: the fraction of the descent L̂(0) − L̂(end) each proxy reproduces (1 = all of it)."""
    rows = fidelity_rows(fidelity)[::-1]  # top row = full exact
    frac = [np.nan if r.fraction is None else float(r.fraction) for r in rows]
    fig = go.Figure(
        go.Bar(
            x=frac,
            y=[r.label for r in rows],
            orientation="h",
            marker_color=[GROUP_COLORS[r.group] for r in rows],
            text=[_pct(r.fraction) for r in rows],
            textposition="outside",
            customdata=[r.loss for r in rows],
            hovertemplate="%{y}<br>%{x:.1%} of the descent<br>L(θ + ΔW) = %{customdata:.3f} nats<extra></extra>",
        )
    )
    fig.add_vline(x=1.0, line=dict(color=MUTED, dash="dot", width=1))
    finite = [f for f in frac if np.isfinite(f)] or [1.0]
    fig.update_xaxes(
        title_text="fraction of L̂(0) − L̂(end)",
        tickformat=".0%",
        range=[min(0.0, *finite) - 0.05, max(1.0, *finite) * 1.2],
    )
    fig.update_layout(showlegend=False)
    return layout.fit(
        fig,
        height=height,
        scale=scale,
        title=title or "Fidelity: fraction of the descent each proxy reproduces",
        legend="none",
    )
