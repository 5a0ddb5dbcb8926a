"""Plotly figure builders for one run: pure functions of the run's tables, no Streamlit.

Every builder returns a ``plotly.graph_objects.Figure`` so it can be unit-tested on data alone
and reused by the HTML export. Shapes: S steps, B = S + 1 step boundaries (boundary 0 = before
any thinking, boundary k = end of step k), L layers, n trajectory tokens, n + 1 cut points.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from backend.plots import binning, layout

# One colour scale for loss everywhere (path points, lens heatmap, other pages): Viridis without
# its palest yellow, so every point stays visible on white. Dark = low loss = the good end.
LOSS_COLORSCALE = [
    [0.0, "#440154"],
    [0.125, "#482878"],
    [0.25, "#3e4989"],
    [0.375, "#31688e"],
    [0.5, "#26828e"],
    [0.625, "#1f9e89"],
    [0.75, "#35b779"],
    [0.875, "#6ece58"],
    [1.0, "#b5de2b"],
]
LOSS_COLORBAR_TITLE = "L̂ (nats)"
LOSS_UNITS = "nats"

RAW_COLOR = "#9aa5b4"  # raw per-token L̂: thin, light
EMA_COLOR = "#2a3f7a"  # smoothed L̂: bold, dark
P_COLOR = "#1f9e89"
CURSOR_COLOR = "#e4572e"
REFLECTION_COLOR = "#d97706"
BOUNDARY_COLOR = "#64748b"
SHADE_COLOR = "rgba(100, 116, 139, 0.14)"
SHADE_KEY_COLOR = "rgba(100, 116, 139, 0.35)"  # the shade's legend swatch: a little darker, to be seen
MAX_PATH_ARROWS = 300  # a longer path draws an arrow at every k-th boundary (path_arrow_stride)
P_PANEL_MIN_HEIGHT = 266  # px: below this the p(answer) panel would be too short to read (hover has it)

# Modebar: the camera button saves a PNG (2x) of any figure, in the app and in exported HTML.
PLOTLY_CONFIG = {
    "displaylogo": False,
    "modeBarButtonsToRemove": ["lasso2d", "select2d", "autoScale2d"],
    "toImageButtonOptions": {"format": "png", "scale": 2, "filename": "raml-figure"},
}

SHORT_RUN_TOKENS = 300  # below this, the paper's EMA alpha (0.01) barely moves: default to 0.05
PAPER_EMA_ALPHA = 0.01
SHORT_RUN_EMA_ALPHA = 0.05


def default_ema_alpha(n_tokens: int) -> float:
    """0.01 as in the paper; 0.05 for trajectories shorter than 300 tokens."""
    return SHORT_RUN_EMA_ALPHA if n_tokens < SHORT_RUN_TOKENS else PAPER_EMA_ALPHA


def ema(values: np.ndarray, alpha: float) -> np.ndarray:
    """Exponential moving average ``s_t = alpha x_t + (1 - alpha) s_{t-1}``, ``s_0 = x_0``; [n] -> [n]."""
    values = np.asarray(values, dtype=np.float64)
    if not 0 < alpha <= 1:
        raise ValueError(f"EMA alpha must be in (0, 1], got {alpha}")
    out = np.empty_like(values)
    acc = values[0] if len(values) else 0.0
    for i, v in enumerate(values):
        acc = alpha * v + (1 - alpha) * acc
        out[i] = acc
    return out


def boundary_cuts(steps: pd.DataFrame) -> np.ndarray:
    """Cut point of every step boundary, [B]: 0, then each step's end."""
    return np.concatenate([[0], steps["end"].to_numpy(dtype=np.int64)])


def boundary_losses(tokens: pd.DataFrame, steps: pd.DataFrame) -> np.ndarray:
    """L̂ at every step boundary, [B] (boundary 0 = no trajectory)."""
    loss_at = dict(zip(tokens["cut"].to_numpy().tolist(), tokens["loss"].to_numpy().tolist()))
    return np.array([loss_at[int(c)] for c in boundary_cuts(steps)], dtype=np.float64)


