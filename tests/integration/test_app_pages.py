"""Streamlit AppTest checks of every page against caches holding real (tiny-model) runs."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


def _app(cache_root, monkeypatch, **params) -> AppTest:
    monkeypatch.setenv("RAML_CACHE_DIR", str(cache_root))
    at = AppTest.from_file(MAIN, default_timeout=60)
    for name, value in params.items():
        at.query_params[name] = value
    return at.run()


def _html(at) -> str:
    return "\n".join(h.value for h in at.html)


def _step_label(at) -> str:
    for h in at.html:
        if 'id="raml-step-label"' in h.value:
            return h.value.split(">", 1)[1].split("<", 1)[0]
    raise AssertionError("no step label on the page")


def _current_text(at) -> str | None:
    page = _html(at)
    if 'id="raml-current">' not in page:
        return None
    fragment = page.split('id="raml-current">', 1)[1].split("</span>", 1)[0]
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))  # the step's text, marks removed


def _chart_spec(at, key_suffix: str) -> dict:
    for el in at.get("plotly_chart"):
        if el.proto.id.endswith(key_suffix):
            return json.loads(el.proto.spec)
    raise AssertionError(f"no chart {key_suffix}")


def _spec_cursor(at, chart: str) -> dict | None:
    """The cursor shape drawn into a chart's figure (fallback mode), or None."""
    shapes = _chart_spec(at, chart)["layout"].get("shapes", [])
    found = [s for s in shapes if s.get("name") == "cursor"]
    return found[0] if found else None


def _payload(at) -> dict:
    """Cursor positions sent to the browser-side marks (app/stepper.py)."""
    return at.session_state["explore_cursor_payload"]


def _button(at, label: str):
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r} in {[b.label for b in at.button]}"
    return matches[0]


def _no_errors(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.fixture()
def cache(tiny_run):
    store, key = tiny_run
    return store, key, store.open(key)


@pytest.fixture()
def own_cache(tiny_run, tmp_path):
    """A private copy of the tiny cache, for tests that change it."""
    from backend.store.runs import RunStore

    store, key = tiny_run
    root = tmp_path / "cache"
    shutil.copytree(store.root, root, ignore=shutil.ignore_patterns("locks", "tmp"))
    return RunStore(root), key


# ----------------------------------------------------------------------------- Explore
def test_explore_opens_the_run_and_next_moves_every_view(cache, monkeypatch):
    store, key, run = cache
    n_steps, n_tokens = len(run.steps), run.meta["summary"]["n_tokens"]
    at = _app(store.root, monkeypatch)
    _no_errors(at)
    assert str(at.query_params["run"]).strip("[]'") == key
    assert _step_label(at).startswith("Start") and _current_text(at) is None
    assert _payload(at)["step"] == 0 and _payload(at)["loss_x"] == 0.0
    spec_before = _chart_spec(at, "explore_loss_chart")

    at.button(key="explore_next").click().run()
    _no_errors(at)
    assert _step_label(at) == f"Step 1 / {n_steps}"
    assert run.steps["text"].iloc[0].strip()[:15] in _current_text(at)
    payload = _payload(at)  # the cursor line, lens column and path ring move to boundary 1
    assert payload["step"] == 1 and payload["loss_x"] == pytest.approx(run.steps["end"].iloc[0] / n_tokens)
    assert payload["path_xy"] is not None and payload["loss_chart"] == "explore_loss_chart"
    assert _chart_spec(at, "explore_loss_chart") == spec_before  # charts are not re-sent per step
    assert str(at.query_params["step"]).strip("[]'") == "1"

    at.slider(key="explore_slider").set_value(4).run()
    _no_errors(at)
    assert _step_label(at) == f"Step 4 / {n_steps}"
    assert run.steps["text"].iloc[3].strip()[:15] in _current_text(at)
    assert _payload(at)["loss_x"] == pytest.approx(run.steps["end"].iloc[3] / n_tokens)
    at.button(key="explore_prev").click().run()
    assert _step_label(at) == f"Step 3 / {n_steps}"
    assert 'id="raml-step-card"' in _html(at) and "ΔL̂ over step" in _html(at)


def test_explore_fallback_draws_the_cursor_into_the_charts(cache, monkeypatch):
    """Without browser-side marks the figures carry the cursor line, column outline and ring."""
    store, key, run = cache
    monkeypatch.setenv("RAML_CACHE_DIR", str(store.root))
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.session_state["explore_redraw_charts"] = True
    at.query_params["run"] = key
    at.run()
    _no_errors(at)
    x0 = _spec_cursor(at, "explore_loss_chart")["x0"]
    lens0 = _spec_cursor(at, "explore_lens_chart")["x0"]
    at.button(key="explore_next").click().run()
    _no_errors(at)
    assert (
        _spec_cursor(at, "explore_loss_chart")["x0"]
        == pytest.approx(run.steps["end"].iloc[0] / run.meta["summary"]["n_tokens"])
        != x0
    )
    assert _spec_cursor(at, "explore_lens_chart")["x0"] == lens0 + 1
    ring = [t for t in _chart_spec(at, "explore_path_chart")["data"] if t.get("name") == "cursor"]
    assert ring and ring[0]["customdata"] == [1]


def test_explore_restores_state_from_the_url(cache, monkeypatch):
    store, key, run = cache
    at = _app(store.root, monkeypatch, run=key, step="3", space="hidden", layer="2")
    _no_errors(at)
    assert not at.warning, [w.value for w in at.warning]
    assert _step_label(at) == f"Step 3 / {len(run.steps)}"
    assert run.steps["text"].iloc[2].strip()[:15] in _current_text(at)
    assert at.radio(key="explore_space").value == "hidden"
    assert at.selectbox(key="explore_layer").value == 2
    assert "layer 2" in _html(at)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"run": "../../etc/passwd"}, "is not a run key"),
        ({"run": "f" * 32}, "No run"),
        ({"run": "x" * 400}, "too long"),
        ({"step": "999"}, "out of range"),
        ({"step": "-3"}, "out of range"),
        ({"step": "two"}, "not a whole number"),
        ({"layer": "77"}, "not stored"),
        ({"space": "weights"}, "not one of proxy, hidden"),
    ],
)
def test_explore_bad_url_parameters_warn_and_fall_back(cache, monkeypatch, params, message):
    store, key, run = cache
    at = _app(store.root, monkeypatch, **params)
    _no_errors(at)
    warnings = [w.value for w in at.warning]
    assert any(message in w for w in warnings), warnings
    assert _step_label(at)  # a valid view is still shown
    assert key in str(at.query_params["run"])  # the URL is rewritten to the view shown
    if params.get("step") == "999":
        assert _step_label(at) == f"Step {len(run.steps)} / {len(run.steps)}"


