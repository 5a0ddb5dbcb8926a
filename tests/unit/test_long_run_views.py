"""Explore's views at research length (issue 23): decimated curves exact where it matters, binned
grids that name their bins, a text window of bounded size, and the stepper's marks of the
synthetic 30,000-token, 1,500-step run (``tests/long_run.py``, the session's ``long_run``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from backend.plots import binning, figures
from backend.plots import importance as importance_plots
from backend.plots import text as text_view


# ----------------------------------------------------------------------------- pure helpers
def test_minmax_decimation_keeps_every_extreme_and_every_asked_index():
    rng = np.random.default_rng(0)
    values = rng.normal(size=30_001)
    values[12_345], values[20_000] = 50.0, -50.0  # spikes one token wide
    keep = [7, 1_000, 29_999]
    drawn = binning.decimate_minmax(values, buckets=800, keep=keep)
    assert len(drawn) <= 4 * 800 + len(keep) and np.all(np.diff(drawn) > 0)
    assert {0, 30_000, 12_345, 20_000, *keep} <= set(drawn.tolist())
    edges = np.linspace(0, len(values), 801).astype(int)
    for a, b in zip(edges[:-1], edges[1:]):  # every bucket's envelope is drawn
        block = drawn[(drawn >= a) & (drawn < b)]
        assert values[block].min() == values[a:b].min() and values[block].max() == values[a:b].max()
    assert np.array_equal(binning.decimate_minmax(values[:3000], buckets=800), np.arange(3000))  # short: whole


def test_bins_cover_every_column_once_and_keep_the_strongest_sign():
    edges = binning.bin_edges(1501, binning.bin_width(1501))
    assert binning.bin_width(1501) == 8 and edges[0] == 0 and edges[-1] == 1501 and len(edges) - 1 <= 200
    assert binning.bin_width(200) == 1
    grid = np.zeros((1, 20))
    grid[0, 3], grid[0, 5] = 0.4, -0.9
    value, column = binning.bin_strongest(grid, binning.bin_edges(20, 10))
    assert value[0, 0] == -0.9 and column[0, 0] == 5
    mean = binning.bin_mean(np.array([[1.0, np.nan, 3.0, 5.0]]), np.array([0, 2, 4]))
    assert mean.tolist() == [[1.0, 4.0]]


def test_text_window_is_bounded_at_every_boundary_and_holds_the_cursor():
    rng = np.random.default_rng(1)
    chars = rng.integers(5, 400, size=1500).tolist()
    widest = 0
    for b in range(0, 1501):
        lo, hi = text_view.text_window(chars, b)
        widest = max(widest, hi - lo + 1)
        assert 1 <= lo and hi <= 1500 and (b == 0 or lo <= b <= hi)
        if b > 1:
            assert lo < b  # some text before the current step
    assert widest <= text_view.MAX_PAST_STEPS + 1 + text_view.MAX_FUTURE_STEPS
    assert text_view.text_window([10] * 5, 3) == (1, 5)  # a short run: every step


def test_windowed_text_html_names_what_it_leaves_out():
    steps = pd.DataFrame({"text": [f"step {i} has some words. " * 8 for i in range(300)]})
    out = text_view.trajectory_html(steps, [], 150, every_step=True)
    lo, hi = text_view.text_window([len(t) for t in steps["text"]], 150)
    assert out.count('class="raml-step ') == hi - lo + 1 < 300
    assert f"… {lo - 1} earlier steps" in out and f"… {300 - hi} more steps" in out
    assert 'data-step="150" id="raml-current"' in out


# ----------------------------------------------------------------------------- the long run
@pytest.fixture(scope="module")
def long(long_run):
    store, key = long_run
    return store.open(key)


def test_long_run_has_research_shapes(long):
    assert long.n_tokens == 30_000 and len(long.steps) == 1_500 and len(long.tokens) == 30_001
    assert len(long.lens) == 1_501 * long.n_layers and long.n_layers == 30
    assert long.steps["text"].str.len().sum() == len(long.trajectory) and long.reflections
    assert (long.steps["start"].iloc[1:].to_numpy() == long.steps["end"].iloc[:-1].to_numpy()).all()


def test_loss_curve_is_decimated_but_exact_at_every_boundary(long):
    fig = figures.loss_descent_figure(long.tokens, long.steps)
    raw = fig.data[0]
    assert len(raw.x) < len(long.tokens) // 3 and fig.layout.meta["decimated"]["points"] == 30_001
    cuts = np.asarray(raw.customdata)[:, 0].astype(int)
    loss_at = long.tokens.set_index("cut")["loss"]
    assert set(figures.boundary_cuts(long.steps).tolist()) <= set(cuts.tolist())
    assert np.array_equal(np.asarray(raw.y), loss_at.loc[cuts].to_numpy())  # every drawn point is exact
    assert len(fig.data[-1].x) < len(long.tokens) // 3  # p(answer) too


def test_short_runs_are_drawn_whole(tiny_run):
    store, key = tiny_run
    run = store.open(key)
    fig = figures.loss_descent_figure(run.tokens, run.steps)
    assert len(fig.data[0].x) == len(run.tokens) and not fig.layout.meta
    heat = figures.lens_heatmap_figure(run.lens)
    assert len(heat.data[0].x) == len(run.steps) + 1


def test_lens_grid_is_binned_with_the_bin_range_on_hover_and_axis(long):
    fig = figures.lens_heatmap_figure(long.lens, cursor=700)
    heat = fig.data[0]
    z = np.asarray(heat.z)
    assert z.shape[0] == 30 and z.shape[1] <= binning.GRID_MAX_BINS and len(heat.x) == z.shape[1] + 1
    assert "bins of 8" in fig.layout.xaxis.title.text
    assert heat.customdata[0][0].startswith("boundaries 0–7 · layer 0")
    left, right = figures.lens_column_edges(1501)
    assert all(left[b] < b < right[b] for b in range(1501))
    cursor = [s for s in fig.layout.shapes if s.name == "cursor"][0]
    assert (cursor.x0, cursor.x1) == (left[700], right[700]) and right[700] - left[700] == 8
    full = long.lens[long.lens["layer"] == 5].sort_values("boundary")["nll"].to_numpy()
    assert z[5, 1] == pytest.approx(full[8:16].mean())


def test_importance_strip_is_binned_and_keeps_spikes(long, long_run):
    from backend.analysis.importance.stored import load_importance

    store, _ = long_run
    rows = importance_plots.strip_rows(1500, load_importance(long, store), None)
    fig = importance_plots.importance_strip(rows, long.steps["text"].tolist())
    z = np.asarray(fig.data[0].z)
    assert z.shape == (2, 188) and "bins of 8" in fig.layout.title.text
    assert fig.data[0].text[0][0].startswith("steps 1–8 · ablation")
    strongest = int(np.nanargmax(np.abs(rows["ablation"])))
    assert abs(z[0, strongest // 8]) == pytest.approx(1.0)  # the run's strongest step stays at full colour
    left, right = importance_plots.strip_column_edges(1500)
    assert len(left) == 1501 and all(left[s] < s < right[s] for s in range(1, 1501))


def test_explore_marks_of_the_long_run_stay_bounded(long_run, monkeypatch):
    from app import data, state
    from app.panels import path as path_panel
    from app.panels.common import View
    from app.views import explore
    from backend.plots import fill, step_card

    store, key = long_run
    monkeypatch.setenv("RAML_CACHE_DIR", str(store.root))
    run = data.load_run(data.get_store(), key)
    layers = data.available_layers(data.get_store(), key, "proxy")
    view = View(
        store=data.get_store(),
        run=run,
        key=key,
        n_steps=1500,
        layer=layers[len(layers) // 2],
        space="proxy",
        settings=state.ExploreSettings(alpha=0.01),
        layout=state.explore_layout(900, False),
        present=False,
        proxy_ok=True,
    )
    marks = explore._marks(view)
    text = marks["text"]
    assert len(text["html"]) == 1500 and len(text["window"]) == 1501
    assert max(hi - lo + 1 for lo, hi in text["window"]) <= text_view.MAX_PAST_STEPS + 1 + text_view.MAX_FUTURE_STEPS
    card = marks["fill"]["raml-step-card"]
    assert fill.n_boundaries(card) == 1501 and "<b>Step 700</b>" in fill.html_at(card, 700)
    assert fill.html_at(card, 700) == step_card.card_html(run, 700, path_panel.geometry(view))  # the server's card
    assert len(json.dumps(card)) < 400_000  # the fixed markup once, not 1,501 times (1.86 MB before)
    columns = [c for c in marks["charts"] if c["kind"] == "column"]
    assert len(columns) == 2 and all(len(c["x0"]) == 1501 for c in columns)  # lens and strip: binned
    assert len(json.dumps(marks)) < 8_000_000  # what the browser gets once per full rerun
