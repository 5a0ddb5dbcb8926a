"""Compare page and the proxy-space figure builders: grouping, shared basis, notes, landscapes."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY, build_tiny
from streamlit.testing.v1 import AppTest

from app.views import compare
from backend.plots import proxy as figures_proxy

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
SECOND_TRAJECTORY = "Maya has 5 apples and 8 more, 13. She gives 6 away, 7 left. She eats 1. So she has 7 apples."


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def compare_cache(tmp_path_factory, tiny_run, tiny_llama, smol_tokenizer):
    """Two tiny-Llama runs of one question (one correct, one not), one of another question,
    and one run of a model with a different hidden size (32 instead of 64)."""
    from backend.pipeline.run import RunRequest, run_question
    from backend.store.runs import RunStore

    store0, key0 = tiny_run
    root = tmp_path_factory.mktemp("compare") / "cache"
    shutil.copytree(store0.root, root, ignore=shutil.ignore_patterns("locks", "tmp"))
    store = RunStore(root)
    key1 = run_question(
        RunRequest(
            question=SAMPLE_QUESTION,
            answer="6",
            trajectory=SECOND_TRAJECTORY + " \\boxed{7}",
            model=tiny_llama.name,
            label="sample-b",
        ),
        store,
        loaded=tiny_llama,
    ).key
    other = run_question(
        RunRequest(question="What is 2 + 2?", answer="4", trajectory="2 + 2 = 4. So 4.", model=tiny_llama.name),
        store,
        loaded=tiny_llama,
    ).key
    narrow_model = build_tiny(
        "llama", smol_tokenizer, seed=5, n_layers=2, name="tiny-narrow", hidden=32, ff=64, heads=2, kv_heads=1
    )
    key_narrow = run_question(
        RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, model=narrow_model.name),
        store,
        loaded=narrow_model,
    ).key
    return store, {"a": key0, "b": key1, "other": other, "narrow": key_narrow}


def _app(root, monkeypatch, **params) -> AppTest:
    monkeypatch.setenv("RAML_CACHE_DIR", str(root))
    at = AppTest.from_file(MAIN, default_timeout=120)
    for name, value in params.items():
        at.query_params[name] = value
    at.run()
    return at.switch_page("views/compare.py").run()


def _no_errors(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _chart(at, key_suffix: str) -> dict:
    for el in at.get("plotly_chart"):
        if el.proto.id.endswith(key_suffix):
            return json.loads(el.proto.spec)
    raise AssertionError(f"no chart {key_suffix} in {[el.proto.id for el in at.get('plotly_chart')]}")


def _arr(value) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array ``{"dtype", "bdata", "shape"?}``."""
    if isinstance(value, dict) and "bdata" in value:
        import base64

        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return out.reshape([int(n) for n in str(shape).split(",")]) if shape else out
    return np.asarray(value)


def _has_chart(at, key_suffix: str) -> bool:
    return any(el.proto.id.endswith(key_suffix) for el in at.get("plotly_chart"))


@dataclass
class FakeSurface:
    layer: int = 3
    alphas: np.ndarray = None
    betas: np.ndarray = None
    loss: np.ndarray = None
    path_coords: np.ndarray = None
    path_loss_plane: np.ndarray = None
    path_loss_full: np.ndarray = None
    teacher_forced: np.ndarray = None
    explained_variance: np.ndarray = None
    base_loss: float = 2.0


def _fake_surface() -> FakeSurface:
    a, b = np.linspace(-1, 2, 5), np.linspace(-0.5, 0.5, 4)
    A, B = np.meshgrid(a, b)
    path = np.array([[0.0, 0.0], [0.5, 0.1], [1.2, -0.2]])
    return FakeSurface(
        alphas=a,
        betas=b,
        loss=2 + A**2 + B,
        path_coords=path,
        path_loss_plane=np.array([2.0, 2.3, 3.2]),
        path_loss_full=np.array([2.0, 2.2, 3.0]),
        teacher_forced=np.array([2.0, 1.5, 0.9]),
        explained_variance=np.array([0.8, 0.15]),
    )