def test_explore_empty_cache_says_how_to_make_a_run(tmp_path, monkeypatch):
    at = _app(tmp_path / "empty", monkeypatch)
    _no_errors(at)
    info = " ".join(i.value for i in at.info)
    assert "No runs in the cache" in info and "make run" in info


def test_explore_damaged_run_is_an_error_line_not_a_traceback(own_cache, monkeypatch):
    store, key = own_cache
    (store.path(key) / "tokens.parquet").write_bytes(b"not parquet")
    at = _app(store.root, monkeypatch, run=key)
    assert not at.exception
    assert any("checksum" in e.value or "damaged" in e.value for e in at.error)


def test_presentation_mode_hides_controls_and_does_not_autoplay(cache, monkeypatch):
    store, key, _ = cache
    at = _app(store.root, monkeypatch, run=key, present="1")
    _no_errors(at)
    assert not at.sidebar.selectbox and not at.sidebar.radio  # no sidebar controls
    assert at.button(key="explore_play").label == "Play"  # no autoplay (issue 14): the presenter starts it
    assert "stSidebar" in _html(at)  # the presentation CSS hides the sidebar


def test_explore_offers_html_export(cache, monkeypatch):
    store, key, _ = cache
    at = _app(store.root, monkeypatch, run=key)
    labels = [d.label for d in at.get("download_button")]
    assert any("HTML" in label for label in labels)


def test_path_click_moves_the_cursor(cache, monkeypatch):
    """The plotly selection callback maps a clicked point's customdata to the cursor (and URL)."""
    from app.views import explore

    _, _, run = cache
    session = {
        explore.PATH_CHART: {"selection": {"points": [{"curve_number": 1, "point_index": 4, "customdata": 4}]}},
        explore.CURSOR: 0,
    }
    monkeypatch.setattr(explore.st, "session_state", session)
    monkeypatch.setattr(explore.ui, "set_query_params", lambda **kw: session.update({"_url": kw}))
    explore._on_path_click(len(run.steps))
    assert session[explore.CURSOR] == 4 and session[explore.SLIDER] == 4 and session["_url"] == {"step": 4}
    session[explore.PATH_CHART] = {"selection": {"points": [{"curve_number": 1, "customdata": [99]}]}}
    explore._on_path_click(len(run.steps))
    assert session[explore.CURSOR] == len(run.steps)  # clamped to the last boundary


