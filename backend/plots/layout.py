"""The one layout of every figure (issue 26, "fit to present"): margins, title, legend, the band of
plotly's toolbar, colour bars and tick counts, so that no text of a figure sits on another at any
window size.

From the top of a figure down: a band of ``MODEBAR_H`` px that belongs to plotly's toolbar (the
"modebar", shown on hover at the top right), the title (and its subtitle) on the left below it,
the legend row(s) below the title, then the plot. The title is placed in container pixels
(``yref="container"``) with ``automargin``, so plotly reserves its real height; the legend sits
right on top of the plot (``yref="paper"``, ``y=1``), which plotly stacks under the title's margin
however many rows the legend wraps into at the chart's width (without a title: in container
pixels under the toolbar's band). Axis tick labels and titles push the other margins themselves
(the template's ``automargin``). A figure with subplot titles gets its legend under the plot
instead (plotly stacks a container legend below the axis titles there).

Colour bars put their title on top of the bar (never beside its tick labels); vertical axes and
colour bars get as many ticks as their pixel height holds (``tick_count``); horizontal axes keep
plotly's own count, which follows the chart's width. Pure plotly: no Streamlit, no torch.
"""

from __future__ import annotations

import math
import re

import plotly.graph_objects as go

FONT_FAMILY = "Inter, Segoe UI, Helvetica, Arial, sans-serif"
TEXT_COLOR = "#1f2937"
MUTED = "#64748b"
MODEBAR_H = 28  # plotly's toolbar: 22 px buttons + padding, at the top right of the figure
LINE = 1.3  # a line of text, in font sizes
TICK_SPACING = 2.2  # a vertical axis needs this many font sizes per tick label
AXIS_TITLE_CHAR = 0.62  # width of an axis title's character, in base font sizes (titles are 1.1x larger)
BOTTOM_EST = 3.2  # x tick labels + x axis title, in font sizes (only to estimate plot heights)
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
COLORBAR_TITLE_CHARS = 10  # a colour bar's title sits on top of the bar: about as wide as the bar and its ticks


def font(scale: float = 1.0, size: float = 13) -> dict:
    return dict(family=FONT_FAMILY, size=round(size * scale), color=TEXT_COLOR)


def wrap(text: str, max_chars: int) -> str:
    """``text`` broken at spaces into lines of at most ``max_chars`` characters (``<br>``); a word
    longer than that stays whole. Existing ``<br>`` are kept."""
    lines: list[str] = []
    for part in _BR.split(text):
        line = ""
        for word in part.split(" "):
            if line and _visible(line) + 1 + _visible(word) > max_chars:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        lines.append(line)
    return "<br>".join(lines)


def _visible(text: str) -> int:
    """Characters a reader sees (tags such as ``<sub>`` left out)."""
    return len(_TAG.sub("", text))


def n_lines(text: str | None) -> int:
    return 0 if not text else len(_BR.split(text))