# ----------------------------------------------------------------------------- pure helpers
def test_question_groups_groups_by_text_most_runs_first():
    runs = pd.DataFrame(
        {
            "key": ["k1", "k2", "k3", "k4"],
            "question": ["Q one ", "Q two", "Q one", "Q one"],
            "model": ["m1", "m1", "m2", "m1"],
            "correct": [1, None, 0, 1],
        }
    )
    g = compare.question_groups(runs)
    assert g["question"].tolist() == ["Q one", "Q two"]
    assert g["n_runs"].tolist() == [3, 1] and g["n_correct"].tolist() == [2, 0]
    assert g["keys"].iloc[0] == ["k1", "k3", "k4"] and g["models"].iloc[0] == "m1, m2"
    assert g["qid"].iloc[0] == compare.question_id("Q one") and len(g["qid"].iloc[0]) == 12
    assert compare.question_groups(runs.iloc[0:0]).empty


def test_shared_space_problem_names_the_sizes(compare_cache):
    store, keys = compare_cache
    a, b, narrow = (store.open(keys[k]) for k in ("a", "b", "narrow"))
    assert compare.shared_space_problem([a, b]) is None
    note = compare.shared_space_problem([a, narrow])
    assert "different hidden sizes" in note and "tiny-narrow: 32" in note and ": 64" in note
    assert "loss curves only" in note


# ----------------------------------------------------------------------------- figures
def test_compare_loss_figure_marks_correctness_and_answer_seen():
    n = 50
    progress = np.linspace(0, 1, n)
    seen = progress > 0.7
    curves = [
        figures_proxy.CompareCurve("k1", "✓ run 1", progress, np.linspace(3, 1, n), seen, True),
        figures_proxy.CompareCurve("k2", "✗ run 2", progress, np.linspace(3, 2, n), np.zeros(n, bool), False),
        figures_proxy.CompareCurve("k3", "· run 3", progress, np.linspace(2, 2.5, n), np.zeros(n, bool), None),
    ]
    fig = figures_proxy.compare_loss_figure(curves, alpha=1.0)
    named = [t for t in fig.data if t.showlegend is not False and t.name]
    assert [t.name for t in named] == ["✓ run 1", "✗ run 2", "· run 3"]
    ends = [t for t in fig.data if t.mode == "markers"]
    assert [e.marker.symbol for e in ends] == ["star", "x", "circle"]
    assert [e.y[0] for e in ends] == pytest.approx([1.0, 2.0, 2.5])  # alpha 1: EMA = raw
    dotted = [t for t in fig.data if t.line is not None and t.line.dash == "dot"]
    assert len(dotted) == 1  # only run 1 has the answer in its text
    solid = named[0].y
    solid = np.array(solid, dtype=float)
    assert np.isnan(solid[seen]).all() and not np.isnan(solid[~seen]).any()


def test_compare_paths_figure_shares_one_colour_scale():
    coords = [np.array([[0, 0], [1, 1], [2, 0]], float), np.array([[0, 0], [-1, 1]], float)]
    losses = [np.array([3.0, 2.0, 1.0]), np.array([3.0, 4.0])]
    fig = figures_proxy.compare_paths_figure(coords, losses, ["a", "b"], [True, False], keys=["ka", "kb"])
    markers = [t for t in fig.data if t.mode == "markers"]
    assert len(markers) == 2
    assert all(m.marker.cmin == 1.0 and m.marker.cmax == 4.0 for m in markers)
    assert list(markers[0].marker.symbol) == ["square", "circle", "star"]
    assert list(markers[1].marker.symbol) == ["square", "x"]
    assert markers[1].customdata[1][0] == "kb"
    with pytest.raises(ValueError, match="one entry per run"):
        figures_proxy.compare_paths_figure(coords, losses[:1], ["a", "b"], [True, False])


def test_surface_contour_figure_draws_path_on_grid_and_says_proxy():
    s = _fake_surface()
    fig = figures_proxy.surface_contour_figure(s, cursor=2)
    contour = fig.data[0]
    assert contour.type == "contour" and np.asarray(contour.z).shape == (4, 5)
    path = [t for t in fig.data if t.name == "path (step boundaries)"][0]
    np.testing.assert_allclose(path.x, s.path_coords[:, 0])
    assert "L̂ (teacher-forced) = 0.900" in path.text[2] and "L<sub>q</sub>(θ + proj ΔW) = 3.200" in path.text[2]
    cursor = [t for t in fig.data if t.name == "cursor"][0]
    assert (cursor.x[0], cursor.y[0]) == (1.2, -0.2)
    note = fig.layout.title.subtitle.text  # the one layout: the note under the title (issue 26)
    assert "single-layer proxy" in note and "layer 3" in note
    assert "80%" in fig.layout.xaxis.title.text
    bad = _fake_surface()
    bad.loss = bad.loss.T
    with pytest.raises(ValueError, match="surface loss must be"):
        figures_proxy.surface_contour_figure(bad)