# ----------------------------------------------------------------------------- Runs
def test_runs_library_lists_filters_and_opens(cache, monkeypatch):
    store, key, _ = cache
    at = _app(store.root, monkeypatch)
    at.switch_page("views/runs.py").run()
    _no_errors(at)
    assert at.title[0].value == "Runs"
    assert any("1 of 1 runs" in c.value for c in at.caption)
    at.text_input(key="runs_filter_text").input("no such question").run()
    assert any("0 of 1 runs" in c.value for c in at.caption)
    at.text_input(key="runs_filter_text").input("apples").run()
    at.selectbox(key="runs_filter_correct").set_value("no reference").run()
    assert any("0 of 1 runs" in c.value for c in at.caption)
    at.selectbox(key="runs_filter_correct").set_value("all").run()
    assert at.selectbox(key="runs_selected").value == key
    at.button(key="runs_open").click().run()
    _no_errors(at)
    assert key in str(at.query_params["run"]) and _step_label(at).startswith("Start")


def test_filter_runs_function():
    import pandas as pd

    from app.views.runs import filter_runs

    runs = pd.DataFrame(
        {
            "key": ["a", "b", "c"],
            "question": ["Apples?", "Pears", "apple pie"],
            "label": ["", "x", ""],
            "model": ["m1", "m2", "m1"],
            "correct": [1, 0, None],
            "n_tokens": [10, 50, 200],
        }
    )
    assert filter_runs(runs, "apple")["key"].tolist() == ["a", "c"]
    assert filter_runs(runs, models=["m2"])["key"].tolist() == ["b"]
    assert filter_runs(runs, correctness="correct")["key"].tolist() == ["a"]
    assert filter_runs(runs, correctness="incorrect")["key"].tolist() == ["b"]
    assert filter_runs(runs, correctness="no reference")["key"].tolist() == ["c"]
    assert filter_runs(runs, tokens=(20, 300))["key"].tolist() == ["b", "c"]


def test_runs_delete_asks_for_confirmation(own_cache, monkeypatch):
    store, key = own_cache
    at = _app(store.root, monkeypatch)
    at.switch_page("views/runs.py").run()
    at.button(key="runs_delete").click().run()
    assert any("Delete run" in w.value for w in at.warning)
    at.button(key="runs_delete_cancel").click().run()
    assert store.has(key) and not any("Delete run" in w.value for w in at.warning)
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_confirm").click().run()
    _no_errors(at)
    assert not store.has(key)
    assert any("No runs in the cache" in i.value for i in at.info)


def test_runs_jsonl_import_shows_line_errors_and_runs_good_lines(own_cache, tiny_llama, monkeypatch, request):
    from backend.engine import provider

    store, _ = own_cache
    provider.register(tiny_llama, "tiny-test")  # the jobs' model provider serves it by name
    request.addfinalizer(lambda: provider.unregister("tiny-test"))
    lines = [
        json.dumps(
            {"id": "q1", "question": "What is 2 + 3?", "answer": "5", "trajectory": "2 plus 3. Wait, that is 5."}
        ),
        "{not json",
        json.dumps({"id": "q2", "question": SAMPLE_QUESTION, "answer": 6, "trajectory": SAMPLE_TRAJECTORY[:120]}),
        json.dumps({"id": "q3", "answer": "1"}),
    ]
    at = _app(store.root, monkeypatch)
    at.switch_page("views/runs.py").run()
    at.file_uploader(key="runs_import_file").upload("questions.jsonl", "\n".join(lines).encode(), "application/json")
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["2 lines of questions.jsonl cannot be used (the other 2 can):"]
    problems = [el for el in at.dataframe if "problem" in el.value.columns]
    assert problems, "line errors are listed"
    table = problems[0].value
    assert table["line"].tolist() == [2, 4] and table["field"].tolist()[1] == "question"
    assert any("2 questions ready" in s.value for s in at.success)
    before = set(store.list_runs()["key"])
    at.text_input(key="runs_import_model").input("tiny-test").run()
    assert any("Estimated cost of 2 questions" in i.value for i in at.info)
    at.button(key="runs_import_start").click().run()
    assert not at.exception
    assert any("Queue 2 questions from questions.jsonl" in w.value for w in at.warning), "asks to confirm"
    assert len(store.list_runs()) == len(before), "nothing runs before the confirmation"
    at.button(key="runs_import_confirm").click().run()
    assert not at.exception
    assert any("Queued as job #" in s.value for s in at.success)
    job = _wait_job(store, at.session_state["runs_last_job"])
    assert job.kind == "batch" and job.state == "finished" and len(job.results) == 2
    added = store.list_runs()
    assert set(added["label"]) >= {"q1", "q2"} and set(added["key"]) - before == set(job.results)


def _wait_job(store, job_id):
    from backend.jobs.queue import JobQueue, wait_for

    return wait_for(JobQueue(store), job_id, timeout=180)


