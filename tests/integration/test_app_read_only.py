"""A read-only server (``raml serve --read-only``: ``RAML_READ_ONLY=1``) under Streamlit's AppTest,
on a private copy of the tiny cache: every page opens and shows the runs without one control that
changes the server, pokes at the session state and the URL change nothing, and where the pages'
hiding is switched off (as if a request reached the handlers anyway) the backend refuses the
submit, the delete, the import and the server path in one line each. Nothing under the cache
changes but its SQLite index and queue (kept in step with the run folders)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from backend import readonly
from tests.conftest import SAMPLE_QUESTION

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
# every control that computes, imports, deletes, branches, edits or changes a job
CHANGING_KEYS = {
    "importance_compute",
    "importance_attention",
    "exact_compute",
    "exact_landscape_compute",
    "branch_here_open",
    "branch_start",
    "lens_grid_compute",
    "compare_surface_go",
    "compare_random_go",
    "runs_delete",
    "runs_delete_confirm",
    "runs_new_start",
    "runs_import_file",
    "runs_import_path",
    "runs_import_start",
    "runs_import_confirm",
    "explore_dl_figures",
}


@pytest.fixture()
def own(tiny_run, tmp_path, monkeypatch):
    """A private copy of the tiny cache, served read-only: (store, key, files before)."""
    from backend.store.runs import RunStore

    store, key = tiny_run
    root = tmp_path / "cache"
    # without derived data: importance and the exact update not computed, so their buttons would be drawn
    shutil.copytree(store.root, root, ignore=shutil.ignore_patterns("locks", "tmp", "jobs.sqlite", "derived"))
    monkeypatch.setenv(readonly.ENV, "1")
    monkeypatch.setenv("RAML_CACHE_DIR", str(root))
    copy = RunStore(root)
    return copy, key, _files(root)


def _files(root: Path) -> dict[str, int]:
    """Every file under the cache (name -> size), but the index and the queue."""
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in sorted(Path(root).rglob("*"))
        if p.is_file() and not p.name.startswith(("index.sqlite", "jobs.sqlite"))
    }


def _app(**params) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=120)
    for name, value in params.items():
        at.query_params[name] = value
    return at.run()


def _keys(at) -> set[str]:
    """The keys of every widget on the page (buttons, toggles, uploaders, inputs, downloads)."""
    found = set()
    for kind in ("button", "toggle", "checkbox", "text_input", "text_area", "file_uploader", "download_button"):
        found |= {w.key for w in at.get(kind) if getattr(w, "key", None)}
    return found


def _clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert not [x for x in at.expander if "traceback" in x.label.lower()]


def _jobs(store) -> list:
    from backend.jobs.queue import JobQueue

    return JobQueue(store).list()


def test_every_page_shows_the_runs_and_no_control_that_changes_the_server(own):
    store, key, before = own
    at = _app(run=key, step="3", lens="tuned")
    _clean(at)
    assert "Step 3 /" in "\n".join(h.value for h in at.html)  # the run and its linked views are there
    assert not _keys(at) & CHANGING_KEYS, _keys(at) & CHANGING_KEYS
    assert "explore_dl_tables" in _keys(at) and "explore_export_html" in _keys(at)  # downloads that only read
    sidebar = [c.value for c in at.sidebar.caption]
    assert any("Read-only server" in c for c in sidebar)
    assert not [m for m in at.sidebar.markdown if m.value.startswith("**Jobs**")]  # no jobs panel

    at.switch_page("views/runs.py").run()
    _clean(at)
    assert not at.tabs, "only the library: no New run, no Import"
    assert not _keys(at) & CHANGING_KEYS
    # only what reads: open in Explore, and Compare with the run's thinking partner (a page switch)
    assert [b.key for b in at.button] == ["runs_open", "runs_compare_pair"]
    assert any(key[:12] in option for option in at.selectbox(key="runs_selected").options)

    from app.views import compare

    at = _app(q=compare.question_id(SAMPLE_QUESTION))
    at.switch_page("views/compare.py").run()
    at.multiselect(key=f"compare_runs_{compare.question_id(SAMPLE_QUESTION)}").set_value([key]).run()
    _clean(at)
    assert not _keys(at) & CHANGING_KEYS

    at.switch_page("views/dataset.py").run()
    _clean(at)
    assert not _keys(at) & CHANGING_KEYS
    assert _files(store.root) == before and not _jobs(store)  # browsing wrote nothing (projections, claims)


def test_session_state_and_url_pokes_change_nothing(own):
    store, key, before = own
    at = _app()
    at.switch_page("views/runs.py")
    at.session_state["runs_confirm_delete"] = key  # a delete "confirmed" in the session
    at.session_state["runs_import_confirm_pending"] = "q.jsonl:1:tiny:8:1"
    at.run()
    _clean(at)
    assert "runs_delete_confirm" not in _keys(at) and store.has(key)
    at = _app(run=key)
    at.session_state["branch_here_open"] = True  # the branch form "opened" in the session
    at.run()
    assert not at.exception and not _keys(at) & CHANGING_KEYS
    for params in ({"run": "../../../etc/passwd"}, {"run": "/etc"}, {"run": key, "space": "exact", "lens": "tuned"}):
        at = _app(**params)
        assert not at.exception, params
        assert not _keys(at) & CHANGING_KEYS
    assert store.has(key) and _files(store.root) == before and not _jobs(store)


def test_the_backend_refuses_what_the_pages_would_submit_delete_or_import(own, monkeypatch, tmp_path):
    """The pages' hiding switched off (``ui.read_only`` says False, the process is still read-only):
    each control reaches the backend, which refuses it in one line; nothing is queued or written."""
    from app import ui

    monkeypatch.setattr(ui, "read_only", lambda: False)
    store, key, before = own

    def refused(at, action: str) -> None:
        assert not at.exception, [e.value for e in at.exception]
        lines = [e.value for e in at.error]
        assert any(readonly.refusal(action) in line and "\n" not in line for line in lines), lines
        assert not [x for x in at.expander if "traceback" in x.label.lower()]

    at = _app(run=key, step="2")
    at.button(key="importance_compute").click().run()
    refused(at, "starting jobs")
    at.toggle(key="branch_here_open").set_value(True).run()
    at.button(key="branch_start").click().run()
    refused(at, "starting jobs")
    at.button(key="exact_compute").click().run()
    refused(at, "starting jobs")

    at.switch_page("views/runs.py").run()
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_confirm").click().run()
    refused(at, "deleting runs")
    assert store.has(key)

    payload = (json.dumps({"id": "q1", "question": "What is 2 + 3?", "answer": "5"}) + "\n").encode()
    at.file_uploader(key="runs_import_file").upload("questions.jsonl", payload, "application/json")
    at.run()
    at.text_input(key="runs_import_model").input("tiny-test").run()
    at.button(key="runs_import_start").click().run()
    at.button(key="runs_import_confirm").click().run()
    refused(at, "saving uploads")

    data = store.root.parent / "data"  # the default data folder: open to server paths when writable
    data.mkdir()
    (data / "q.jsonl").write_bytes(payload)
    at.radio(key="runs_import_origin").set_value("Path on the server").run()
    at.text_input(key="runs_import_path").input("q.jsonl").run()
    refused(at, "reading files on the server")
    assert not (store.root / "uploads").exists()
    assert _files(store.root) == before and not _jobs(store)