def step_label(boundary: int, n_steps: int) -> str:
    """Text of the cursor position, e.g. ``Step 3 / 12``."""
    if boundary == 0:
        return f"Start · 0 / {n_steps}"
    return f"Step {boundary} / {n_steps}"


def _layout(
    fig: go.Figure, *, height: int, scale: float, title: str | None, legend: str = "none", legend_font: float = 12
) -> go.Figure:
    """The one figure layout (``backend.plots.layout.fit``): toolbar band, title, legend, ticks."""
    return layout.fit(fig, height=height, scale=scale, title=title, legend=legend, legend_font=legend_font)


def loss_descent_figure(
    tokens: pd.DataFrame,
    steps: pd.DataFrame,
    *,
    cursor: int | None = None,
    alpha: float = PAPER_EMA_ALPHA,
    height: int = 440,
    scale: float = 1.0,
    title: str | None = None,
) -> go.Figure:
    """L̂ per cut point over progress: raw (thin) + EMA (bold) on top, p(answer) below (where the
    figure is tall enough for a readable panel: ``height`` ≥ ``P_PANEL_MIN_HEIGHT``; p(answer) is
    in the hover of every point either way).

    ``tokens``: one row per cut point (n + 1 rows: cut, progress, loss, p_answer, token,
    after_answer_seen, reflection); ``steps``: one row per step (S rows); ``cursor``: the
    boundary (0..S) drawn as a vertical line.
    """
    progress = tokens["progress"].to_numpy(dtype=np.float64)
    loss = tokens["loss"].to_numpy(dtype=np.float64)
    p_answer = tokens["p_answer"].to_numpy(dtype=np.float64)
    cuts = tokens["cut"].to_numpy()
    n_tokens = int(cuts.max()) if len(cuts) else 0
    smooth = ema(loss, alpha)
    # a long run is drawn decimated (min/max per bucket), every step boundary and reflection word kept
    # exactly: each drawn point is a real cut point, so its hover value is exact (backend/plots/binning.py)
    refl = tokens["reflection"].astype(str).to_numpy()
    keep = np.flatnonzero(np.isin(cuts, boundary_cuts(steps)) | (refl != ""))
    drawn = binning.decimate_minmax(loss, keep=keep)
    drawn_p = binning.decimate_minmax(p_answer, keep=keep)
    token_text = [html.escape(t).replace("\n", "⏎") for t in tokens["token"].astype(str).to_numpy()[drawn]]
    rows = 2 if height >= P_PANEL_MIN_HEIGHT else 1
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.64, 0.36] if rows == 2 else None,
        vertical_spacing=0.09,
    )
    if len(drawn) < len(loss):
        fig.update_layout(meta={"decimated": {"points": int(len(loss)), "drawn": int(len(drawn))}})

    fig.add_trace(
        go.Scatter(
            x=progress[drawn],
            y=loss[drawn],
            mode="lines",
            name="L̂ per token",
            line=dict(color=RAW_COLOR, width=1),
            customdata=np.stack([cuts[drawn], token_text, [f"{p:.3g}" for p in p_answer[drawn]]], axis=1),
            hovertemplate="cut %{customdata[0]} · token “%{customdata[1]}”<br>L̂ = %{y:.3f} nats"
            " · p(answer) = %{customdata[2]}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=progress[drawn],
            y=smooth[drawn],
            mode="lines",
            name=f"EMA (α = {alpha:g})",
            line=dict(color=EMA_COLOR, width=3),
            hovertemplate="EMA L̂ = %{y:.3f} nats<extra></extra>",
        ),
        row=1,
        col=1,
    )

    has_refl = refl != ""
    if has_refl.any():
        labelled = has_refl.sum() <= 12  # labelled diamonds explain themselves: no legend entry
        fig.add_trace(
            go.Scatter(
                x=progress[has_refl],
                y=loss[has_refl],
                mode="markers+text" if labelled else "markers",
                name="reflection word",
                showlegend=not labelled,
                text=refl[has_refl],
                textposition=reflection_label_sides(progress[has_refl], loss[has_refl]),
                textfont=dict(color=REFLECTION_COLOR, size=round(11 * scale)),
                marker=dict(symbol="diamond", size=9, color=REFLECTION_COLOR, line=dict(color="white", width=1)),
                hovertemplate="“%{text}” · L̂ = %{y:.3f} nats<extra></extra>",
            ),
            row=1,
            col=1,
        )

    # step boundaries: short ticks along the bottom of the loss panel, all in one shape (one SVG
    # path: a trace of NaN-separated segments cost plotly.js ~190 ms a draw at 1,500 steps)
    bcuts = boundary_cuts(steps)
    bx = bcuts / max(n_tokens, 1)
    fig.add_shape(boundary_rug(bx))
    dense = len(bx) > 60
    fig.add_trace(  # the rug's key, in the legend (a shape has none)
        go.Scatter(
            x=[None],
            y=[None],
            mode="lines",
            yaxis="y3",  # keeps the rug's axis in use
            name="step boundary",
            line=dict(color=BOUNDARY_COLOR, width=1 if dense else 1.5),
            hoverinfo="skip",
        )
    )

    if rows == 2:
        fig.add_trace(
            go.Scatter(
                x=progress[drawn_p],
                y=p_answer[drawn_p],
                mode="lines",
                name="p(answer)",
                line=dict(color=P_COLOR, width=1.5),
                showlegend=False,
                hovertemplate="p(first answer token) = %{y:.3g}<extra></extra>",
            ),
            row=2,
            col=1,
        )

    # shaded, not dropped: cut points after the answer text already appeared in the trajectory
    seen = tokens["after_answer_seen"].to_numpy(dtype=bool)
    if seen.any():
        x0 = float(progress[np.argmax(seen)])
        for row in range(1, rows + 1):
            fig.add_vrect(
                x0=x0,
                x1=float(progress.max()),
                fillcolor=SHADE_COLOR,
                line_width=0,
                layer="below",
                row=row,
                col=1,
                exclude_empty_subplots=False,
            )
        fig.add_trace(  # the shade's key, in the legend (text inside the plot would sit on the curve)
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                name="answer already in the text",
                marker=dict(symbol="square", size=11, color=SHADE_KEY_COLOR),
                hoverinfo="skip",
            ),
            row=1,
            col=1,
        )

    fig.update_layout(yaxis3=dict(overlaying="y", range=[0, 1], visible=False, fixedrange=True))
    fig.update_yaxes(title_text="L̂ (nats)", row=1, col=1)
    if rows == 2:
        fig.update_yaxes(title_text="p(answer)", row=2, col=1, rangemode="tozero", tickformat=".2~g")
    fig.update_xaxes(
        title_text="progress through the trajectory (cut point / n tokens)", range=[-0.01, 1.01], row=rows, col=1
    )
    # a short chart (one panel) puts its legend beside the plot: above it, its rows took most of
    # the height (a 201-px chart at 1280x720 kept a 25-px plot)
    _layout(fig, height=height, scale=scale, title=title, legend="top" if rows == 2 else "right", legend_font=11)
    p_top = layout.nice_floor(float(np.nanmax(p_answer, initial=0.0)))
    if rows == 2 and (fig.layout.yaxis2.nticks or 8) <= 2 and p_top > 0:  # a short panel: its two ends only
        fig.update_yaxes(tickvals=[0.0, p_top], row=2, col=1)
    if cursor is not None:
        set_loss_cursor(fig, float(bx[int(np.clip(cursor, 0, len(bx) - 1))]))
    return fig


