"""Cache round trips, index, lazy tensors, key validation, atomic replace."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from backend.errors import CacheError, RunNotFoundError
from backend.store.runs import SCHEMA_VERSION, RunStore, check_key, content_key


def _fake_run(n_boundaries=3, n_layers=4, d=8):
    rng = np.random.default_rng(0)
    meta = {
        "question": "q?",
        "answer": "1",
        "answer_source": "reference",
        "correct": True,
        "model": {"name": "m"},
        "summary": {"n_tokens": 5, "n_steps": 2, "final_loss": 0.5, "initial_loss": 2.0},
    }
    tokens = pd.DataFrame({"cut": np.arange(6), "loss": rng.random(6).astype(np.float32), "token": list("abcdef")})
    steps = pd.DataFrame({"index": [0, 1], "text": ["a b", "c d e"], "reflection_words": ["", "wait"]})
    lens = pd.DataFrame({"boundary": [0, 1], "layer": [0, 0], "top_tokens": [["x", "y"], ["z", "w"]]})
    tensors = {
        "hidden": rng.random((n_boundaries, n_layers, d)).astype(np.float16),
        "proxy_preact.3": rng.random((n_boundaries, 16)).astype(np.float32),
    }
    return meta, tokens, steps, lens, tensors


def test_round_trip(store):
    meta, tokens, steps, lens, tensors = _fake_run()
    key = content_key({"x": 1})
    store.write(key, meta, tokens, steps, lens, tensors)
    run = store.open(key)
    pd.testing.assert_frame_equal(run.tokens, tokens)
    pd.testing.assert_frame_equal(run.steps, steps)
    assert run.lens["top_tokens"].map(list).tolist() == [["x", "y"], ["z", "w"]]
    assert run.meta["schema_version"] == SCHEMA_VERSION and run.meta["key"] == key
    np.testing.assert_array_equal(run.tensor("hidden"), tensors["hidden"].astype(np.float32))
    np.testing.assert_array_equal(run.hidden_layer(2), tensors["hidden"][:, 2].astype(np.float32))
    assert sorted(run.tensor_names()) == ["hidden", "proxy_preact.3"]
    row = store.list_runs().iloc[0]
    assert (row["key"], row["question"], row["correct"], row["n_steps"]) == (key, "q?", 1, 2)


def test_content_key_is_canonical():
    assert content_key({"a": 1, "b": [1, 2]}) == content_key({"b": [1, 2], "a": 1})
    assert content_key({"a": 1}) != content_key({"a": 2})


@pytest.mark.parametrize("bad", ["../etc", "/abs/path", "ABCDEF0123456789", "a" * 65, "", "0123456789abcdeg"])
def test_bad_keys_are_refused(store, bad):
    with pytest.raises(RunNotFoundError, match="not a run key"):
        check_key(bad)
    with pytest.raises(RunNotFoundError):
        store.open(bad)


def test_damaged_file_is_reported_and_others_survive(store):
    meta, tokens, steps, lens, tensors = _fake_run()
    good, bad = content_key({"k": "good"}), content_key({"k": "bad"})
    store.write(good, meta, tokens, steps, lens, tensors)
    store.write(bad, meta, tokens, steps, lens, tensors)
    with open(store.path(bad) / "tensors.safetensors", "r+b") as f:
        f.truncate(100)
    with pytest.raises(CacheError, match="tensors.safetensors does not match its checksum"):
        store.open(bad)
    assert store.open(good).key == good
    store.write(bad, meta, tokens, steps, lens, tensors)  # recompute replaces the damaged entry
    assert store.open(bad).key == bad


def test_old_schema_is_reported(store):
    meta, tokens, steps, lens, tensors = _fake_run()
    key = content_key({"old": 1})
    store.write(key, meta, tokens, steps, lens, tensors)
    path = store.path(key) / "meta.json"
    stored = json.loads(path.read_text())
    stored["schema_version"] = 0
    path.write_text(json.dumps(stored))
    with pytest.raises(CacheError, match="schema version 0"):
        store.open(key)


def test_delete_and_reconcile(store):
    meta, tokens, steps, lens, tensors = _fake_run()
    a, b = content_key({"n": 1}), content_key({"n": 2})
    store.write(a, meta, tokens, steps, lens, tensors)
    store.write(b, meta, tokens, steps, lens, tensors)
    assert store.delete(a) and not store.has(a)
    assert not store.delete(a)
    with store._db() as con:  # simulate a crash between rename and index insert
        con.execute("DELETE FROM runs WHERE key = ?", (b,))
    assert store.list_runs()["key"].tolist() == [b]
    assert not any(store.tmp_dir.iterdir())


def test_requests_map_to_runs(store):
    meta, tokens, steps, lens, tensors = _fake_run()
    key = content_key({"r": 1})
    assert store.run_for_request("req") is None
    store.write(key, meta, tokens, steps, lens, tensors)
    store.remember_request("req", key)
    assert store.run_for_request("req") == key
    store.delete(key)
    assert store.run_for_request("req") is None


def test_unwritable_root_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CacheError, match="not writable"):
        RunStore(blocker / "cache")
