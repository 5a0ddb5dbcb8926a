"""Files and cache consistency (issue 15 items 4-5): one atomic write, one content hash, export
never replaces a link or a non-regular file unless told, run files 0644, locks removed with
their run, damaged entries listed as damaged, a folder opened only under its own key, the
newest healthy run, workers that write without indexing, and a WAL-free index for network
filesystems. CLI cases assert exit code, one error line, no traceback, nothing changed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat

import numpy as np
import pandas as pd
import pytest

from backend import cli
from backend.errors import CacheError, InputError, WriteError
from backend.store import atomic, hashing, schema
from backend.store.runs import RunStore, content_key


def _fake_run(question="q?", n_boundaries=3, n_layers=2, d=4):
    rng = np.random.default_rng(len(question))
    meta = {
        "question": question,
        "answer": "1",
        "answer_source": "reference",
        "correct": True,
        "model": {"name": "m", "n_layers": n_layers},
        "summary": {"n_tokens": 2, "n_steps": 2, "final_loss": 0.5, "initial_loss": 2.0},
        "proxy_layers": [1],
    }
    tokens = pd.DataFrame({"cut": np.arange(3), "loss": [2.0, 1.0, 0.5]})
    steps = pd.DataFrame({"index": [0, 1], "text": ["a", "b"]})
    lens = pd.DataFrame({"boundary": [0], "layer": [0]})
    tensors = {
        schema.tensor_name(schema.HIDDEN): rng.random((n_boundaries, n_layers, d)).astype(np.float16),
        schema.tensor_name(schema.PROXY_INPUT, 1): rng.random((n_boundaries, d)).astype(np.float32),
        schema.tensor_name(schema.PROXY_PREACT, 1): rng.random((n_boundaries, 2 * d)).astype(np.float32),
    }
    return meta, tokens, steps, lens, tensors


def _put(store, name: str, created: float | None = None, **kwargs) -> str:
    key = content_key({"run": name})
    meta, *tables = _fake_run(question=name)
    if created is not None:
        meta["created"] = created
    store.write(key, meta, *tables, **kwargs)
    return key


def _snapshot(root) -> dict:
    """Every file under the cache (bytes hashed) plus the index rows: 'nothing changed' checks."""
    files = {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("index.sqlite")
    }
    con = sqlite3.connect(root / "index.sqlite")
    try:
        rows = sorted(con.execute("SELECT * FROM runs").fetchall()) + sorted(
            con.execute("SELECT * FROM requests").fetchall()
        )
    finally:
        con.close()
    return {"files": files, "index": rows}


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------- hashing
def test_one_content_hash_for_run_and_derived_keys(tiny_run):
    from backend.analysis.landscapes import surfaces as landscape
    from backend.analysis.spaces import proxy

    payload = {"b": [1, "ü"], "a": {"y": 2, "x": 1}}
    assert hashing.content_hash(payload) == content_key(payload) == content_key(dict(reversed(payload.items())))
    assert hashing.canonical_json(payload) == '{"a":{"x":1,"y":2},"b":[1,"ü"]}'
    assert len(hashing.content_hash(payload, 24)) == 24 and hashing.content_hash(payload).startswith(
        hashing.content_hash(payload, 24)
    )
    store, key = tiny_run
    run = store.open(key)
    projection = {"runs": [key], "layer": 1, "space": "proxy", "method": "pca", "seed": 0}
    expected_projection = hashing.content_hash(
        {"kind": "projection", "version": proxy.PROJECTION_VERSION, "run": key, "params": projection}, 24
    )
    assert proxy.projection_cache_key([run], 1, "proxy", "pca") == expected_projection
    surface = {"layer": 1, "grid": 5, "span": 1.0, "model": run.model_fingerprint}
    assert landscape.surface_cache_key(run, 1, 5, 1.0) == hashing.content_hash(
        {"kind": "surface", "version": landscape.SURFACE_VERSION, "run": key, "params": surface}, 24
    )


# ----------------------------------------------------------------------------- atomic write
def test_atomic_write_is_0644_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "f.json"
    atomic.write_json(target, {"a": 1})
    atomic.write_text(target, "second")
    assert target.read_text() == "second" and stat.S_IMODE(target.stat().st_mode) == 0o644
    atomic.write_npz(tmp_path / "a.npz", {"x": np.arange(3)})
    with np.load(tmp_path / "a.npz") as f:
        assert f["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "f.json"]


def test_atomic_write_failures_name_the_path(tmp_path):
    with pytest.raises(WriteError, match=r"cannot write .*missing.*folder does not exist"):
        atomic.write_text(tmp_path / "missing" / "f.txt", "x")
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(WriteError, match="not a regular file"):
        atomic.write_text(tmp_path / "pipe", "x")
    with pytest.raises(WriteError, match="is a directory"):
        atomic.write_text(tmp_path, "x")
    assert isinstance(WriteError("x"), InputError)  # a one-line user-facing error


def test_atomic_write_and_symlinks(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    with pytest.raises(WriteError, match="symbolic link.*--follow-symlinks"):
        atomic.write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "old"
    atomic.write_text(link, "new", follow_symlinks=True)
    assert link.is_symlink() and real.read_text() == "new"  # the link stays, its target is replaced


def test_read_only_derived_cache_logs_instead_of_raising(tmp_path, caplog):
    from backend.store.derived import save_npz_or_warn

    assert not save_npz_or_warn(tmp_path / "missing" / "x.npz", {"a": np.zeros(2)})
    assert "derived data not cached" in caplog.text and "missing" in caplog.text


# ----------------------------------------------------------------------------- export (CLI)
@pytest.fixture()
def export_cache(tiny_run, tmp_path):
    store, key = tiny_run
    root = tmp_path / "cache"
    shutil.copytree(store.root, root, ignore=shutil.ignore_patterns("locks", "tmp"))
    return RunStore(root), key


def _export(store, key, *args):
    return cli.main(["--cache-dir", str(store.root), "export", key, *args])


@pytest.mark.parametrize("case", ["symlink", "dangling-symlink", "fifo", "directory", "missing-folder"])
def test_export_refuses_targets_it_must_not_replace(export_cache, tmp_path, capsys, case):
    store, key = export_cache
    out = tmp_path / "out"
    out.mkdir()
    victim = out / "victim.txt"
    victim.write_text("keep me")
    target = out / "run.html"
    if case == "symlink":
        target.symlink_to(victim)
    elif case == "dangling-symlink":
        target.symlink_to(out / "nowhere.html")
    elif case == "fifo":
        os.mkfifo(target)
    elif case == "directory":
        target.mkdir()
    else:
        target = out / "no" / "run.html"
    before, outside = _snapshot(store.root), sorted(os.listdir(out))
    capsys.readouterr()
    assert _export(store, key, "--html", str(target)) == cli.EXIT_INPUT
    line = _one_error_line(capsys.readouterr().err)
    expected = {
        "symlink": "symbolic link",
        "dangling-symlink": "symbolic link",
        "fifo": "not a regular file",
        "directory": "is a directory",
        "missing-folder": "cannot write",
    }[case]
    assert expected in line and str(target.name) in line
    assert victim.read_text() == "keep me" and sorted(os.listdir(out)) == outside  # nothing written, no temp
    assert case != "symlink" or target.is_symlink()
    assert _snapshot(store.root) == before


def test_export_follows_a_symlink_only_when_told(export_cache, tmp_path, capsys):
    store, key = export_cache
    real = tmp_path / "real.html"
    real.write_text("old")
    link = tmp_path / "link.html"
    link.symlink_to(real)
    assert _export(store, key, "--html", str(link), "--follow-symlinks") == 0
    assert link.is_symlink() and real.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert stat.S_IMODE(real.stat().st_mode) == 0o644
    assert capsys.readouterr().out.strip() == str(link)


def test_export_dash_writes_html_to_stdout(export_cache, tmp_path, capsys, monkeypatch):
    store, key = export_cache
    monkeypatch.chdir(tmp_path)
    before = _snapshot(store.root)
    assert _export(store, key, "--html", "-") == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("<!DOCTYPE html>") and key in captured.out and captured.err == ""
    assert not (tmp_path / "-").exists() and _snapshot(store.root) == before


# ----------------------------------------------------------------------------- run files, locks
def test_run_files_are_0644_and_rm_removes_the_lock(store):
    key = _put(store, "modes")
    files = sorted(p for p in store.path(key).iterdir())
    assert [p.name for p in files] == sorted([schema.META_FILE, *schema.RUN_FILES])
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: "0o644" for p in files}
    assert stat.S_IMODE(store.path(key).stat().st_mode) == 0o755
    with store.lock(key):
        pass
    assert store.lock_path(key).exists()
    assert cli.main(["--cache-dir", str(store.root), "rm", key]) == 0
    assert not store.lock_path(key).exists() and not store.path(key).exists()


# ----------------------------------------------------------------------------- damaged entries
def _damage_missing_meta(store, key):
    (store.path(key) / schema.META_FILE).unlink()
    return "meta.json is missing"


def _damage_wrong_key(store, key):
    """The run folder copied under another (valid) key: its meta names the original key."""
    other = content_key({"copied": key})
    shutil.copytree(store.path(key), store.runs_dir / other)
    return other, f"belongs to run {key}"


def test_missing_meta_is_listed_damaged_and_named_by_show(store, capsys):
    good, bad = _put(store, "good", created=1.0), _put(store, "bad", created=2.0)
    cause = _damage_missing_meta(store, bad)
    listed = store.list_runs().set_index("key")
    assert listed.loc[bad, "status"] == "damaged" and cause in listed.loc[bad, "cause"]
    assert listed.loc[good, "status"] == "ok" and listed.loc[good, "cause"] == ""
    before = _snapshot(store.root)
    capsys.readouterr()
    assert cli.main(["--cache-dir", str(store.root), "show", bad]) == cli.EXIT_INPUT
    assert cause in _one_error_line(capsys.readouterr().err)
    assert cli.main(["--cache-dir", str(store.root), "ls"]) == 0
    out, err = capsys.readouterr()
    bad_line = next(ln for ln in out.splitlines() if ln.startswith(bad))
    assert "damaged" in bad_line and cause in bad_line and "1 damaged run" in err
    assert "ok" in next(ln for ln in out.splitlines() if ln.startswith(good))
    assert _snapshot(store.root) == before
    assert not store.has(bad)


def test_folder_copied_under_another_key_is_damaged_not_opened(store, capsys):
    key = _put(store, "original")
    other, cause = _damage_wrong_key(store, key)
    before = _snapshot(store.root)
    assert not store.has(other)
    with pytest.raises(CacheError, match=cause):
        store.open(other)
    capsys.readouterr()
    assert cli.main(["--cache-dir", str(store.root), "ls", "--json"]) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[key]["status"] == "ok"
    assert rows[other]["status"] == "damaged" and cause in rows[other]["cause"]
    assert cli.main(["--cache-dir", str(store.root), "show", other]) == cli.EXIT_INPUT
    assert cause in _one_error_line(capsys.readouterr().err)
    assert _snapshot(store.root) == before  # never indexed under the wrong name


def test_newest_healthy_run_skips_damage_and_prefers_a_label(store):
    assert store.newest_healthy_run() is None
    old = _put(store, "old", created=1.0)
    newest = _put(store, "newest", created=3.0)
    assert store.newest_healthy_run() == newest
    data = bytearray((store.path(newest) / "tokens.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the checksum sees it
    (store.path(newest) / "tokens.parquet").write_bytes(bytes(data))
    assert store.list_runs().set_index("key").loc[newest, "status"] == "ok"  # cheap checks pass...
    assert store.newest_healthy_run() == old  # ...but it does not open, so it is skipped
    meta, *tables = _fake_run(question="demo")
    demo = content_key({"demo": 1})
    store.write(demo, dict(meta, label="demo", created=0.5), *tables)
    assert store.newest_healthy_run(label="demo") == demo and store.newest_healthy_run() == old


# ----------------------------------------------------------------------------- index ownership
def test_worker_store_writes_runs_without_the_index_and_the_driver_indexes(tmp_path):
    root = tmp_path / "cache"
    worker = RunStore(root, indexing=False)
    key = _put(worker, "from a worker")
    assert worker.has(key) and worker.run_for_request("r") is None
    assert not (root / "index.sqlite").exists()  # the worker never touched SQLite
    worker.remember_request("r", key)  # left to the driver: no effect here
    assert not (root / "index.sqlite").exists()
    driver = RunStore(root)
    con = sqlite3.connect(root / "index.sqlite")
    assert con.execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)
    assert driver.index_runs([key]) == [key]
    assert con.execute("SELECT key, question FROM runs").fetchall() == [(key, "from a worker")]
    con.close()
    with pytest.raises(CacheError, match="without it"):
        worker.list_runs()


def _journal_mode(path) -> str:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        con.close()


def test_network_fs_switches_the_index_out_of_wal(tmp_path, monkeypatch):
    local = RunStore(tmp_path / "local")
    _put(local, "x")
    assert local.journal_mode == "WAL"
    assert _journal_mode(local.index_path) == "wal"
    monkeypatch.setenv("RAML_CACHE_NETWORK_FS", "1")
    shared = RunStore(tmp_path / "nfs")
    key = _put(shared, "y")
    assert shared.journal_mode == "DELETE" and shared.list_runs()["key"].tolist() == [key]
    assert _journal_mode(shared.index_path) == "delete"
    assert not list((tmp_path / "nfs").glob("index.sqlite-*"))  # no -wal / -shm files
    switched = RunStore(tmp_path / "local")  # an existing WAL index is switched too
    assert switched.list_runs()["question"].tolist() == ["x"]
    assert _journal_mode(switched.index_path) == "delete"
