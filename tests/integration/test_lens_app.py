"""Explore's lens switch (docs/lens.md): ``?lens=tuned`` draws the run's tuned-lens grid, says in one
line what to do when there is none, and the switch keeps the URL in step."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


@pytest.fixture()
def own_cache(tiny_run, tmp_path):
    from backend.store.runs import RunStore

    store, key = tiny_run
    root = tmp_path / "cache"
    shutil.copytree(store.root, root, ignore=shutil.ignore_patterns("locks", "tmp"))
    return RunStore(root), key


def _app(root, monkeypatch, **params) -> AppTest:
    monkeypatch.setenv("RAML_CACHE_DIR", str(root))
    at = AppTest.from_file(MAIN, default_timeout=90)
    for name, value in params.items():
        at.query_params[name] = value
    return at.run()


def _lens_z(at) -> np.ndarray:
    for el in at.get("plotly_chart"):
        if el.proto.id.endswith("explore_lens_chart"):
            z = json.loads(el.proto.spec)["data"][0]["z"]
            if isinstance(z, dict):  # plotly's typed-array encoding: {"dtype", "bdata", "shape"}
                shape = [int(n) for n in str(z["shape"]).split(",")]
                return np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(shape).astype(float)
            return np.array(z, dtype=float)
    raise AssertionError("no lens chart")


def test_the_tuned_switch_without_a_lens_says_how_to_train_one(own_cache, monkeypatch):
    store, key = own_cache
    at = _app(store.root, monkeypatch, run=key, lens="tuned")
    assert not at.exception and not at.error, [e.value for e in at.exception]
    assert at.radio(key="explore_lens_kind").value == "tuned"
    assert any("No tuned lens for" in i.value and "raml lens train" in i.value for i in at.info)
    at = _app(store.root, monkeypatch, run=key, lens="sideways")
    assert any("lens='sideways' is not one of logit, tuned" in w.value for w in at.warning)


def test_the_tuned_grid_is_drawn_and_the_switch_keeps_the_url(own_cache, monkeypatch, tiny_llama):
    from backend.analysis.lens.compute_grid import compute_tuned_grid
    from backend.analysis.lens.train import LensBudget, train_lens
    from backend.plots.figures import lens_grid

    store, key = own_cache
    run = store.open(key)
    at = _app(store.root, monkeypatch, run=key, lens="tuned")
    assert not any(b.label == "Compute the tuned-lens grid" for b in at.button)  # no lens yet: no button
    train_lens(store, tiny_llama, LensBudget(tokens=256, epochs=1, generations=False))
    at = _app(store.root, monkeypatch, run=key, lens="tuned")
    assert any(b.label == "Compute the tuned-lens grid" for b in at.button)  # lens, no grid: the job's button
    frame = compute_tuned_grid(run, tiny_llama, store)
    at = _app(store.root, monkeypatch, run=key, lens="tuned")
    assert not at.exception and not at.error
    assert "Tuned lens" in "\n".join(h.value for h in at.html)
    np.testing.assert_array_equal(_lens_z(at), lens_grid(frame, "nll")[0])
    at.radio(key="explore_lens_kind").set_value("logit").run()
    assert "lens" not in at.query_params
    np.testing.assert_array_equal(_lens_z(at), lens_grid(run.lens, "nll")[0])
    assert not np.array_equal(lens_grid(frame, "nll")[0], lens_grid(run.lens, "nll")[0])
