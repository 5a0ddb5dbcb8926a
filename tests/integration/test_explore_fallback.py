"""Explore without a usable ``?run=`` opens the newest *healthy* run and shows the URL warnings
first (issue 15 item 5): a damaged newest run must not hide them or the healthy runs."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from backend.store.runs import RunStore, content_key

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


def _cache_with_damaged_newest(tiny_run, tmp_path) -> tuple[RunStore, str, str]:
    """A copy of the tiny cache plus a newer run (same content, own key) whose tokens.parquet
    has a same-size bit flip: listed as ok by the cheap checks, refused by the checksums."""
    store, healthy = tiny_run
    copy = RunStore(tmp_path / "cache")  # only the tiny run (other tests may add runs to its cache)
    shutil.copytree(store.path(healthy), copy.runs_dir / healthy)
    assert copy.index_runs([healthy]) == [healthy]
    newest = content_key({"newest": "damaged"})
    shutil.copytree(copy.path(healthy), copy.runs_dir / newest)
    meta_path = copy.path(newest) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.update(key=newest, created=time.time() + 1000, label="")
    meta_path.write_text(json.dumps(meta))
    assert copy.index_runs([newest]) == [newest]
    tokens = copy.path(newest) / "tokens.parquet"
    data = bytearray(tokens.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tokens.write_bytes(bytes(data))
    listed = copy.list_runs()
    assert listed["key"].iloc[0] == newest and (listed["status"] == "ok").all()
    return copy, healthy, newest


def test_explore_falls_back_to_the_newest_healthy_run_after_the_url_warnings(tiny_run, tmp_path, monkeypatch):
    store, healthy, newest = _cache_with_damaged_newest(tiny_run, tmp_path)
    monkeypatch.setenv("RAML_CACHE_DIR", str(store.root))
    missing = "0123456789abcdef" * 2
    at = AppTest.from_file(MAIN, default_timeout=90)
    at.query_params["run"] = missing
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]  # the damaged newest run is not opened
    warnings = [w.value for w in at.warning]
    assert warnings and "No run 0123456789abcdef" in warnings[0], warnings
    assert healthy in str(at.query_params["run"])

    at = AppTest.from_file(MAIN, default_timeout=90).run()  # no ?run= at all
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert healthy in str(at.query_params["run"]) and newest not in str(at.query_params["run"])