RUG_NAME = "step boundaries"


def boundary_rug(bx: np.ndarray) -> dict:
    """The loss panel's rug: a short tick at each step boundary's progress ``bx`` [B], as one
    path shape on the invisible ``y3`` axis (0..1 over the loss panel); with many steps the ticks
    are shorter and fainter, so they read as a rug, not a wall."""
    dense = len(bx) > 60
    top = 0.03 if dense else 0.05
    path = "".join(f"M{float(x):.7g},0V{top}" for x in bx)
    return dict(
        type="path",
        name=RUG_NAME,
        path=path,
        xref="x",
        yref="y3",
        line=dict(color=BOUNDARY_COLOR, width=1 if dense else 1.5),
        opacity=0.45 if dense else 1.0,
    )


def rug_positions(fig: go.Figure) -> np.ndarray:
    """The progress of every tick of ``fig``'s boundary rug (``boundary_rug``), [B]."""
    shape = next(s for s in fig.layout.shapes if s.name == RUG_NAME)
    return np.array([float(part.split(",")[0]) for part in shape.path.split("M")[1:]])


def reflection_label_sides(x: np.ndarray, y: np.ndarray) -> list[str]:
    """Where each reflection word's label goes, [R]: away from its nearest neighbour (above the
    higher point of two, below the lower), so labels of nearby words do not meet between them."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    sides = []
    for i in range(len(x)):
        others = np.delete(np.arange(len(x)), i)
        if not len(others):
            sides.append("top center")
            continue
        j = others[np.argmin(np.abs(x[others] - x[i]))]
        higher = y[i] > y[j] or (y[i] == y[j] and i < j)
        sides.append("top center" if higher else "bottom center")
    return sides


def set_loss_cursor(fig: go.Figure, x: float) -> go.Figure:
    """Draw (or move) the vertical cursor line at progress ``x`` across both panels."""
    shapes = [s for s in fig.layout.shapes if getattr(s, "name", None) != "cursor"]
    cursor = dict(
        type="line",
        name="cursor",
        x0=x,
        x1=x,
        xref="x",
        y0=0,
        y1=1,
        yref="paper",
        line=dict(color=CURSOR_COLOR, width=2),
    )
    fig.update_layout(shapes=[*shapes, cursor])
    return fig


def path_figure(
    coords: np.ndarray,
    loss: np.ndarray,
    *,
    cursor: int | None = None,
    axis_titles: tuple[str, str] = ("component 1", "component 2"),
    title: str | None = None,
    height: int = 440,
    scale: float = 1.0,
    step_texts: list[str] | None = None,
    max_arrows: int | None = MAX_PATH_ARROWS,
) -> go.Figure:
    """2-D path of the step boundaries: ``coords`` [B, 2], ``loss`` [B] (colour), ``cursor`` in 0..B-1.

    Points are arrows pointing along the path (from the previous boundary), coloured by L̂ on
    the shared loss scale; ``customdata`` holds the boundary index so a click can move the cursor.
    A path of more than ``max_arrows`` steps (None: no limit) draws an arrow at every k-th
    boundary only (``path_arrow_stride``; each then points from the previous arrow, and the last
    boundary always has one), while the line through every boundary carries the hover and the
    click of each: 1,500 arrows cost plotly.js ~380 ms a draw, and at a chart's width they overlap.
    """
    coords = np.asarray(coords, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) != len(loss):
        raise ValueError(f"path_figure needs coords [B, 2] and loss [B], got {coords.shape} and {loss.shape}")
    B = len(coords)
    idx = np.arange(B)
    snippets = step_texts or [""] * B
    hover = [f"{'start' if b == 0 else f'step {b}'}: {html.escape(s.strip()[:60])}" for b, s in zip(idx, snippets)]
    every = path_arrow_stride(B, max_arrows)
    shown = idx if every == 1 else np.unique(np.r_[idx[::every], B - 1])
    fig = go.Figure()
    line_hover: dict = dict(hoverinfo="skip")
    if every > 1:  # the arrows are thinned: every boundary hovers and clicks on the line
        line_hover = dict(
            customdata=idx,
            text=[f"{h}<br>L̂ = {v:.3f} nats" for h, v in zip(hover, loss)],
            hovertemplate="%{text}<br><i>click to jump here</i><extra></extra>",
        )
    fig.add_trace(
        go.Scatter(
            x=coords[:, 0],
            y=coords[:, 1],
            mode="lines",
            name="path",
            line=dict(color="#cbd5e1", width=1.5),
            showlegend=False,
            **line_hover,
        )
    )
    symbols = ["circle"] + ["arrow"] * (len(shown) - 1)  # point 0 has no "previous": drawn by the start trace
    size = 13 if B < 80 else 10
    sizes = [0] + [size] * (len(shown) - 1)
    if every > 1:
        fig.update_layout(meta={"arrows_every": int(every)})
    fig.add_trace(
        go.Scatter(
            x=coords[shown, 0],
            y=coords[shown, 1],
            mode="markers",
            name="boundary",
            showlegend=False,
            customdata=idx[shown],
            text=[hover[b] for b in shown],
            marker=dict(
                symbol=symbols,
                angleref="previous",
                size=sizes,
                color=loss[shown],
                colorscale=LOSS_COLORSCALE,
                cmin=float(np.nanmin(loss)),
                cmax=float(np.nanmax(loss)),
                colorbar=dict(title=dict(text=LOSS_COLORBAR_TITLE), thickness=12, len=0.9),
                line=dict(color="white", width=0.5),
            ),
            unselected=dict(marker=dict(opacity=1.0)),
            hovertemplate="%{text}<br>L̂ = %{marker.color:.3f} nats<br><i>click to jump here</i><extra></extra>",
        )
    )
    fig.add_trace(  # the start: a filled square (arrows need a previous point), clickable like the others
        go.Scatter(
            x=coords[:1, 0],
            y=coords[:1, 1],
            mode="markers",
            name="start",
            showlegend=False,
            customdata=idx[:1],
            text=hover[:1],
            marker=dict(
                symbol="square",
                size=size,
                color=loss[:1],
                colorscale=LOSS_COLORSCALE,
                cmin=float(np.nanmin(loss)),
                cmax=float(np.nanmax(loss)),
                line=dict(color="#1f2937", width=1.5),
            ),
            hovertemplate="%{text}<br>L̂ = %{marker.color:.3f} nats<br><i>click to jump here</i><extra></extra>",
        )
    )
    fig.add_annotation(
        x=coords[0, 0],
        y=coords[0, 1],
        text="start",
        showarrow=False,
        yshift=24,  # clear of the 26 px cursor ring
        font=dict(size=round(11 * scale), color=BOUNDARY_COLOR),
    )
    if B > 1:
        fig.add_annotation(
            x=coords[-1, 0],
            y=coords[-1, 1],
            text="end",
            showarrow=False,
            yshift=24,
            font=dict(size=round(11 * scale), color=BOUNDARY_COLOR),
        )
    fig.update_layout(clickmode="event+select", dragmode="pan", showlegend=False)
    _layout(fig, height=height, scale=scale, title=title)
    ranges = path_ranges(coords)
    fig.update_xaxes(title_text=axis_titles[0], zeroline=False, range=ranges[0])
    fig.update_yaxes(title_text=axis_titles[1], zeroline=False, range=ranges[1])
    if cursor is not None:
        set_path_cursor(fig, coords, int(cursor))
    return fig


def path_arrow_stride(n_points: int, max_arrows: int | None = MAX_PATH_ARROWS) -> int:
    """Draw an arrow at every k-th of ``n_points`` boundaries: the smallest k that keeps the
    arrows at most ``max_arrows`` (1: every boundary; also when ``max_arrows`` is None)."""
    if max_arrows is None or n_points - 1 <= max_arrows:
        return 1
    return -(-(n_points - 1) // max_arrows)


def path_ranges(coords: np.ndarray) -> list[list[float]]:
    """Axis ranges of a 2-D path ``[B, 2]``, padded so the first/last arrows and their labels are
    never clipped. An axis whose spread is rounding noise next to the other's (a 2-point path has
    one PCA direction: its second coordinate is ~1e-16) is centred on its mean with the other
    axis' span, so its ticks read 0 instead of "1f / −1f"."""
    spans = [float(np.nanmax(coords[:, a]) - np.nanmin(coords[:, a])) for a in (0, 1)]
    scale = max(spans)
    ranges = []
    for axis in (0, 1):
        lo, hi = float(np.nanmin(coords[:, axis])), float(np.nanmax(coords[:, axis]))
        if spans[axis] > 1e-9 * scale:
            pad = 0.08 * (hi - lo)
            ranges.append([lo - pad, hi + pad])
            continue
        centre = (lo + hi) / 2 if abs(lo + hi) / 2 > 1e-9 * scale else 0.0
        half = 0.58 * scale if scale > 0 else max(abs(centre) * 0.1, 1e-3)
        ranges.append([centre - half, centre + half])
    return ranges