def test_runs_new_run_form_estimates_runs_and_opens(own_cache, tiny_llama, monkeypatch, request):
    from backend.engine import provider

    store, _ = own_cache
    provider.register(tiny_llama, "tiny-test")  # the jobs' model provider serves it by name
    request.addfinalizer(lambda: provider.unregister("tiny-test"))
    at = _app(store.root, monkeypatch)
    at.switch_page("views/runs.py").run()
    at.text_input(key="runs_new_model").input("tiny-test")
    at.text_area(key="runs_new_question").input("What is 7 - 4?")
    at.text_input(key="runs_new_answer").input("3")
    at.text_area(key="runs_new_trajectory").input("Seven minus four. Let me check: 7 - 4 = 3. So the answer is 3.")
    _button(at, "Estimate cost").click().run()
    _no_errors(at)
    assert any("Estimated cost" in i.value for i in at.info)
    before = set(store.list_runs()["key"])
    at.button(key="runs_new_start").click().run()
    _no_errors(at)
    job = _wait_job(store, at.session_state["runs_last_job"])  # the server's worker ran it
    assert job.kind == "run" and job.state == "finished", job.error
    new = set(store.list_runs()["key"]) - before
    assert new == set(job.results) and len(new) == 1
    (new_key,) = new
    at.run()
    at.button(key="runs_last_job_open").click().run()
    assert new_key in str(at.query_params["run"])  # opened in Explore
    assert _step_label(at).startswith("Start")


def test_runs_new_run_form_samples_run_as_a_batch_and_open_in_the_samples_view(
    own_cache, tiny_llama, monkeypatch, request
):
    """Issue 21 item 4: K samples from the Runs page are one ``batch`` job of the question (each
    sample a run); its result opens the Dataset page's Samples view on that question."""
    from backend.engine import provider

    store, _ = own_cache
    provider.register(tiny_llama, "tiny-test")
    request.addfinalizer(lambda: provider.unregister("tiny-test"))
    at = _app(store.root, monkeypatch)
    at.switch_page("views/runs.py").run()
    question = "What is 9 - 5?"
    at.text_input(key="runs_new_model").input("tiny-test")
    at.text_area(key="runs_new_question").input(question)
    at.text_input(key="runs_new_answer").input("4")
    at.number_input(key="runs_new_max_tokens").set_value(24)
    at.number_input(key="runs_new_samples").set_value(2)
    _button(at, "Estimate cost").click().run()
    _no_errors(at)
    assert any("2 samples, each" in i.value for i in at.info)
    at.button(key="runs_new_start").click().run()
    _no_errors(at)
    job = _wait_job(store, at.session_state["runs_last_job"])
    assert job.kind == "batch" and job.params["samples"] == 2 and job.state == "finished", job.error
    runs = store.list_runs()
    assert len(job.results) == 2 and set(runs[runs["question"] == question]["key"]) == set(job.results)
    at.run()
    at.button(key="runs_last_job_samples").click().run()
    assert at.query_params["samples"] == [question] or at.query_params["samples"] == question
    assert not at.exception
    choice = next(s for s in at.selectbox if s.label == "Question")
    assert str(choice.format_func(choice.value)).startswith(question)


def test_runs_new_run_form_reports_bad_input(cache, monkeypatch):
    store, _, _ = cache
    at = _app(store.root, monkeypatch)
    at.switch_page("views/runs.py").run()
    _button(at, "Estimate cost").click().run()
    assert not at.exception
    assert any("question is empty" in e.value for e in at.error)


def test_estimate_cost_grows_with_trajectory_and_cut_density():
    from app.views.runs import estimate_cost

    short = estimate_cost("a" * 400, "6", 256, "all")
    long = estimate_cost("a" * 4000, "6", 256, "all")
    sparse = estimate_cost("a" * 4000, "6", 256, "stride:16")
    assert short["n_tokens"] == 100 and long["probe_tokens"] > short["probe_tokens"] > 0
    assert sparse["probe_tokens"] < long["probe_tokens"]
    assert estimate_cost(None, None, 128, "all")["n_tokens"] == 128


def test_runs_new_run_form_says_why_a_huge_max_new_tokens_is_refused(cache, monkeypatch):
    store, _, _ = cache
    at = _app(store.root, monkeypatch)
    at.switch_page("views/runs.py").run()
    at.text_area(key="runs_new_question").input("What is 7 - 4?")
    at.number_input(key="runs_new_max_tokens").set_value(100_000)
    _button(at, "Estimate cost").click().run()
    assert not at.exception
    assert any("100,000 is more than 4,096" in e.value for e in at.error), [e.value for e in at.error]
