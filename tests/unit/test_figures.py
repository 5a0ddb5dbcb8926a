"""Figure builders, text view and URL-state parsing, checked on data alone (no browser, no Streamlit)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from app import state
from backend.plots import figures
from backend.plots import text as text_view


@pytest.fixture(scope="module")
def run(tiny_run):
    store, key = tiny_run
    return store.open(key)


def _trace(fig, name):
    matches = [t for t in fig.data if t.name == name]
    assert matches, f"no trace named {name!r} in {[t.name for t in fig.data]}"
    return matches[0]


def _cursor_shape(fig):
    shapes = [s for s in fig.layout.shapes if s.name == "cursor"]
    assert len(shapes) == 1
    return shapes[0]


# ----------------------------------------------------------------------------- EMA
def test_ema_matches_recurrence_and_edge_cases():
    x = np.array([4.0, 2.0, 3.0, 1.0])
    out = figures.ema(x, 0.5)
    assert out.tolist() == pytest.approx([4.0, 3.0, 3.0, 2.0])
    assert figures.ema(x, 1.0).tolist() == pytest.approx(x.tolist())
    assert figures.ema(np.full(50, 2.5), 0.01) == pytest.approx(np.full(50, 2.5))
    with pytest.raises(ValueError, match="alpha"):
        figures.ema(x, 0.0)


def test_default_alpha_is_larger_for_short_runs():
    assert figures.default_ema_alpha(299) == 0.05
    assert figures.default_ema_alpha(300) == 0.01


# ----------------------------------------------------------------------------- loss descent
def test_loss_figure_plots_raw_ema_and_p_answer(run):
    fig = figures.loss_descent_figure(run.tokens, run.steps, cursor=2, alpha=0.2)
    raw = _trace(fig, "L̂ per token")
    smooth = _trace(fig, "EMA (α = 0.2)")
    assert np.allclose(raw.y, run.tokens["loss"]) and np.allclose(raw.x, run.tokens["progress"])
    assert np.allclose(smooth.y, figures.ema(run.tokens["loss"].to_numpy(), 0.2))
    assert smooth.line.width > raw.line.width  # EMA bold, raw thin
    p = _trace(fig, "p(answer)")
    assert np.allclose(p.y, run.tokens["p_answer"])
    assert "nats" in fig.layout.yaxis.title.text
    assert "progress" in fig.layout.xaxis2.title.text


def test_loss_cursor_sits_on_the_boundary_and_moves(run):
    n = int(run.meta["summary"]["n_tokens"])
    ends = run.steps["end"].tolist()
    fig2 = figures.loss_descent_figure(run.tokens, run.steps, cursor=2, alpha=0.05)
    fig3 = figures.loss_descent_figure(run.tokens, run.steps, cursor=3, alpha=0.05)
    assert _cursor_shape(fig2).x0 == pytest.approx(ends[1] / n)
    assert _cursor_shape(fig3).x0 == pytest.approx(ends[2] / n)
    figures.set_loss_cursor(fig2, 0.0)  # moving replaces the line, never adds a second one
    assert _cursor_shape(fig2).x0 == 0.0


def test_loss_step_ticks_and_reflection_markers(run):
    fig = figures.loss_descent_figure(run.tokens, run.steps, cursor=None)
    xs = figures.rug_positions(fig)  # one tick per boundary, in one path shape (not a trace)
    n = int(run.meta["summary"]["n_tokens"])
    expected = np.concatenate([[0], run.steps["end"].to_numpy()]) / n
    assert np.allclose(xs, expected)
    assert _trace(fig, "step boundary").x == (None,)  # the legend's key only
    assert fig.layout.shapes[0].yref == "y3" and fig.layout.yaxis3.range == (0, 1)
    flagged = run.tokens[run.tokens["reflection"] != ""]
    assert len(flagged) >= 2  # SAMPLE_TRAJECTORY has "Wait", "However", "Hmm"
    marks = _trace(fig, "reflection word")
    assert np.allclose(marks.x, flagged["progress"]) and list(marks.text) == flagged["reflection"].tolist()


def test_after_answer_region_is_shaded_not_dropped():
    tokens = pd.DataFrame(
        {
            "cut": np.arange(5),
            "progress": np.arange(5) / 4,
            "loss": [3.0, 2.5, 2.0, 1.0, 0.5],
            "p_answer": [0.1, 0.2, 0.3, 0.5, 0.6],
            "token": ["", "a", "b", "6", "c"],
            "after_answer_seen": [False, False, False, True, True],
            "reflection": [""] * 5,
        }
    )
    steps = pd.DataFrame({"end": [2, 4], "text": ["ab", "6c"], "start": [0, 2]})
    fig = figures.loss_descent_figure(tokens, steps, cursor=1)
    assert len(_trace(fig, "L̂ per token").y) == 5  # every cut point is still plotted
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert rects and all(s.x0 == pytest.approx(0.75) for s in rects)
    tokens["after_answer_seen"] = False
    fig = figures.loss_descent_figure(tokens, steps, cursor=1)
    assert not [s for s in fig.layout.shapes if s.type == "rect"]


# ----------------------------------------------------------------------------- path
def test_path_figure_colours_by_loss_and_marks_cursor():
    coords = np.array([[0.0, 0.0], [1.0, 0.5], [2.0, 0.0], [2.5, -1.0]])
    loss = np.array([4.0, 3.0, 3.5, 1.0])
    fig = figures.path_figure(coords, loss, cursor=2, axis_titles=("PC1 (50% of variance)", "PC2 (20%)"))
    points = _trace(fig, "boundary")
    assert np.allclose(points.marker.color, loss)
    assert points.marker.colorscale == tuple(tuple(c) for c in figures.LOSS_COLORSCALE)
    assert points.marker.colorbar.title.text == "L̂ (nats)"
    assert list(points.customdata) == [0, 1, 2, 3]  # click -> boundary index
    assert points.marker.symbol[1] == "arrow" and points.marker.angleref == "previous"
    cursor = _trace(fig, "cursor")
    assert (cursor.x[0], cursor.y[0]) == (2.0, 0.0)
    figures.set_path_cursor(fig, coords, 3)
    assert len([t for t in fig.data if t.name == "cursor"]) == 1 and _trace(fig, "cursor").x[0] == 2.5
    assert fig.layout.xaxis.title.text.startswith("PC1")
    lo, hi = fig.layout.xaxis.range
    assert lo < 0.0 and hi > 2.5  # padded so no arrow is clipped


def test_two_point_path_has_no_femto_ticks():
    """PCA of two points has one direction: the second coordinate is rounding noise (±1e-16);
    its axis must span like the other one (ticks 0, ±0.5), not ±1e-15 ("1f / −1f")."""
    coords = np.array([[-0.7, 1.2e-16], [0.7, -0.9e-16]])
    fig = figures.path_figure(coords, np.array([3.0, 2.0]), cursor=0, axis_titles=("PC1", "PC2"))
    (xlo, xhi), (ylo, yhi) = fig.layout.xaxis.range, fig.layout.yaxis.range
    assert xlo < -0.7 and xhi > 0.7
    assert yhi - ylo == pytest.approx(xhi - xlo, rel=0.05) and ylo < 0.0 < yhi
    assert abs(ylo + yhi) < 1e-12  # centred on 0: the noise is not a position


def test_path_ranges_of_a_real_path_pad_the_data():
    coords = np.array([[0.0, 0.0], [1.0, 1e-3], [2.0, -2e-3]])  # small but real spread on y
    (xlo, xhi), (ylo, yhi) = figures.path_ranges(coords)
    assert xlo < 0.0 and xhi > 2.0 and ylo < -2e-3 and 1e-3 < yhi < 0.01


def test_path_figure_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\[B, 2\]"):
        figures.path_figure(np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ValueError):
        figures.path_figure(np.zeros((3, 2)), np.zeros(4))


# ----------------------------------------------------------------------------- lens
def test_lens_heatmap_grid_hover_and_cursor(run):
    lens = run.lens
    L, B = int(lens["layer"].max()) + 1, int(lens["boundary"].max()) + 1
    fig = figures.lens_heatmap_figure(lens, cursor=1)
    heat = fig.data[0]
    z = np.asarray(heat.z)
    assert z.shape == (L, B)
    row = lens[(lens["layer"] == 2) & (lens["boundary"] == 3)].iloc[0]
    assert z[2, 3] == pytest.approx(row["nll"], rel=1e-6)
    assert (
        str(row["top_tokens"][0]).strip() in heat.customdata[2][3]
        or repr(str(row["top_tokens"][0]))[1:-1] in heat.customdata[2][3]
    )
    assert heat.colorscale == tuple(tuple(c) for c in figures.LOSS_COLORSCALE)
    assert "nats" in heat.colorbar.title.text
    rect = _cursor_shape(fig)
    assert (rect.x0, rect.x1) == (0.5, 1.5)
    p_fig = figures.lens_heatmap_figure(lens, cursor=0, value="p_answer")
    assert p_fig.data[0].reversescale and np.asarray(p_fig.data[0].z)[2, 3] == pytest.approx(row["p_answer"], rel=1e-6)
    with pytest.raises(ValueError):
        figures.lens_grid(lens, "rank")


def test_figures_serialize_to_json(run):
    for fig in (
        figures.loss_descent_figure(run.tokens, run.steps, cursor=1),
        figures.lens_heatmap_figure(run.lens, cursor=1),
        figures.path_figure(
            np.random.default_rng(0).normal(size=(len(run.steps) + 1, 2)),
            figures.boundary_losses(run.tokens, run.steps),
            cursor=1,
        ),
    ):
        assert json.loads(fig.to_json())["data"]


# ----------------------------------------------------------------------------- text view
def test_trajectory_html_highlights_current_step_and_dims_others(run):
    steps, refl = run.steps, run.meta["reflections"]
    html2 = text_view.trajectory_html(steps, refl, 2, future_chars=10**6)
    current = html2.split('id="raml-current">')[1].split("</span>")[0]
    assert steps["text"].iloc[1].strip()[:20] in current.replace("&#x27;", "'")
    assert html2.count('class="raml-step past"') == 1
    assert html2.count('class="raml-step future"') == len(steps) - 2
    assert html2.count('class="raml-refl"') == len(refl)  # every reflection word marked
    html0 = text_view.trajectory_html(steps, refl, 0)
    assert 'id="raml-current"' not in html0 and "before any thinking" in html0


def test_trajectory_html_escapes_and_truncates_future():
    steps = pd.DataFrame({"text": ["<script>alert(1)</script> ", "Wait, 2 < 3. ", "x" * 500, "tail"]})
    refl = [{"word": "Wait", "char_start": len(steps["text"][0])}]
    out = text_view.trajectory_html(steps, refl, 1, future_chars=50)
    assert "<script>alert" not in out and "&lt;script&gt;" in out
    assert "2 &lt; 3" in out and '<mark class="raml-refl" title="reflection word">Wait</mark>' in out
    assert "… 1 more step" in out and "tail" not in out


# ----------------------------------------------------------------------------- URL state
@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("../../etc/passwd", "is not a run key"),
        ("/etc/passwd", "is not a run key"),
        ("ABCDEF0123456789ABCDEF0123456789", "is not a run key"),
        ("a" * 500, "too long"),
    ],
)
def test_parse_query_refuses_bad_run_keys(raw, fragment):
    parsed = state.parse_query({"run": raw})
    assert parsed.run is None and any(fragment in w for w in parsed.warnings)


def test_parse_query_reads_valid_state_and_flags_bad_values():
    key = "0123456789abcdef0123456789abcdef"
    ok = state.parse_query({"run": key, "step": "4", "layer": "2", "space": "hidden", "present": "1"})
    assert (ok.run, ok.step, ok.layer, ok.space, ok.present, ok.warnings) == (key, 4, 2, "hidden", True, [])
    bad = state.parse_query({"step": "four", "layer": "1.5", "space": "weights"})
    assert bad.step is None and bad.layer is None and bad.space == "proxy"
    assert len(bad.warnings) == 3
    assert state.parse_query({"step": ["1", "7"]}).step == 7  # repeated parameter: last wins


def test_resolvers_fall_back_with_a_message():
    keys = ["a" * 32, "b" * 32]
    assert state.resolve_run(None, keys, keys[1]) == (keys[1], None)
    chosen, warning = state.resolve_run("c" * 32, keys, None)
    assert chosen == keys[0] and "No run" in warning
    assert state.clamp_step(3, 5) == (3, None)
    step, warning = state.clamp_step(99, 5)
    assert step == 5 and "out of range" in warning
    assert state.clamp_step(-2, 5)[0] == 0
    assert state.resolve_layer(None, [0, 7, 14, 22, 29], "proxy") == (14, None)
    layer, warning = state.resolve_layer(3, [0, 7, 14], "proxy")
    assert layer == 7 and "not stored" in warning


def test_long_path_thins_its_arrows_but_every_boundary_hovers_and_clicks():
    """Issue 23: 1,501 arrows cost plotly.js ~380 ms a draw; a long path draws an arrow at every
    k-th boundary (and the last), while its line carries every boundary's hover and click."""
    B = 1501
    rng = np.random.default_rng(0)
    coords, loss = rng.normal(size=(B, 2)).cumsum(axis=0), np.linspace(4.0, 1.0, B)
    fig = figures.path_figure(coords, loss, cursor=750, step_texts=[f"text {b}" for b in range(B)])
    every = figures.path_arrow_stride(B)
    assert every == 5 and fig.layout.meta["arrows_every"] == every
    arrows = _trace(fig, "boundary")
    shown = np.asarray(arrows.customdata)
    assert len(shown) <= figures.MAX_PATH_ARROWS + 1 and shown[-1] == B - 1
    assert np.array_equal(shown[:-1], np.arange(0, B, every)[: len(shown) - 1])
    assert np.allclose(arrows.x, coords[shown, 0]) and np.allclose(arrows.marker.color, loss[shown])
    assert (arrows.marker.cmin, arrows.marker.cmax) == (1.0, 4.0)  # the colour scale of every boundary
    line = _trace(fig, "path")
    assert list(line.customdata) == list(range(B)) and line.hoverinfo is None
    assert "step 751: text 751" in line.text[751] and "L̂ = " in line.text[751]
    full = figures.path_figure(coords, loss, max_arrows=None)  # drawn on the server: every arrow
    assert len(_trace(full, "boundary").customdata) == B and _trace(full, "path").hoverinfo == "skip"
    short = figures.path_figure(coords[:301], loss[:301])  # 300 steps: every arrow, the line silent
    assert figures.path_arrow_stride(301) == 1 and len(_trace(short, "boundary").customdata) == 301
    assert _trace(short, "path").hoverinfo == "skip" and not short.layout.meta


def test_data_revision_follows_the_traces_not_the_layout(run):
    from backend.plots import revision

    fig = revision.stamp(figures.loss_descent_figure(run.tokens, run.steps, cursor=None))
    again = revision.stamp(figures.loss_descent_figure(run.tokens, run.steps, cursor=None))
    assert fig.layout.datarevision == again.layout.datarevision and len(fig.layout.datarevision) == 16
    figures.set_loss_cursor(again, 0.5)  # a layout change: the browser keeps its data
    assert revision.data_revision(again) == fig.layout.datarevision
    other = revision.stamp(figures.loss_descent_figure(run.tokens, run.steps, cursor=None, alpha=0.2))
    assert other.layout.datarevision != fig.layout.datarevision  # another EMA: new data, redrawn
    coords = np.random.default_rng(1).normal(size=(len(run.steps) + 1, 2))
    losses = figures.boundary_losses(run.tokens, run.steps)
    path = revision.stamp(figures.path_figure(coords, losses, cursor=1))
    moved = revision.stamp(figures.set_path_cursor(go.Figure(path), coords, 2))  # the server moved the ring
    assert moved.layout.datarevision != path.layout.datarevision