def set_path_cursor(fig: go.Figure, coords: np.ndarray, cursor: int, size: int = 26) -> go.Figure:
    """Ring the current boundary of a 2-D path (trace named ``cursor``); coords ``[S+1, 2]``."""
    cursor = int(np.clip(cursor, 0, len(coords) - 1))
    fig.data = [t for t in fig.data if t.name != "cursor"]
    fig.add_trace(
        go.Scatter(
            x=[coords[cursor, 0]],
            y=[coords[cursor, 1]],
            mode="markers",
            name="cursor",
            showlegend=False,
            marker=dict(symbol="circle-open", size=size, color=CURSOR_COLOR, line=dict(width=3)),
            hoverinfo="skip",
        )
    )
    return fig


def lens_grid(lens: pd.DataFrame, value: str = "nll") -> tuple[np.ndarray, np.ndarray]:
    """Lens table -> (values [L, B], hover text [L, B]) with the top-5 tokens per cell."""
    if value not in ("nll", "p_answer"):
        raise ValueError(f"lens value must be 'nll' or 'p_answer', got {value!r}")
    B = int(lens["boundary"].max()) + 1
    L = int(lens["layer"].max()) + 1
    order = lens.sort_values(["layer", "boundary"])
    grid = order[value].to_numpy(dtype=np.float64).reshape(L, B)
    texts = []
    for toks, probs in zip(order["top_tokens"], order["top_probs"]):
        pairs = [f"{html.escape(repr(str(t))[1:-1])} {float(p):.2f}" for t, p in zip(toks, probs)]
        texts.append(" · ".join(pairs))
    return grid, np.array(texts, dtype=object).reshape(L, B)