def tick_count(length_px: float, font_px: float, *, most: int = 8) -> int:
    """How many tick labels fit along a vertical axis ``length_px`` long (at least 2)."""
    return int(max(2, min(most, length_px // (TICK_SPACING * font_px))))


def nice_floor(value: float) -> float:
    """The largest 1, 2 or 5 x 10^k not above ``value`` (0 for 0 or less): a round top tick."""
    if not value > 0:
        return 0.0
    exponent = math.floor(math.log10(value))
    for mantissa in (5, 2, 1):
        candidate = mantissa * 10.0**exponent
        if candidate <= value * (1 + 1e-12):
            return float(f"{candidate:.12g}")
    return float(f"{10.0**exponent:.12g}")


def integer_ticks(axis, n_values: int, *, every_up_to: int = 12) -> None:
    """Label only whole numbers 0..n_values-1 on ``axis`` (a plotly axis of layer or boundary
    indices): every one up to ``every_up_to`` values; beyond that as many as the axis holds (a
    vertical axis: the ``nticks`` set by :func:`fit`; a horizontal one: plotly's count, which
    follows the width, at least 1 apart)."""
    fits = axis.nticks
    if fits is None:  # horizontal: plotly counts by width; a step of 1 only where it surely fits
        if n_values <= every_up_to:
            axis.update(tick0=0, dtick=1)
        else:
            axis.update(tickformat="d")
        return
    axis.update(tick0=0, dtick=max(1, -(-n_values // max(int(fits), 1))), nticks=None)


def fit(
    fig: go.Figure,
    *,
    height: int,
    scale: float = 1.0,
    title: str | None = None,
    subtitle: str | None = None,
    legend: str = "top",
    legend_font: float = 12,
    title_chars: int = 90,
    axis_title_chars: int | None = None,
) -> go.Figure:
    """Apply the one layout to ``fig`` (returned): ``height`` px, fonts at ``scale``, a left-aligned
    ``title`` (wrapped at ``title_chars``) with an optional ``subtitle``, the legend ``"top"`` (under
    the title), ``"bottom"`` (under the x axis title), ``"right"`` (one column beside the plot: a
    short chart keeps its height for the plot) or ``"none"`` (the figure's own ``showlegend``
    decides); ``axis_title_chars`` wraps long axis titles (charts drawn in narrow columns)."""
    if legend not in ("top", "bottom", "right", "none"):
        raise ValueError(f"legend must be 'top', 'bottom', 'right' or 'none', got {legend!r}")
    base = font(scale)
    title_px, sub_px = round(15 * scale), round(11 * scale)
    above = _subplot_title_px(fig, base["size"])  # subplot titles sit right above the plot
    if above and legend == "top":
        legend = "bottom"
    title = wrap(title, title_chars) if title else None
    subtitle = wrap(subtitle, round(title_chars * 1.3)) if subtitle else None
    title_block = (n_lines(title) * LINE * title_px if title else 0) + (
        n_lines(subtitle) * LINE * sub_px + 4 if subtitle else 0
    )
    fig.update_layout(
        template="plotly_white",
        height=height,
        font=base,
        hoverlabel=dict(font_size=round(12 * scale)),
        margin=dict(l=12, r=12, t=MODEBAR_H + (0 if title else round(above)), b=12, autoexpand=True),
        modebar=dict(orientation="h", bgcolor="rgba(255, 255, 255, 0.85)"),
        uirevision="keep",  # keep zoom and pan while a cursor moves
    )
    if title:
        fig.update_layout(
            title=dict(
                text=title,
                **({"subtitle": dict(text=subtitle, font=dict(size=sub_px, color=MUTED))} if subtitle else {}),
                font=dict(size=title_px),
                x=0,
                xref="container",
                xanchor="left",
                y=1 - MODEBAR_H / height,
                yref="container",
                yanchor="top",
                pad=dict(l=10, t=0, b=round(above) + 6),
                automargin=True,
            )
        )
    top_est = MODEBAR_H + title_block + (6 if title else 0)  # only to estimate the plot's height
    placed = dict(
        orientation="h",
        font=dict(size=round(legend_font * scale)),
        x=0,
        xref="paper",
        xanchor="left",
        yref="container",
        itemwidth=30,
        tracegroupgap=0,
        entrywidth=0,
        bgcolor="rgba(0, 0, 0, 0)",
    )
    if legend == "top" and title:  # right above the plot: plotly stacks it under the title's reserved margin
        fig.update_layout(legend=dict(placed, yref="paper", y=1, yanchor="bottom"))
    elif legend == "top":  # under the toolbar's band
        fig.update_layout(legend=dict(placed, y=1 - MODEBAR_H / height, yanchor="top"))
    elif legend == "bottom":
        fig.update_layout(legend=dict(placed, y=0, yanchor="bottom"))
    elif legend == "right":  # beside the plot, from its top: plotly widens the right margin for it
        fig.update_layout(legend=dict(placed, orientation="v", x=1.02, y=1, yref="paper", yanchor="top"))
    if axis_title_chars:
        for axis in _axes(fig):
            text = axis.title.text
            if text:
                axis.title.text = wrap(text, axis_title_chars)
    legend_h = LINE * legend_font * scale + 8 if legend in ("top", "bottom") else 0
    plot_h = height - top_est - legend_h - BOTTOM_EST * base["size"]
    _fit_colorbars(fig, plot_h, base["size"], scale)
    _fit_vertical_ticks(fig, plot_h, base["size"])
    _fit_vertical_titles(fig, plot_h, base["size"])
    return fig


def _fit_vertical_titles(fig: go.Figure, plot_h: float, font_px: float) -> None:
    """A vertical axis title longer than its axis is broken into lines that fit along it."""
    char_px = AXIS_TITLE_CHAR * font_px
    for axis in fig.select_yaxes():
        text = axis.title.text
        if not text or axis.visible is False or axis.overlaying:
            continue
        domain = axis.domain if axis.domain is not None else (0.0, 1.0)
        length = (domain[1] - domain[0]) * max(plot_h, 40)
        longest = max(_visible(line) for line in _BR.split(text))
        if longest * char_px > length:
            axis.title.text = wrap(text, max(8, int(length / char_px)))


def _axes(fig: go.Figure) -> list:
    return [*fig.select_xaxes(), *fig.select_yaxes()]


def _subplot_title_px(fig: go.Figure, font_px: float) -> float:
    """Height of the tallest annotation drawn right above a plot (subplot titles), 0 if none."""
    tallest = 0.0
    for a in fig.layout.annotations or ():
        if a.yref == "paper" and a.y is not None and a.y >= 0.999 and a.yanchor == "bottom":
            size = (a.font.size if a.font and a.font.size else font_px) * LINE
            tallest = max(tallest, n_lines(a.text) * size + 4)
    return tallest


def _fit_colorbars(fig: go.Figure, plot_h: float, font_px: float, scale: float) -> None:
    """Every colour bar: its title on top of the bar, ticks as many as its height holds."""
    for trace in fig.data:
        holders = [trace] if "colorbar" in trace and trace.showscale is not False else []
        marker = getattr(trace, "marker", None)
        if marker is not None and "colorbar" in marker and marker.showscale is not False:
            if marker.colorbar.to_plotly_json():  # a marker's colour bar only where the builder drew one
                holders.append(marker)
        for holder in holders:
            bar = holder.colorbar
            length = (bar.len if bar.len is not None else 1.0) * max(plot_h, 40)
            title = bar.title.text if bar.title is not None else None
            title = wrap(title, COLORBAR_TITLE_CHARS) if title else None
            holder.colorbar.update(
                title=dict(text=title, side="top", font=dict(size=round(12 * scale))) if title else None,
                thickness=12,
                nticks=tick_count(length - n_lines(title) * LINE * 12 * scale, font_px, most=6),
                outlinewidth=0,
                xpad=6,
            )


def _fit_vertical_ticks(fig: go.Figure, plot_h: float, font_px: float) -> None:
    """Vertical axes without explicit ticks: at most as many ticks as their share of the height holds."""
    for axis in fig.select_yaxes():
        if axis.visible is False or axis.overlaying or axis.type == "category":
            continue
        if axis.tickvals is not None or axis.dtick is not None or axis.nticks is not None:
            continue
        domain = axis.domain if axis.domain is not None else (0.0, 1.0)
        axis.nticks = tick_count((domain[1] - domain[0]) * max(plot_h, 40), font_px)
