"""Pure pieces of the Explore page: layout sizes, settings, panel marks, header, chips, token colours,
the one error display (AppTest), and the figure fixes of issue 14."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app import state


@pytest.fixture(scope="module")
def run(tiny_run):
    store, key = tiny_run
    return store.open(key)


# ----------------------------------------------------------------------------- layout and settings
@pytest.mark.parametrize(("viewport_h", "present"), [(900, False), (1080, False), (720, True), (1080, True)])
def test_layout_fills_the_window_and_leaves_room_for_the_fixed_parts(viewport_h, present):
    layout = state.explore_layout(viewport_h, present)
    overhead = viewport_h - 2 * layout.chart_h
    assert 230 <= overhead <= 330  # header, controls, two headings: measured in the browser tests
    assert layout.text_h < layout.chart_h  # the step card sits under the text in the same row
    bigger = state.explore_layout(viewport_h + 200, present)
    assert bigger.chart_h > layout.chart_h


def test_layout_clamps_silly_window_heights_and_defaults():
    assert state.explore_layout(None, False) == state.explore_layout(state.DEFAULT_VIEWPORT_H, False)
    assert state.explore_layout(10, False).viewport_h == state.MIN_VIEWPORT_H
    assert state.explore_layout(10**6, True).viewport_h == state.MAX_VIEWPORT_H
    assert state.explore_layout(1080, True).scale > state.explore_layout(720, True).scale


def test_umap_is_offered_only_for_paths_long_enough():
    assert state.projection_methods(state.MIN_UMAP_POINTS - 1) == ("pca",)
    assert state.projection_methods(state.MIN_UMAP_POINTS) == ("pca", "umap")


# ----------------------------------------------------------------------------- header, step card, text
def test_source_label_says_greedy_sampled_or_imported():
    from app.panels.header import source_label

    assert source_label("imported", {"temperature": 0.7}) == "imported trace"
    assert source_label("generated", {"temperature": 0.0, "seed": 3}) == "generated, greedy"
    sampled = {"temperature": 0.7, "top_p": 0.95, "seed": 3}
    assert source_label("generated", sampled) == "generated, sampled (T = 0.7, top-p 0.95, seed 3)"


def test_whitespace_chips_are_told_apart():
    from app.panels.step_card import visible_token

    assert visible_token("\n") != visible_token("\n ") and visible_token("\n ") == "⏎␣"
    assert visible_token(" the") == "␣the" and visible_token("") == "∅"


def test_step_card_escapes_and_shows_the_step(run):
    from app.panels.step_card import card_html

    html0, html2 = card_html(run, 0, None), card_html(run, 2, None)
    assert "Before any thinking" in html0 and 'id="raml-step-card"' in html0
    assert "<b>Step 2</b>" in html2 and f"{float(run.steps['delta_loss'].iloc[1]):+.3f}" in html2


def test_token_colours_follow_the_loss_change_of_each_token(run):
    from backend.plots.text import token_delta_html, token_deltas

    steps, tokens = run.steps, run.tokens
    per_step = token_delta_html(tokens, steps)
    assert len(per_step) == len(steps)
    deltas = token_deltas(tokens)
    loss = tokens.sort_values("cut")["loss"].to_numpy()
    assert np.allclose(deltas, loss[1:] - loss[:-1])
    titles = [t for s in per_step for t in s.split('title="ΔL̂ ')[1:]]
    assert len(titles) == int(run.meta["summary"]["n_tokens"])  # one span per trajectory token
    shown = np.array([float(t.split(" nats")[0]) for t in titles])
    assert np.allclose(shown, deltas, atol=6e-4)  # in trajectory order, step after step
    blue = [s for s in "".join(per_step).split("<span")[1:] if "37, 99, 235" in s]
    assert len(blue) == int((deltas < 0).sum())  # falling loss = blue, rising = red


def test_every_step_mode_holds_the_window_and_names_the_far_future(run):
    from backend.plots.text import text_window, trajectory_html

    out = trajectory_html(run.steps, [], 1, future_chars=20, every_step=True)
    lo, hi = text_window([len(t) for t in run.steps["text"]], 1, future_chars=20)
    assert out.count('class="raml-step ') == hi - lo + 1 < len(run.steps)  # the window the browser re-renders
    assert f"… {len(run.steps) - hi} more step" in out and 'class="raml-more hidden" id="raml-before"' in out
    assert 'id="raml-earlier"' in out  # present (hidden) for the browser to fill


# ----------------------------------------------------------------------------- stepper payload
def test_marks_cover_every_boundary_of_every_view(tiny_run, monkeypatch):
    from app import data
    from app.panels import path as path_panel
    from app.panels.common import View
    from app.stepper import cursor_marks_at
    from app.views import explore
    from backend.plots import figures, fill
    from backend.plots.step_card import card_html

    store, key = tiny_run
    monkeypatch.setenv("RAML_CACHE_DIR", str(store.root))
    run = data.load_run(data.get_store(), key)
    n = len(run.steps)
    view = View(
        store=data.get_store(),
        run=run,
        key=key,
        n_steps=n,
        layer=data.available_layers(data.get_store(), key, "proxy")[0],
        space="proxy",
        settings=state.ExploreSettings(alpha=0.05),
        layout=state.explore_layout(900, False),
        present=False,
        proxy_ok=True,
    )
    marks = explore._marks(view)
    assert marks["labels"] == [figures.step_label(b, n) for b in range(n + 1)]
    card = marks["fill"]["raml-step-card"]  # the card as a template + values: each boundary's is card_html's
    assert fill.n_boundaries(card) == n + 1 and len(marks["text"]["chars"]) == n
    geometry = path_panel.geometry(view)  # what the server's own card (step_card.draw) reads
    assert geometry is not None
    assert [fill.html_at(card, b) for b in range(n + 1)] == [card_html(run, b, geometry) for b in range(n + 1)]
    kinds = {c["kind"]: c for c in marks["charts"]}
    assert set(kinds) == {"vline", "ring", "column"} and all(len(c["x"]) == n + 1 for c in kinds.values())
    at3 = cursor_marks_at(marks, 3)
    n_tokens = run.meta["summary"]["n_tokens"]
    assert at3["loss_x"] == pytest.approx(run.steps["end"].iloc[2] / n_tokens) and at3["path_xy"] is not None


# ----------------------------------------------------------------------------- one error display
def _errors_page():
    from app import ui
    from backend.errors import InputError

    def user_mistake():
        raise InputError("questions.jsonl:3: field 'answer' is empty")

    def bug():
        raise ZeroDivisionError("division by zero in the thing")

    ui.guard(user_mistake)
    ui.guard(bug)


def test_one_error_display_user_errors_one_line_bugs_with_traceback():
    at = AppTest.from_function(_errors_page, default_timeout=120).run()  # a deadline, not a timing
    assert not at.exception
    assert at.error[0].value == "questions.jsonl:3: field 'answer' is empty"
    assert "a bug" in at.error[1].value and "ZeroDivisionError" in at.error[1].value
    assert len(at.expander) == 1 and "Traceback" in at.expander[0].code[0].value  # only the bug has details


# ----------------------------------------------------------------------------- figure fixes (issue 14 item 8)
def test_lens_p_answer_colours_span_this_runs_range(run):
    from backend.plots import figures

    heat = figures.lens_heatmap_figure(run.lens, value="p_answer").data[0]
    z = np.asarray(heat.z, dtype=float)
    assert heat.zmin == pytest.approx(np.nanmin(z)) and heat.zmax == pytest.approx(np.nanmax(z))


def test_path_start_is_a_filled_clickable_marker_clear_of_the_ring():
    from backend.plots import figures

    coords = np.array([[0.0, 0.0], [1.0, 0.5], [2.0, 0.0]])
    fig = figures.path_figure(coords, np.array([3.0, 2.0, 1.0]))
    start = [t for t in fig.data if t.name == "start"][0]
    assert list(start.customdata) == [0] and start.marker.symbol == "square" and start.marker.size > 0
    boundary = [t for t in fig.data if t.name == "boundary"][0]
    assert boundary.marker.size[0] == 0  # no empty arrow under the start square
    assert all(abs(a.yshift) >= 20 for a in fig.layout.annotations)  # labels clear of the 26 px ring