def test_surface_3d_and_path_losses_figures():
    s = _fake_surface()
    fig3 = figures_proxy.surface_3d_figure(s, cursor=1)
    assert fig3.data[0].type == "surface" and "single-layer proxy" in fig3.layout.title.text
    path = [t for t in fig3.data if t.name == "path"][0]
    np.testing.assert_allclose(path.z, s.path_loss_plane)  # the path sits on the plane's surface
    assert [t for t in fig3.data if t.name == "cursor"][0].z[0] == pytest.approx(2.3)
    lines = figures_proxy.path_losses_figure(s, cursor=1)
    assert len(lines.data) == 3
    np.testing.assert_allclose(lines.data[0].y, s.teacher_forced)
    np.testing.assert_allclose(lines.data[1].y, s.path_loss_full)


def test_random_landscape_figure_kinds():
    @dataclass
    class Land:
        alphas = np.linspace(-1, 1, 3)
        betas = np.linspace(-1, 1, 3)
        loss = np.arange(9.0).reshape(3, 3)
        seed = 4

    contour = figures_proxy.random_landscape_figure(Land())
    assert contour.data[0].type == "contour" and "seed 4" in contour.layout.title.text
    surface = figures_proxy.random_landscape_figure(Land(), kind="surface")
    assert surface.data[0].type == "surface"
    with pytest.raises(ValueError, match="kind must be"):
        figures_proxy.random_landscape_figure(Land(), kind="mesh")


# ----------------------------------------------------------------------------- page
def test_compare_page_shows_runs_of_one_question_in_one_basis(compare_cache, monkeypatch):
    store, keys = compare_cache
    qid = compare.question_id(SAMPLE_QUESTION)
    at = _app(store.root, monkeypatch, q=qid)
    _no_errors(at)
    # the narrow model's run is in this group too: deselect it to get a shared basis
    runs_select = at.multiselect(key=f"compare_runs_{qid}")
    assert set(runs_select.value) == {keys["a"], keys["b"], keys["narrow"]}
    assert _has_chart(at, "compare_loss_chart") and not _has_chart(at, "compare_path_chart")
    assert any("different hidden sizes" in i.value for i in at.info)

    runs_select.set_value([keys["a"], keys["b"]]).run()
    _no_errors(at)
    loss = _chart(at, "compare_loss_chart")
    names = [t.get("name") for t in loss["data"] if t.get("showlegend") is not False and t.get("name")]
    assert len(names) == 2 and any(n.startswith("✗ sample-b") for n in names)
    path = _chart(at, "compare_path_chart")
    markers = [t for t in path["data"] if t.get("mode") == "markers"]
    run_a, run_b = store.open(keys["a"]), store.open(keys["b"])
    assert [len(_arr(m["x"])) for m in markers] == [len(run_a.steps) + 1, len(run_b.steps) + 1]
    # one basis: both paths start at the shared no-trajectory point
    assert _arr(markers[0]["x"])[0] == pytest.approx(_arr(markers[1]["x"])[0], abs=1e-5)
    assert any("trustworthiness" in c.value for c in at.caption)
    assert at.query_params["q"] in (qid, [qid]) and str(at.query_params["method"]).strip("[]'") == "pca"

    at.radio(key="compare_method").set_value("umap").run()
    _no_errors(at)
    assert "UMAP" in _chart(at, "compare_path_chart")["layout"]["title"]["text"]
    at.radio(key="compare_space").set_value("hidden").run()
    _no_errors(at)
    assert "hidden state" in _chart(at, "compare_path_chart")["layout"]["title"]["text"]


def test_compare_page_bad_url_and_empty_cache(compare_cache, tmp_path, monkeypatch):
    store, _ = compare_cache
    at = _app(store.root, monkeypatch, q="nonsense", layer="x")
    _no_errors(at)
    assert any("No question 'nonsense'" in w.value for w in at.warning)
    empty = _app(tmp_path / "empty", monkeypatch)
    _no_errors(empty)
    assert any("No runs in the cache" in i.value for i in empty.info)