def lens_heatmap_figure(
    lens: pd.DataFrame,
    *,
    cursor: int | None = None,
    value: str = "nll",
    title: str | None = None,
    height: int = 440,
    scale: float = 1.0,
) -> go.Figure:
    """Logit lens, layer x boundary: answer NLL (loss scale) or p(answer); top-5 tokens on hover."""
    n_boundaries = int(lens["boundary"].max()) + 1
    width = binning.bin_width(n_boundaries)
    if width > 1:  # more boundaries than the chart has room for: bins of `width` boundaries
        grid, texts, x = _binned_lens_grid(lens, value, width)
    else:
        grid, texts = lens_grid(lens, value)
        x = np.arange(grid.shape[1])
    L, B = grid.shape[0], n_boundaries
    if value == "nll":
        finite = grid[np.isfinite(grid)]
        zmax = float(np.percentile(finite, 95)) if finite.size else 1.0
        z_kw = dict(
            colorscale=LOSS_COLORSCALE,
            zmin=float(finite.min()) if finite.size else 0.0,
            zmax=zmax,
            colorbar=dict(title=dict(text=f"lens {LOSS_COLORBAR_TITLE}"), thickness=12),
        )
        fmt = "answer NLL %{z:.3f} nats"
    else:  # high probability = low loss: the same scale, reversed, so dark stays "good"
        finite = grid[np.isfinite(grid)]
        p_range = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if p_range[1] - p_range[0] < 1e-6:
            p_range = (max(p_range[0] - 1e-3, 0.0), p_range[1] + 1e-3)
        z_kw = dict(
            colorscale=LOSS_COLORSCALE,
            reversescale=True,
            zmin=p_range[0],  # this run's own range: a fixed 0-1 scale paints small p one colour
            zmax=p_range[1],
            colorbar=dict(title=dict(text="p(answer)"), thickness=12),
        )
        fmt = "p(first answer token) %{z:.3f}"
    fig = go.Figure(
        go.Heatmap(
            z=grid,
            x=x,
            y=np.arange(L),
            customdata=texts,
            xgap=0,
            ygap=0,
            hovertemplate=(
                f"boundary %{{x}} · layer %{{y}}<br>{fmt}<br>top: %{{customdata}}<extra></extra>"
                if width == 1
                else "%{customdata}<extra></extra>"  # the bin's range, mean, min-max and top tokens
            ),
            **z_kw,
        )
    )
    fig.update_xaxes(title_text="step boundary (0 = before thinking)", range=[-0.5, B - 0.5])
    fig.update_yaxes(title_text="layer", range=[-0.5, L - 0.5])
    _layout(fig, height=height, scale=scale, title=title)
    if width > 1:
        fig.update_xaxes(title_text=f"step boundary (0 = before thinking) · bins of {width}")
    layout.integer_ticks(fig.layout.xaxis, B)  # labels on whole boundaries and layers, as many as fit
    layout.integer_ticks(fig.layout.yaxis, L)
    if cursor is not None:
        set_lens_cursor(fig, int(cursor), L, B)
    return fig


