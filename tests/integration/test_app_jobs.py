"""Every compute button submits a job (issue 20): clicking it queues exactly the right kind with
the right params and computes nothing in the page (the analysis is patched to raise, and no
worker runs: the job stays queued, and the panel shows its progress instead of the button).
When the job is over, the result comes from the cache (AppTest, tiny model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import SAMPLE_QUESTION

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


def _boom(*args, **kwargs):
    raise AssertionError("the page computed: this must run in a job, not in the script run")


@pytest.fixture()
def own(tiny_run, tmp_path):
    """A private copy of the tiny cache (its queue is this test's alone): (store, key)."""
    from backend.store.runs import RunStore

    store, key = tiny_run
    root = tmp_path / "cache"
    shutil.copytree(store.root, root, ignore=shutil.ignore_patterns("locks", "tmp", "jobs.sqlite"))
    return RunStore(root), key


@pytest.fixture()
def no_worker(monkeypatch):
    """Jobs stay queued: the page's submit is all that happens."""
    from app import jobs_panel

    monkeypatch.setattr(jobs_panel, "ensure_worker", lambda store: None)


@pytest.fixture()
def tiny_registered(tiny_llama):
    from backend.engine import provider

    provider.register(tiny_llama)
    yield tiny_llama
    provider.unregister(tiny_llama.name)


def _app(root, monkeypatch, **params) -> AppTest:
    monkeypatch.setenv("RAML_CACHE_DIR", str(root))
    at = AppTest.from_file(MAIN, default_timeout=120)
    for name, value in params.items():
        at.query_params[name] = value
    return at.run()


def _jobs(store) -> list:
    from backend.jobs import open_queue

    return open_queue(store).list()


def _only_job(store):
    jobs = _jobs(store)
    assert len(jobs) == 1, [(j.kind, j.params) for j in jobs]
    return jobs[0]


def _has_chart(at, suffix: str) -> bool:
    return any(el.proto.id.endswith(suffix) for el in at.get("plotly_chart"))


def _no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


# ----------------------------------------------------------------------------- Explore
def test_importance_button_queues_one_importance_job_and_shows_its_progress(own, no_worker, monkeypatch):
    from backend.analysis.importance import run as importance_run

    monkeypatch.setattr(importance_run, "compute_run_importance", _boom)
    store, key = own
    at = _app(store.root, monkeypatch, run=key)
    _no_exception(at)
    assert not _jobs(store)  # drawing the page queues nothing
    at.checkbox(key="importance_attention").uncheck().run()
    at.button(key="importance_compute").click().run()
    _no_exception(at)
    job = _only_job(store)
    assert job.kind == "importance" and job.state == "queued"
    assert job.params == {"key": key, "attention": False, "every_boundary": False}
    # while queued: progress instead of the button, also on a fresh session (state is in the queue)
    again = _app(store.root, monkeypatch, run=key)
    _no_exception(again)
    assert not [b for b in again.button if b.key == "importance_compute"]
    assert any("Step importance · job #" in p.proto.text for p in again.get("progress"))


def test_importance_result_appears_when_the_job_is_done(own, tiny_registered, no_worker, monkeypatch):
    from backend.jobs import run_here

    store, key = own
    at = _app(store.root, monkeypatch, run=key)
    at.button(key="importance_compute").click().run()
    job = run_here(store, _only_job(store).id)  # what the server's worker does
    assert job.state == "finished", job.error
    at.run()
    _no_exception(at)
    assert _has_chart(at, "importance_strip")
    assert [b.label for b in at.button if b.key == "importance_compute"] == ["Recompute importance"]


def test_branch_button_queues_one_branch_job(own, no_worker, monkeypatch):
    from backend.pipeline import branches

    monkeypatch.setattr(branches, "resample", _boom)
    monkeypatch.setattr(branches, "edit", _boom)
    store, key = own
    at = _app(store.root, monkeypatch, run=key, step="3")
    at.toggle(key="branch_here_open").set_value(True).run()
    from backend.pipeline.branch_defaults import DEFAULTS  # one set of defaults: page, CLI, job kind

    assert at.number_input(key="branch_max_new").value == DEFAULTS.max_new_tokens
    assert at.number_input(key="branch_samples").value == DEFAULTS.samples
    at.number_input(key="branch_samples").set_value(3).run()
    at.number_input(key="branch_max_new").set_value(8).run()
    at.button(key="branch_start").click().run()
    _no_exception(at)
    job = _only_job(store)
    assert job.kind == "branch"
    assert {k: job.params[k] for k in ("key", "step", "mode", "samples", "max_new_tokens", "text", "regenerate")} == {
        "key": key,
        "step": 3,  # the step on screen: "Step 3 / S" (issue 25: one numbering everywhere)
        "mode": "resample",
        "samples": 3,
        "max_new_tokens": 8,
        "text": None,
        "regenerate": False,
    }
    assert job.params["temperature"] == pytest.approx(0.7)


def test_exact_buttons_queue_exact_and_exact_landscape(own, no_worker, monkeypatch):
    from backend.analysis.exact import landscape as exact_landscape
    from backend.analysis.exact import run as exact_run

    monkeypatch.setattr(exact_run, "ensure", _boom)
    monkeypatch.setattr(exact_landscape, "surface", _boom)
    store, key = own
    at = _app(store.root, monkeypatch, run=key)
    _no_exception(at)
    at.button(key="exact_compute").click().run()
    _no_exception(at)
    job = _only_job(store)
    assert (job.kind, job.params) == ("exact", {"key": key})
    assert not [b for b in at.button if b.key == "exact_compute"]  # its progress instead
    at.button(key="exact_landscape_compute").click().run()
    _no_exception(at)
    kinds = {j.kind: j.params for j in _jobs(store)}
    assert kinds["exact_landscape"] == {"key": key, "grid": 15, "span": 1.5}


# ----------------------------------------------------------------------------- Compare
def test_compare_buttons_queue_surface_and_landscape(own, no_worker, monkeypatch):
    from app.views import compare
    from backend.analysis.landscapes import surfaces

    monkeypatch.setattr(surfaces, "loss_surface", _boom)
    monkeypatch.setattr(surfaces, "random_landscape", _boom)
    store, key = own
    at = _app(store.root, monkeypatch, q=compare.question_id(SAMPLE_QUESTION))
    at.switch_page("views/compare.py").run()
    _no_exception(at)
    # the session's tiny cache may hold other runs of this question (other tests' branches): this run alone
    at.multiselect(key=f"compare_runs_{compare.question_id(SAMPLE_QUESTION)}").set_value([key]).run()
    _no_exception(at)
    layer = int(at.selectbox(key="compare_landscape_layer").value)
    at.number_input(key="compare_surface_grid").set_value(5).run()
    at.button(key="compare_surface_go").click().run()
    _no_exception(at)
    (job,) = _jobs(store)
    assert (job.kind, job.params) == ("surface", {"key": key, "layer": layer, "grid": 5, "span": 1.5})
    assert not [b for b in at.button if b.key == "compare_surface_go"]
    at.number_input(key="compare_random_grid").set_value(3).run()
    at.number_input(key="compare_random_seed").set_value(4).run()
    at.button(key="compare_random_go").click().run()
    _no_exception(at)
    kinds = {j.kind: j.params for j in _jobs(store)}
    assert kinds["landscape"] == {"key": key, "grid": 3, "span": 1.0, "seed": 4}


# ----------------------------------------------------------------------------- Runs
def test_upload_import_saves_the_file_under_the_cache_and_queues_one_batch(own, no_worker, monkeypatch):
    import hashlib

    store, _ = own
    lines = [
        json.dumps({"id": "q1", "question": "What is 2 + 3?", "answer": "5"}),
        json.dumps({"id": "q2", "question": "What is 1 + 1?", "answer": "2", "trajectory": "1 + 1 = 2."}),
    ]
    payload = "\n".join(lines).encode()
    at = _app(store.root, monkeypatch)
    at.switch_page("views/runs.py").run()
    at.file_uploader(key="runs_import_file").upload("questions.jsonl", payload, "application/json")
    at.run()
    at.text_input(key="runs_import_model").input("tiny-test").run()
    at.number_input(key="runs_import_samples").set_value(3).run()
    assert any("2 questions × 3 samples" in i.value for i in at.info)
    at.button(key="runs_import_start").click().run()
    at.button(key="runs_import_confirm").click().run()
    _no_exception(at)
    job = _only_job(store)
    saved = Path(store.root) / "uploads" / f"{hashlib.sha256(payload).hexdigest()}.jsonl"
    assert job.kind == "batch" and saved.read_bytes() == payload
    assert job.params["source"] == str(saved.resolve())
    assert job.params["samples"] == 3 and job.params["limit"] == 500
    assert job.params["template"]["model"] == "tiny-test"
    assert job.params["template"]["generation"]["max_new_tokens"] == 256


@pytest.fixture()
def run_every_seen(monkeypatch):
    """The ``run_every`` of every fragment the page declares."""
    import streamlit as st

    real, seen = st.fragment, []

    def spy(func=None, *, run_every=None):
        seen.append(run_every)
        return real(func, run_every=run_every) if func is not None else real(run_every=run_every)

    monkeypatch.setattr(st, "fragment", spy)
    return seen


@pytest.fixture()
def tickers_seen(monkeypatch):
    """(name, delay) of every poll timer the page arms (``app/poll.py``)."""
    from app import poll

    seen = []
    monkeypatch.setattr(poll, "ticker", lambda name, delay_s, on_tick=None: seen.append((name, delay_s)))
    return seen


def test_the_idle_page_never_polls_and_an_active_job_does(own, no_worker, run_every_seen, tickers_seen, monkeypatch):
    store, key = own
    at = _app(store.root, monkeypatch, run=key)
    _no_exception(at)
    assert run_every_seen and all(r is None for r in run_every_seen), run_every_seen  # nothing re-runs by itself
    assert tickers_seen == []  # and no poll timer is armed
    from backend.analysis.importance.defaults import ATTENTION as DEFAULT_ATTENTION

    assert at.checkbox(key="importance_attention").value is DEFAULT_ATTENTION  # the CLI's default too
    at.button(key="importance_compute").click().run()
    _no_exception(at)
    names = {name for name, _ in tickers_seen}
    assert "jobs_panel" in names and any(n.startswith("follow_") for n in names), tickers_seen
    assert all(r is None for r in run_every_seen)  # polls are timed by the server's backoff, not run_every
