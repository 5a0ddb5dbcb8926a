"""The backend wall of a read-only server (``backend/readonly.py``, ``raml serve --read-only``):
with ``RAML_READ_ONLY=1`` the job queue, the run store, every atomic write, derived data, the tuned
lens store and the server-path readers refuse (one line, ``ReadOnlyError``) or write nothing, and
nothing on disk changes. No model: a fake run folder and a registry of one do-nothing kind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backend import readonly
from backend.errors import RamlError, ReadOnlyError

ROOT = Path(__file__).resolve().parents[2]
KEY = "ab" * 16


class _Registry:
    """One kind, ``noop``: accepted as given, never executed here."""

    def names(self) -> list[str]:
        return ["noop"]

    def prepare(self, kind, params, queue):
        from backend.jobs.queue import Prepared

        return Prepared(dict(params), "noop", None, "cpu")

    def execute(self, kind, params, ctx) -> None:
        raise AssertionError("a read-only server ran a job")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """A cache with one (fake) run folder, one derived file and one queued job, made while writable;
    then the process turns read-only. Yields (store, queue, job id, snapshot of every file)."""
    from backend.jobs.queue import JobQueue
    from backend.store.runs import RunStore

    monkeypatch.delenv(readonly.ENV, raising=False)
    store = RunStore(tmp_path / "cache")
    run_dir = store.runs_dir / KEY
    (run_dir / "derived").mkdir(parents=True)
    (run_dir / "meta.json").write_text(json.dumps({"key": KEY}))
    (run_dir / "derived" / "old.json").write_text("{}")
    queue = JobQueue(store, _Registry())
    job_id = queue.submit("noop", {"key": KEY})
    monkeypatch.setenv(readonly.ENV, "1")
    yield store, queue, job_id


def _files(root: Path) -> dict[str, bytes]:
    """Every file under the cache but the SQLite index and queue (kept in step with the run folders)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(("index.sqlite", "jobs.sqlite"))
    }


def _refused(call, action: str) -> str:
    with pytest.raises(ReadOnlyError) as caught:
        call()
    message = str(caught.value)
    assert message == readonly.refusal(action) and "\n" not in message
    assert isinstance(caught.value, RamlError)  # the pages and the CLI show it as one line
    return message


@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_the_switch_is_the_environment_variable(value):
    assert readonly.is_read_only({readonly.ENV: value})
    assert not readonly.is_read_only({readonly.ENV: "0"}) and not readonly.is_read_only({})


def test_the_job_queue_queues_stops_resumes_and_runs_nothing(cache):
    from backend import jobs

    store, queue, job_id = cache
    before = [(j.id, j.state) for j in queue.list()]
    _refused(lambda: queue.submit("noop", {"key": KEY}), "starting jobs")
    _refused(lambda: jobs.submit(store, "importance", {"key": KEY}), "starting jobs")  # before the params
    _refused(lambda: queue.cancel(job_id), "cancelling jobs")
    _refused(lambda: queue.resume(job_id), "resuming jobs")
    _refused(lambda: queue.claim(), "running jobs")
    _refused(lambda: jobs.run_here(store, job_id), "running jobs")
    assert queue.recover() == []
    assert jobs.ensure_worker(store) is None  # no worker thread on a read-only server
    assert [(j.id, j.state) for j in queue.list()] == before == [(job_id, "queued")]


def test_the_run_store_writes_and_deletes_nothing(cache):
    store, _queue, _job = cache
    files = _files(store.root)
    frame = pd.DataFrame({"x": [1]})
    _refused(lambda: store.write(KEY, {}, frame, frame, frame, {"t": np.zeros(1)}), "writing runs")
    _refused(lambda: store.delete(KEY), "deleting runs")
    _refused(lambda: store.delete("not a key"), "deleting runs")  # refused before the key is looked at
    old = store.tmp_dir / "killed-writer"
    old.mkdir()
    os.utime(old, (0, 0))
    type(store)(store.root)  # a read-only store opens without cleaning tmp/
    assert old.is_dir()
    old.rmdir()
    assert _files(store.root) == files