def _binned_lens_grid(lens: pd.DataFrame, value: str, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean per bin [L, nb], hover text [L, nb], brick edges [nb + 1]) of a lens table whose
    boundaries come in bins of ``width``: the hover names the bin's boundaries, the mean, the
    range and the top tokens at the bin's last boundary."""
    if value not in ("nll", "p_answer"):
        raise ValueError(f"lens value must be 'nll' or 'p_answer', got {value!r}")
    B = int(lens["boundary"].max()) + 1
    L = int(lens["layer"].max()) + 1
    order = lens.sort_values(["layer", "boundary"])
    full = order[value].to_numpy(dtype=np.float64).reshape(L, B)
    edges = binning.bin_edges(B, width)
    mean = binning.bin_mean(full, edges)
    lo, hi = binning.bin_range(full, edges)
    last = edges[1:] - 1
    top_tokens, top_probs = order["top_tokens"].to_numpy(), order["top_probs"].to_numpy()  # row = layer * B + b
    label = "answer NLL" if value == "nll" else "p(first answer token)"
    texts = np.empty(mean.shape, dtype=object)
    for layer in range(L):
        for j, b in enumerate(last):
            a = int(edges[j])
            toks, probs = top_tokens[layer * B + int(b)], top_probs[layer * B + int(b)]
            top = " · ".join(f"{html.escape(repr(str(t))[1:-1])} {float(p):.2f}" for t, p in zip(toks, probs))
            span = f"boundaries {a}–{int(b)}" if b > a else f"boundary {a}"
            texts[layer, j] = (
                f"{span} · layer {layer}<br>{label} mean {mean[layer, j]:.3f} "
                f"(min {lo[layer, j]:.3f}, max {hi[layer, j]:.3f})<br>top at boundary {int(b)}: {top}"
            )
    return mean, texts, edges - 0.5


