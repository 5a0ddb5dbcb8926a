"""The exact update in the app: Explore's fidelity line and Compare's exact-plane landscape appear
for a run whose exact update (and surface) is cached, and nothing appears without (AppTest, tiny model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY, build_wide_tiny
from tests.integration.test_compare import _arr, _chart, _has_chart

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
FIDELITY_CAPTION = "Exact update · "


@pytest.fixture(scope="module")
def wide_tiny(smol_tokenizer):
    """A tiny Llama wide enough (H = 128) for the chat prompt + probe constraints (P + m ≤ H)."""
    from backend.engine.models import LoadedModel

    model = build_wide_tiny(smol_tokenizer)
    return LoadedModel.from_objects("tiny-wide", model, smol_tokenizer)


@pytest.fixture(scope="module")
def exact_cache(tmp_path_factory, wide_tiny):
    """A tiny-Llama run with its exact update and exact-plane surface cached: (store, key, fidelity)."""
    from backend.analysis.exact import landscape as exact_landscape
    from backend.analysis.exact import run as exact_run
    from backend.pipeline.run import RunRequest, run_question
    from backend.store.runs import RunStore

    store = RunStore(tmp_path_factory.mktemp("exact_app_cache"))
    req = RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, model=wide_tiny.name)
    key = run_question(req, store, loaded=wide_tiny).key
    run = store.open(key)
    result = exact_run.ensure(run, loaded=wide_tiny, store=store)
    exact_landscape.surface(run, result, wide_tiny, store=store)  # default grid: what Compare loads
    return store, key, result.meta["fidelity"]


def _explore(root, monkeypatch, key) -> AppTest:
    monkeypatch.setenv("RAML_CACHE_DIR", str(root))
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.query_params["run"] = key
    return at.run()


def _compare(root, monkeypatch) -> AppTest:
    from app.views import compare

    monkeypatch.setenv("RAML_CACHE_DIR", str(root))
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.query_params["q"] = compare.question_id(SAMPLE_QUESTION)
    at.run()
    return at.switch_page("views/compare.py").run()


def _no_errors(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_explore_shows_the_fidelity_of_a_run_with_exact_data(exact_cache, monkeypatch):
    from backend.plots import exact as fx

    store, key, fidelity = exact_cache
    at = _explore(store.root, monkeypatch, key)
    _no_errors(at)
    lines = [c.value for c in at.caption if c.value.startswith(FIDELITY_CAPTION)]
    assert lines == [FIDELITY_CAPTION + fx.fidelity_line(fidelity)]
    assert "full exact 100%" in lines[0]  # L(θ + ΔW_end) = L̂(end) on the tiny model
    bars = _chart(at, "explore_fidelity_chart")["data"][0]
    assert list(bars["y"])[-1] == "full exact (all layers)"
    assert len(bars["y"]) == len(fx.fidelity_rows(fidelity))


def test_explore_is_silent_without_exact_data(tiny_run, monkeypatch):
    store, key = tiny_run
    at = _explore(store.root, monkeypatch, key)
    _no_errors(at)
    assert not [c for c in at.caption if c.value.startswith(FIDELITY_CAPTION)]
    assert not _has_chart(at, "explore_fidelity_chart")


def test_compare_landscape_tab_shows_the_cached_exact_plane(exact_cache, monkeypatch):
    store, key, _ = exact_cache
    at = _compare(store.root, monkeypatch)
    _no_errors(at)
    spec = _chart(at, "compare_exact_chart")
    assert _arr(spec["data"][0]["z"]).shape == (15, 15)
    assert "distance from the plane" in spec["data"][1]["text"][1]
    assert any("off this plane" in c.value for c in at.caption)


def test_compare_landscape_tab_has_no_exact_plane_without_it(tiny_run, monkeypatch):
    store, _ = tiny_run
    at = _compare(store.root, monkeypatch)
    _no_errors(at)
    assert not _has_chart(at, "compare_exact_chart")


def _html(at) -> list[str]:
    return [str(getattr(e.proto, "body", "")) for e in at.get("html")]


def test_explore_sees_an_exact_update_computed_while_the_page_is_open(tmp_path, wide_tiny, monkeypatch):
    """Issue 25 item 6: the page cache keys derived data on its own stamp, so `raml exact KEY` with
    the server up shows the exact space on the next rerun (not "no exact update yet"); the exact
    space opens at its own default (all layers) and is named as itself, not "hidden state · layer -1"."""
    from backend.analysis.exact import run as exact_run
    from backend.pipeline.run import RunRequest, run_question
    from backend.store.runs import RunStore

    store = RunStore(tmp_path / "cache")
    req = RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, model=wide_tiny.name)
    key = run_question(req, store, loaded=wide_tiny).key
    monkeypatch.setenv("RAML_CACHE_DIR", str(store.root))
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.query_params.update(run=key, space="exact", layer="2")  # a layer borrowed from another space
    at.run()
    _no_errors(at)
    assert any("no exact update yet" in w.value for w in at.warning)
    assert at.query_params["space"] in ("exact", ["exact"])  # the fallback keeps what was asked for

    exact_run.ensure(store.open(key), loaded=wide_tiny, store=store)  # `raml exact KEY`, server up
    at.query_params.pop("layer", None)
    at.run()
    _no_errors(at)
    assert not any("no exact update" in w.value for w in at.warning)
    assert at.selectbox(key="explore_layer").value == -1  # the exact space's own default: all layers
    headings = [h for h in _html(at) if "Path of the steps" in h]
    assert headings and "exact update · all layers" in headings[0], headings
    assert not any("hidden state · layer -1" in h for h in _html(at))