def test_atomic_writes_derived_data_and_lenses_write_nothing(cache, tmp_path):
    from backend.store import atomic, derived, lenses, schema
    from backend.store.runs import RunData

    store, _queue, _job = cache
    files = _files(store.root)
    _refused(lambda: atomic.write_bytes(tmp_path / "out.bin", b"x"), "writing files")
    assert not (tmp_path / "out.bin").exists()
    run = RunData(KEY, store.runs_dir / KEY, {"key": KEY}, pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    assert derived.save_derived(store, run, schema.IMPORTANCE, {"a": 1}, {"x": 1}) is None  # no warning either
    assert derived.load_derived(store, run, schema.IMPORTANCE, {"a": 1}) is None
    assert derived.exports_dir(run, store) is None and derived.derived_dir(run, store) is None
    assert derived.save_npz_or_warn(store.root / "aggregates.npz", {"x": np.zeros(2)}) is False
    fingerprint = "0" * 16
    _refused(lambda: lenses.save_lens(store.root, fingerprint, {"0.weight": np.eye(2)}, {}), "writing tuned lenses")
    _refused(lambda: lenses.remove_lens(store.root, fingerprint), "removing tuned lenses")
    assert _files(store.root) == files


def test_no_path_on_the_server_is_reachable(cache, tmp_path, monkeypatch):
    from backend.io import readers, roots
    from backend.io.fields import FieldMap

    store, _queue, _job = cache
    inside = store.root.parent / "data"
    inside.mkdir()
    (inside / "q.jsonl").write_text(json.dumps({"question": "What is 1 + 1?", "answer": "2"}) + "\n")
    monkeypatch.setenv(roots.ENV, str(tmp_path))  # even a root named by the environment
    assert roots.data_roots(store.root) == []
    for text in ("q.jsonl", str(inside / "q.jsonl"), "/etc/passwd", "../../etc/passwd"):
        _refused(lambda text=text: roots.confine(text, [inside]), "reading files on the server")
    _refused(
        lambda: readers.iter_questions(inside / "q.jsonl", FieldMap(), reveal=False), "reading files on the server"
    )
    _refused(lambda: readers.read_questions(inside / "q.jsonl", reveal=False), "reading files on the server")
    records, errors = readers.read_questions_bytes(b'{"question": "What is 1 + 1?"}\n', "up.jsonl", FieldMap())
    assert len(records) == 1 and not errors  # bytes a visitor sent are parsed in memory (the page hides even that)


def _dry_run(tmp_path, capsys, *args: str) -> tuple[int, str, str]:
    from backend.cli import main

    code = main(["--cache-dir", str(tmp_path / "cache"), "serve", *args, "--dry-run"])
    out, err = capsys.readouterr()
    return code, out, err


def test_serve_read_only_sets_the_switch_and_turns_off_streamlits_writable_features(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(readonly.ENV, raising=False)
    code, out, err = _dry_run(tmp_path, capsys, "--read-only")
    assert code == 2 and err.startswith("error: no cache at") and err.count("\n") == 1  # nothing to show yet
    (tmp_path / "cache" / "runs").mkdir(parents=True)
    code, out, err = _dry_run(tmp_path, capsys, "--read-only", "--port", "8600", "--base-path", "/raml/")
    assert code == 0, err
    assert f"RAML_CACHE_DIR={tmp_path / 'cache'}" in out
    assert f"{readonly.ENV}=1" in out and "RAML_DATA_ROOTS=''" in out
    command = out.strip().splitlines()[-1]
    assert f"cd {ROOT} && " in command and f"streamlit run {ROOT / 'app' / 'main.py'}" in command
    for flag in (
        "--server.address 127.0.0.1",
        "--server.port 8600",
        "--server.baseUrlPath raml",
        "--server.maxUploadSize 0",
        "--server.enableXsrfProtection true",
        "--server.runOnSave false",
        "--server.allowRunOnSave false",
        "--server.fileWatcherType none",
        "--server.enableStaticServing false",
        "--client.showErrorDetails none",
        "--global.developmentMode false",
    ):
        assert flag in command, flag
    assert not readonly.is_read_only()  # a dry run changes nothing in this process
    code, out, _ = _dry_run(tmp_path, capsys)  # `raml serve`: today's app, writable, on the same safe defaults
    assert code == 0 and readonly.ENV not in out and "maxUploadSize" not in out
    assert "--server.address 127.0.0.1" in out and "--server.enableXsrfProtection true" in out