def lens_column_edges(n_boundaries: int) -> tuple[list[float], list[float]]:
    """Left and right edge (x of the lens chart) of the column that holds each boundary, [B] each:
    b ± 0.5, or the whole bin when the grid is binned (the browser's cursor outlines it)."""
    edges = binning.bin_edges(n_boundaries, binning.bin_width(n_boundaries)) - 0.5
    j = binning.bin_of(n_boundaries, binning.bin_width(n_boundaries))
    return edges[j].tolist(), edges[j + 1].tolist()


def set_lens_cursor(fig: go.Figure, cursor: int, n_layers: int, n_boundaries: int | None = None) -> go.Figure:
    """Outline the current boundary's column (its bin's, when ``n_boundaries`` says the grid is binned)."""
    shapes = [s for s in fig.layout.shapes if getattr(s, "name", None) != "cursor"]
    x0, x1 = cursor - 0.5, cursor + 0.5
    if n_boundaries is not None:
        left, right = lens_column_edges(n_boundaries)
        x0, x1 = left[cursor], right[cursor]
    rect = dict(
        type="rect",
        name="cursor",
        x0=x0,
        x1=x1,
        y0=-0.5,
        y1=n_layers - 0.5,
        xref="x",
        yref="y",
        line=dict(color=CURSOR_COLOR, width=3),
        fillcolor="rgba(0,0,0,0)",
    )
    fig.update_layout(shapes=[*shapes, rect])
    return fig
