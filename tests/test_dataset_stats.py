"""Dataset aggregates (backend.analysis.dataset_stats) against a direct pandas computation on the same
runs, their on-disk cache, the Dataset page's figures, and the page itself (AppTest)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY

from backend.analysis import dataset_stats
from backend.analysis.dataset_stats import dataset_stats as compute_stats
from backend.jobs import RunRequest, run_question
from backend.store.runs import RunStore

BINS = 10
OTHER_TRAJECTORY = (
    "Start with 12 marbles. Alternatively, count by pairs: 6 pairs. Wait, pairs of what? "
    "Each pair is 2 marbles, so 6 * 2 = 12. However, the question asks for half, so 12 / 2 = 6. "
    "Hmm, recheck: half of 12 is 6. In any case the answer is \\boxed{6}."
)
WRONG_TRAJECTORY = "Half of 12 is 7. Wait, that seems off. Let me check: 7 + 7 = 14, not 12. I will keep 7 anyway."


@pytest.fixture(scope="module")
def dataset_store(tmp_path_factory, tiny_llama):
    """Seven real tiny-model runs: correct, incorrect and unscored ones, one with stride cuts."""
    store = RunStore(tmp_path_factory.mktemp("dataset_cache"))
    requests = [
        RunRequest(SAMPLE_QUESTION, "6", SAMPLE_TRAJECTORY, label="apples-right"),
        RunRequest(SAMPLE_QUESTION, "7", SAMPLE_TRAJECTORY, label="apples-wrong"),
        RunRequest("What is half of 12 marbles?", "6", OTHER_TRAJECTORY, label="marbles-right"),
        RunRequest("What is half of 12 marbles?", "6", WRONG_TRAJECTORY, label="marbles-wrong"),
        RunRequest("How many marbles are half of 12 marbles?", None, OTHER_TRAJECTORY, label="marbles-self"),
        RunRequest("What is half of 12?", "6", OTHER_TRAJECTORY, cuts="stride:3", label="stride"),
        RunRequest(SAMPLE_QUESTION, None, WRONG_TRAJECTORY, label="apples-self"),
    ]
    keys = []
    for req in requests:
        req.model = tiny_llama.name
        keys.append(run_question(req, store, loaded=tiny_llama).key)
    assert len(set(keys)) == len(keys)
    return store, keys


# ---------------------------------------------------------------------------- direct pandas reference
def _direct(store: RunStore, keys: list[str], bins: int, exclude_after_answer: bool):
    """The definitions of the module docstring, written again with plain pandas."""
    metas = {k: json.loads((store.path(k) / "meta.json").read_text()) for k in keys}
    group = {k: {True: "correct", False: "incorrect", None: "unknown"}[m["correct"]] for k, m in metas.items()}
    tokens = pd.concat(
        [
            pd.read_parquet(store.path(k) / "tokens.parquet").assign(
                key=k, n=metas[k]["summary"]["n_tokens"], group=group[k]
            )
            for k in keys
        ],
        ignore_index=True,
    )
    tokens["loss"] = tokens["loss"].astype("float64")  # stored as float32; sum in float64 like the module

    kept = tokens[~tokens["after_answer_seen"]] if exclude_after_answer else tokens
    kept = kept.assign(bin=np.minimum(kept["cut"] * bins // kept["n"], bins - 1))
    per_run = kept.groupby(["group", "key", "bin"], as_index=False)["loss"].mean()
    stats = dict(mean="mean", std="std", n_runs="count", q25=lambda s: s.quantile(0.25), q75=lambda s: s.quantile(0.75))
    curves = [per_run.groupby("bin")["loss"].agg(**stats).reset_index().assign(group="all")]
    for name, part in per_run.groupby("group"):
        curves.append(part.groupby("bin")["loss"].agg(**stats).reset_index().assign(group=name))
    curve = pd.concat(curves, ignore_index=True)

    marks = pd.DataFrame([dict(m, key=k) for k in keys for m in metas[k]["reflections"]])
    loss = tokens[["key", "cut", "loss", "after_answer_seen"]]
    marks = marks.merge(
        loss.rename(columns={"cut": "cut_before", "loss": "loss_before"}).drop(columns="after_answer_seen"),
        on=["key", "cut_before"],
    )
    marks = marks.merge(
        loss.rename(columns={"cut": "cut_after", "loss": "loss_after", "after_answer_seen": "late"}),
        on=["key", "cut_after"],
    )
    if exclude_after_answer:
        marks = marks[~marks["late"]]
    marks = marks.assign(
        rel=(marks["loss_after"] - marks["loss_before"]).abs() / marks["loss_before"], word=marks["word"].str.lower()
    )
    words = marks.groupby("word").agg(
        count=("rel", "size"),
        n_runs=("key", "nunique"),
        mean_rel_change=("rel", "mean"),
        median_rel_change=("rel", "median"),
    )

    prev = tokens[["key", "cut", "loss"]].assign(cut=tokens["cut"] + 1).rename(columns={"loss": "prev_loss"})
    steps = tokens.merge(prev, on=["key", "cut"])
    inside = {
        (k, c) for k in keys for m in metas[k]["reflections"] for c in range(m["cut_before"] + 1, m["cut_after"] + 1)
    }
    steps = steps[[(k, c) not in inside for k, c in zip(steps["key"], steps["cut"])]]
    if exclude_after_answer:
        steps = steps[~steps["after_answer_seen"]]
    rel = (steps["loss"] - steps["prev_loss"]).abs() / steps["prev_loss"]
    return metas, curve, words, float(rel.mean()), len(rel)


@pytest.mark.parametrize("exclude_after_answer", [True, False])
def test_aggregates_equal_a_direct_pandas_computation(dataset_store, exclude_after_answer):
    store, keys = dataset_store
    stats = compute_stats(store, keys, bins=BINS, exclude_after_answer=exclude_after_answer, use_cache=False)
    metas, curve, words, baseline, baseline_count = _direct(store, keys, BINS, exclude_after_answer)

    assert set(stats.runs["group"]) == {"correct", "incorrect", "unknown"}  # the fixture covers every group
    runs = stats.runs.set_index("key")
    for key, meta in metas.items():
        assert runs.loc[key, "final_loss"] == pytest.approx(meta["summary"]["final_loss"])
        assert runs.loc[key, "n_tokens"] == meta["summary"]["n_tokens"]
        assert runs.loc[key, "label"] == meta["label"]

    got = stats.curve[stats.curve["n_runs"] > 0].set_index(["group", "bin"]).sort_index()
    want = curve.set_index(["group", "bin"]).sort_index()
    assert got.index.equals(want.index)
    for column in ("mean", "std", "q25", "q75"):
        np.testing.assert_allclose(got[column].to_numpy(float), want[column].to_numpy(float), rtol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(got["n_runs"].to_numpy(), want["n_runs"].to_numpy())
    sem = want["std"] / np.sqrt(want["n_runs"])
    np.testing.assert_allclose(got["sem"].to_numpy(float), sem.to_numpy(float), rtol=1e-9, equal_nan=True)

    assert stats.baseline["count"] == baseline_count > 0
    assert stats.baseline["mean_rel_change"] == pytest.approx(baseline, rel=1e-9)
    table = stats.reflections.set_index("word").sort_index()
    words = words.sort_index()
    assert list(table.index) == list(words.index) and len(words) >= (3 if exclude_after_answer else 5)
    np.testing.assert_array_equal(table["count"].to_numpy(), words["count"].to_numpy())
    np.testing.assert_array_equal(table["n_runs"].to_numpy(), words["n_runs"].to_numpy())
    for column in ("mean_rel_change", "median_rel_change"):
        np.testing.assert_allclose(table[column].to_numpy(float), words[column].to_numpy(float), rtol=1e-9)
    np.testing.assert_allclose(
        table["ratio"].to_numpy(float), (words["mean_rel_change"] / baseline).to_numpy(), rtol=1e-9
    )


def test_stride_run_bins_only_its_cut_points(dataset_store):
    store, keys = dataset_store
    stride_key = keys[5]
    stats = compute_stats(store, [stride_key], bins=BINS, exclude_after_answer=False, use_cache=False)
    tokens = store.open(stride_key).tokens
    n = store.open(stride_key).meta["summary"]["n_tokens"]
    assert len(tokens) < n + 1  # every 3rd cut only
    bins = np.minimum(tokens["cut"].to_numpy() * BINS // n, BINS - 1)
    expected = pd.Series(tokens["loss"].to_numpy()).groupby(bins).mean()
    curve = stats.curve[(stats.curve["group"] == "all") & (stats.curve["n_runs"] > 0)]
    np.testing.assert_allclose(curve["mean"].to_numpy(), expected.to_numpy(), rtol=1e-12)
    # a per-token change needs two consecutive cut points, and a token outside reflection words
    cuts = set(tokens["cut"].tolist())
    marks = store.open(stride_key).meta["reflections"]
    inside = {c for m in marks for c in range(m["cut_before"] + 1, m["cut_after"] + 1)}
    assert stats.baseline["count"] == sum(1 for c in cuts - inside if c - 1 in cuts) < len(cuts) / 2


def test_disk_cache_reuses_sets_and_per_run_digests(tmp_path, dataset_store, monkeypatch):
    source, keys = dataset_store
    store = RunStore(tmp_path / "cache")
    for key in keys[:4]:
        shutil.copytree(source.path(key), store.path(key))
    first = compute_stats(store, bins=BINS)
    assert not first.from_cache and len(first.runs) == 4

    reads = []
    real_read = dataset_stats._read_run
    monkeypatch.setattr(dataset_stats, "_read_run", lambda s, k: reads.append(k) or real_read(s, k))
    again = compute_stats(store, bins=BINS)
    assert again.from_cache and reads == []
    pd.testing.assert_frame_equal(again.curve, first.curve)
    pd.testing.assert_frame_equal(again.reflections, first.reflections)
    pd.testing.assert_frame_equal(again.runs, first.runs)
    assert again.baseline == first.baseline

    shutil.copytree(source.path(keys[4]), store.path(keys[4]))  # one new run: only it is read
    grown = compute_stats(store, bins=BINS)
    assert not grown.from_cache and len(grown.runs) == 5 and reads == [keys[4]]
    fresh = compute_stats(store, bins=BINS, use_cache=False)
    pd.testing.assert_frame_equal(grown.curve, fresh.curve)
    pd.testing.assert_frame_equal(grown.reflections, fresh.reflections)

    other = compute_stats(store, bins=20)  # other settings: another aggregate
    assert not other.from_cache and other.curve["bin"].max() == 19


def test_damaged_run_is_skipped_and_named(tmp_path, dataset_store):
    source, keys = dataset_store
    store = RunStore(tmp_path / "cache")
    for key in keys[:3]:
        shutil.copytree(source.path(key), store.path(key))
    (store.path(keys[1]) / "tokens.parquet").write_bytes(b"damaged")
    stats = compute_stats(store, bins=BINS)
    assert len(stats.runs) == 2 and keys[1] not in set(stats.runs["key"])
    assert stats.skipped == [f"run {keys[1]}: tokens.parquet is missing or damaged"]


def test_bad_arguments(dataset_store):
    store, _ = dataset_store
    with pytest.raises(ValueError, match="bins"):
        compute_stats(store, bins=0)
    from backend.errors import RunNotFoundError

    with pytest.raises(RunNotFoundError):
        compute_stats(store, ["../etc"])


def test_canonical_word():
    assert [dataset_stats.canonical_word(w) for w in ("Wait", "Hmmm", "HOWEVER", "let  me check", "Re-check")] == [
        "wait",
        "hmm",
        "however",
        "let me check",
        "recheck",
    ]


# ---------------------------------------------------------------------------- figures
def test_figures_draw_the_aggregates(dataset_store):
    from backend.plots import dataset as fd

    store, keys = dataset_store
    stats = compute_stats(store, keys, bins=BINS, use_cache=False)
    fig = fd.mean_loss_curve_figure(stats.curve, band="ci95")
    lines = [t for t in fig.data if t.mode == "lines" and t.fill != "toself"]
    assert [t.name.split(" (")[0] for t in lines] == ["correct", "incorrect", "no reference"]
    correct_curve = stats.curve[stats.curve["group"] == "correct"]
    np.testing.assert_allclose(np.asarray(lines[0].y, float), correct_curve["mean"].to_numpy(), equal_nan=True)
    assert any(t.fill == "toself" for t in fig.data)  # the band
    assert fig.layout.xaxis.title.text.startswith("progress") and "nats" in fig.layout.yaxis.title.text
    only_all = fd.mean_loss_curve_figure(stats.curve, band="iqr", split=False)
    assert [t.name.split(" (")[0] for t in only_all.data if t.fill != "toself"] == ["all runs"]
    lower, upper = fd.band_bounds(correct_curve, "std")
    np.testing.assert_allclose(upper - lower, 2 * correct_curve["std"].to_numpy(), equal_nan=True)
    with pytest.raises(ValueError, match="unknown band"):
        fd.band_bounds(correct_curve, "nope")

    scatter = fd.final_loss_vs_length_figure(stats.runs)
    clicked_keys = {row[0] for trace in scatter.data for row in trace.customdata}
    assert clicked_keys == set(keys)
    xs = sorted(x for trace in scatter.data for x in trace.x)
    assert xs == sorted(stats.runs["n_tokens"].tolist())
    box = fd.final_loss_by_correctness_figure(stats.runs)
    assert sorted(len(t.y) for t in box.data) == sorted(stats.runs["group"].value_counts().tolist())

    bars = fd.reflection_effect_figure(stats.reflections, stats.baseline)
    assert sorted(bars.data[0].y) == sorted(stats.reflections["word"])
    baseline_line = [t for t in bars.data if t.name.startswith("ordinary token")][0]
    assert list(baseline_line.x) == pytest.approx([stats.baseline["mean_rel_change"]] * 2)


# ---------------------------------------------------------------------------- the page
def _page(monkeypatch, root, query: dict | None = None):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("RAML_CACHE_DIR", str(root))
    at = AppTest.from_file("../app/views/dataset.py", default_timeout=120)
    for name, value in (query or {}).items():
        at.query_params[name] = value
    return at.run()


def test_dataset_page_renders_charts_and_table(monkeypatch, dataset_store):
    store, keys = dataset_store
    at = _page(monkeypatch, store.root)
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Runs"] == str(len(keys))
    charts = {chart.key for chart in at.get("plotly_chart")}  # one per claim view (tests/test_dataset_claims.py)
    assert {"claims_descent", "claims_length", "claims_map", "claims_inner"} <= charts
    questions = at.dataframe[-1].value
    assert set(questions["key"]) == set(keys)

    filtered = _page(monkeypatch, store.root, {"q": "marbles"})
    assert {m.label: m.value for m in filtered.metric}["Runs"] == "3"
    nothing = _page(monkeypatch, store.root, {"q": "no such words"})
    assert "No runs match" in nothing.warning[0].value
    unknown = _page(monkeypatch, store.root, {"model": "not-a-model"})
    assert "No runs of model 'not-a-model'" in unknown.warning[0].value and not unknown.exception


def test_dataset_page_empty_cache(monkeypatch, tmp_path):
    at = _page(monkeypatch, tmp_path / "empty")
    assert not at.exception and "No runs in the cache yet" in at.info[0].value


def test_click_helpers():
    from app.views import dataset as page

    event = {"selection": {"points": [{"customdata": ["abc123", "hover text"], "x": 1}], "point_indices": [0]}}
    assert page._clicked_key(event) == "abc123"
    assert page._clicked_key({"selection": {"points": []}}) is None
    assert page._clicked_key(None) is None
    runs = pd.DataFrame({"model": ["a", "b", "a"], "question": ["Half of 12?", "x", "y"], "label": ["m1", "m2", "M3"]})
    assert page.filter_runs(runs, "a", "").index.tolist() == [0, 2]
    assert page.filter_runs(runs, page.ALL_MODELS, "m3").index.tolist() == [2]
    assert page.filter_runs(runs, page.ALL_MODELS, "HALF").index.tolist() == [0]
