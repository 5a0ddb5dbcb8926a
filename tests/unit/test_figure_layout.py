"""The one figure layout (backend/plots/layout.py, issue 26 "fit to present"), on figures alone:
the toolbar's band, title and legend placed in container pixels, colour bar titles on top, tick
counts by pixel height; and the pure pieces of the Explore page it goes with (question header,
text box at the start, the token-colour key). The browser check is tests/browser/test_fit_to_present.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from plotly.subplots import make_subplots

from app import state
from backend.plots import claims, figures, layout, proxy, text


def _tokens(n: int = 40, p_max: float = 2.2e-5) -> pd.DataFrame:
    cuts = np.arange(n + 1)
    return pd.DataFrame(
        {
            "cut": cuts,
            "progress": cuts / n,
            "loss": 10.6 + 0.02 * np.cos(cuts / 5),
            "p_answer": np.linspace(p_max / 2, p_max, n + 1),
            "token": ["t"] * (n + 1),
            "after_answer_seen": cuts > n * 0.6,
            "reflection": [""] * (n + 1),
        }
    )


def _steps(n: int = 40, k: int = 8) -> pd.DataFrame:
    ends = np.linspace(n / k, n, k).astype(int)
    starts = np.concatenate([[0], ends[:-1]])
    return pd.DataFrame({"start": starts, "end": ends, "text": [f"step {i} " for i in range(k)]})


def test_wrap_breaks_at_spaces_and_counts_what_a_reader_sees():
    assert layout.wrap("relative change at the word ÷ matched ordinary windows", 20) == (
        "relative change at<br>the word ÷ matched<br>ordinary windows"
    )
    assert layout.wrap("L<sub>q</sub> (nats)", 10) == "L<sub>q</sub> (nats)"  # 9 characters seen
    assert layout.wrap("unbreakable-word", 4) == "unbreakable-word"
    assert layout.n_lines("a<br>b<br/>c") == 3 and layout.n_lines(None) == 0


def test_tick_counts_follow_the_pixels_an_axis_has():
    assert layout.tick_count(40, 13) == 2  # the p(answer) panel at 1280x720: two labels, not five
    assert layout.tick_count(300, 13) == 8
    assert layout.tick_count(100, 13) == 3
    axis = go.layout.YAxis(nticks=layout.tick_count(120, 13))
    layout.integer_ticks(axis, 30)
    assert axis.dtick == 8 and axis.tick0 == 0  # 30 layers in 120 px: every 8th
    assert layout.nice_floor(2.27e-5) == 2e-5 and layout.nice_floor(0.7) == 0.5 and layout.nice_floor(0) == 0


def test_title_and_legend_sit_below_the_toolbar_band_in_container_pixels():
    fig = go.Figure([go.Scatter(x=[0, 1], y=[0, 1], name="a"), go.Scatter(x=[0, 1], y=[1, 0], name="b")])
    layout.fit(fig, height=400, title="A title", subtitle="what it shows")
    lay = fig.layout
    assert lay.title.yref == "container" and lay.title.automargin is True
    assert lay.title.y == pytest.approx(1 - layout.MODEBAR_H / 400)  # under the toolbar's band
    assert lay.title.subtitle.text == "what it shows"
    # the legend right on top of the plot: plotly stacks it under the title's reserved height
    assert (lay.legend.yref, lay.legend.y, lay.legend.yanchor, lay.legend.orientation) == ("paper", 1, "bottom", "h")
    assert lay.margin.t == layout.MODEBAR_H  # plotly reserves the real title and legend heights on top
    bare = layout.fit(go.Figure([go.Scatter(y=[0, 1], name="a"), go.Scatter(y=[1, 0], name="b")]), height=400)
    assert bare.layout.legend.yref == "container" and bare.layout.legend.yanchor == "top"
    assert bare.layout.legend.y == pytest.approx(1 - layout.MODEBAR_H / 400)  # under the toolbar's band


def test_subplot_titles_move_the_legend_under_the_plot():
    fig = make_subplots(rows=1, cols=2, subplot_titles=("left", "right"))
    fig.add_trace(go.Scatter(x=[0], y=[0], name="a"), 1, 1)
    fig.add_trace(go.Scatter(x=[0], y=[0], name="b"), 1, 2)
    layout.fit(fig, height=300, title="Two panels")
    assert fig.layout.legend.y == 0 and fig.layout.legend.yanchor == "bottom"
    assert fig.layout.title.pad.b > 10  # room for the subplot titles under the figure title


def test_colour_bars_get_their_title_on_top_and_ticks_by_height():
    fig = go.Figure(go.Heatmap(z=[[1, 2], [3, 4]], colorbar=dict(title=dict(text="lens L̂ (nats)"))))
    layout.fit(fig, height=230)
    bar = fig.data[0].colorbar
    assert bar.title.side == "top" and bar.title.text == "lens L̂<br>(nats)"  # about as wide as the bar
    assert 2 <= bar.nticks <= 4


def test_loss_figure_keeps_its_short_p_panel_to_two_labels_and_drops_it_when_too_short():
    fig = figures.loss_descent_figure(_tokens(), _steps(), height=300, alpha=0.05)
    assert fig.layout.yaxis2.nticks == 2
    assert list(fig.layout.yaxis2.tickvals) == [0.0, 2e-5]
    assert fig.layout.legend.yref == "container" and fig.layout.legend.yanchor == "top"
    tall = figures.loss_descent_figure(_tokens(), _steps(), height=700, alpha=0.05)
    assert tall.layout.yaxis2.tickvals is None and tall.layout.yaxis2.nticks > 2
    short = figures.loss_descent_figure(_tokens(), _steps(), height=229, alpha=0.05)
    assert "p(answer)" not in [t.name for t in short.data] and not [
        a for a in short.select_yaxes() if a.title.text == "p(answer)"
    ]
    assert "p(answer)" in short.data[0].hovertemplate  # still in the hover of every point


def test_lens_heatmap_labels_whole_layers_as_many_as_fit():
    rows = [
        dict(boundary=b, layer=layer, nll=float(b + layer), p_answer=0.1, top_tokens=["a"], top_probs=[0.5])
        for b in range(40)
        for layer in range(30)
    ]
    fig = figures.lens_heatmap_figure(pd.DataFrame(rows), height=229)
    assert fig.layout.yaxis.dtick >= 4 and fig.layout.yaxis.tick0 == 0  # 30 layers in a short chart
    assert fig.layout.xaxis.dtick is None and fig.layout.xaxis.tickformat == "d"  # plotly counts by width
    small = figures.lens_heatmap_figure(pd.DataFrame([r for r in rows if r["boundary"] < 9 and r["layer"] < 4]))
    assert small.layout.xaxis.dtick == 1 and small.layout.yaxis.dtick == 1


def test_compare_figures_put_their_notes_in_the_subtitle_and_the_legend_under_the_title():
    curve = proxy.CompareCurve("k", "✓ run · tiny", np.linspace(0, 1, 5), np.ones(5), np.zeros(5, bool), True)
    loss = proxy.compare_loss_figure([curve])
    assert "end marker" in loss.layout.title.subtitle.text and not loss.layout.annotations
    paths = proxy.compare_paths_figure(
        [np.random.default_rng(0).normal(size=(4, 2))], [np.ones(4)], ["✓ run · tiny"], [True], title="Paths " * 20
    )
    assert paths.layout.legend.yref == "paper" and "<br>" in paths.layout.title.text  # legend under the title


def test_reflection_forest_wraps_its_long_axis_title():
    words = pd.DataFrame(
        {
            "word": ["all words", "wait"],
            "n_matched": [3, 2],
            "ratio": [1.2, 1.5],
            "ratio_low": [1, 1.1],
            "ratio_high": [2, 2],
        }
    )
    fig = claims.reflection_forest_figure(words)
    assert all(len(line) <= 40 for line in fig.layout.xaxis.title.text.split("<br>"))


def test_question_header_is_whole_and_escaped():
    from app.panels.header import question_html

    q = "What is 2 < 3? " * 30
    for present in (False, True):
        out = question_html(q, present)
        assert "…" not in out and out.count("2 &lt; 3?") == 60  # whole: in the text and on hover
    assert 'class="raml-title present"' in question_html(q, True)


def test_layout_counts_the_lines_the_question_wraps_into():
    assert state.question_lines(40, 1080, True) == 1
    assert state.question_lines(150, 720, True) == 2  # the sample question at 1280x720
    assert state.question_lines(5000, 900, False) == state.QUESTION_LINES  # clamped (the rest on hover)
    short = state.explore_layout(720, True, 40)
    long = state.explore_layout(720, True, 600)
    assert long.chart_h < short.chart_h  # a longer question leaves the views less height
    assert state.explore_layout(900, False) == state.explore_layout(900, False, 0)


def test_text_box_starts_at_its_beginning_at_the_start_and_in_the_browser():
    steps, refl = _steps(), []
    assert 'class="raml-traj from-top"' in text.trajectory_html(steps, refl, 0)
    assert 'class="raml-traj from-top"' in text.trajectory_html(steps, refl, 3, every_step=True)
    assert 'class="raml-traj"' in text.trajectory_html(steps, refl, 3)  # server-drawn: its bottom


def test_token_colour_key_says_what_the_colours_mean():
    key = text.token_delta_legend_html(_tokens())
    assert "L̂ fell" in key and "L̂ rose" in key and "nats" in key
    assert f"{text.token_delta_scale(_tokens()):.2g}" in key
    sparse = _tokens().iloc[::2]
    assert "every cut point" in text.token_delta_legend_html(sparse)


def test_nearby_reflection_labels_go_to_opposite_sides():
    sides = figures.reflection_label_sides(np.array([0.26, 0.30, 0.8]), np.array([10.618, 10.622, 10.62]))
    assert sides[:2] == ["bottom center", "top center"]  # "Wait" under its point, "let me check" over its
    assert figures.reflection_label_sides(np.array([0.5]), np.array([1.0])) == ["top center"]