def _wait_job(store, job_id):
    from backend.jobs import wait_for

    return wait_for(store, job_id, timeout=300)  # the server's worker (a thread of this process) runs it


def test_compare_page_computes_and_caches_the_landscapes(compare_cache, tiny_llama, monkeypatch, request):
    from backend.engine import provider

    store, keys = compare_cache
    provider.register(tiny_llama)
    request.addfinalizer(lambda: provider.unregister(tiny_llama.name))
    qid = compare.question_id("What is 2 + 2?")
    at = _app(store.root, monkeypatch, q=qid)
    _no_errors(at)
    assert not _has_chart(at, "compare_surface_chart")
    at.number_input(key="compare_surface_grid").set_value(3).run()
    at.button(key="compare_surface_go").click().run()  # submits a surface job
    _no_errors(at)
    _wait_job(store, at.session_state["jobs_last_submitted"])
    at.run()
    _no_errors(at)
    spec = _chart(at, "compare_surface_chart")
    assert _arr(spec["data"][0]["z"]).shape == (3, 3)
    assert "single-layer proxy" in json.dumps(spec["layout"]["title"], ensure_ascii=False)
    assert _has_chart(at, "compare_surface_path")
    at.number_input(key="compare_random_grid").set_value(3).run()
    at.button(key="compare_random_go").click().run()
    _no_errors(at)
    _wait_job(store, at.session_state["jobs_last_submitted"])
    at.run()
    _no_errors(at)
    assert _arr(_chart(at, "compare_random_chart")["data"][0]["z"]).shape == (3, 3)

    # reopening: both come from the cache next to the run, no model and no button needed
    provider.unregister(tiny_llama.name)
    again = _app(store.root, monkeypatch, q=qid)
    again.number_input(key="compare_surface_grid").set_value(3).run()
    again.number_input(key="compare_random_grid").set_value(3).run()
    _no_errors(again)
    assert _has_chart(again, "compare_surface_chart") and _has_chart(again, "compare_random_chart")
    assert any("from the cache" in c.value for c in again.caption)
    again.radio(key="compare_surface_view").set_value("3-D").run()
    _no_errors(again)
    assert _chart(again, "compare_surface_chart")["data"][0]["type"] == "surface"


def test_compare_page_model_errors_are_one_line(compare_cache, monkeypatch):
    """A run whose model cannot be loaded: its job fails, and the page says so in one error line."""
    store, keys = compare_cache
    qid = compare.question_id("What is 2 + 2?")
    at = _app(store.root, monkeypatch, q=qid)
    at.number_input(key="compare_surface_grid").set_value(5).run()
    at.button(key="compare_surface_go").click().run()
    assert not at.exception
    job = _wait_job(store, at.session_state["jobs_last_submitted"])
    assert job.state == "failed"
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "\n" not in at.error[0].value and "Traceback" not in at.error[0].value
    assert at.error[0].value.startswith(f"Job #{job.id} failed: ")


def test_compare_never_preselects_a_damaged_run(tmp_path, tiny_llama, monkeypatch):
    """Issue 27: Compare preselected every run of the question, a damaged one too (the page then
    failed on it); a damaged run stays selectable but is not chosen by default."""
    from backend.pipeline.run import RunRequest, run_question
    from backend.store.runs import RunStore

    store = RunStore(tmp_path / "cache")
    keys = [
        run_question(
            RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=t, model=tiny_llama.name),
            store,
            loaded=tiny_llama,
        ).key
        for t in (SAMPLE_TRAJECTORY, SAMPLE_TRAJECTORY + " So the answer is 6.")
    ]
    steps = store.path(keys[1]) / "steps.parquet"
    steps.write_bytes(steps.read_bytes()[:-20])  # truncated: listed as damaged
    monkeypatch.setenv("RAML_CACHE_DIR", str(store.root))
    main = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
    at = AppTest.from_file(main, default_timeout=180).run()
    at.switch_page("views/compare.py").run()
    assert not at.exception
    picker = next(m for m in at.multiselect if m.label == "Runs")
    assert len(picker.options) == 2, "the damaged run can still be chosen by hand"
    assert picker.value == [keys[0]], "only the healthy run is preselected"
