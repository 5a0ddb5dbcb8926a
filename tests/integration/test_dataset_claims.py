"""RaML's claims across a dataset (backend.analysis.dataset.claims and its modules): every statistic
against a direct pandas/numpy computation on the same runs, intervals that contain their
estimates, the on-disk cache, ``raml stats --json`` and the Dataset page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY
from scipy.stats import spearmanr
from sklearn.metrics.pairwise import cosine_similarity as sk_cosine

from backend.analysis.dataset import intervals, model_pairs, reflection_effect, task_map
from backend.analysis.dataset.claims import ClaimsSettings, dataset_claims
from backend.analysis.spaces import samples
from backend.analysis.spaces.proxy import space_vectors
from backend.pipeline.run import RunRequest, run_question
from backend.store.runs import RunStore

ROOT = Path(__file__).resolve().parents[2]
MARBLES = "What is half of 12 marbles?"
TRAJECTORIES = [
    SAMPLE_TRAJECTORY,
    "Start with 12 marbles. Alternatively, count by pairs: 6 pairs. Wait, pairs of what? Each pair is 2 marbles, "
    "so 6 * 2 = 12. However, the question asks for half, so 12 / 2 = 6. Hmm, recheck: half of 12 is 6.",
    "Half of 12 is 7. Wait, that seems off. Let me check: 7 + 7 = 14, not 12. I will keep 7 anyway.",
    "Twelve split into two equal groups. Each group has 6. However, let me verify: 6 + 6 = 12. Wait, yes. "
    "So the answer is 6 marbles, and I am confident about it.",
]


@pytest.fixture(scope="module")
def claims_store(tmp_path_factory, tiny_llama, tiny_qwen2):
    """Two tiny models on the same two questions, several samples (trajectories) each."""
    store = RunStore(tmp_path_factory.mktemp("claims_cache"))
    plan = [
        (SAMPLE_QUESTION, "6", TRAJECTORIES[0]),
        (SAMPLE_QUESTION, "7", TRAJECTORIES[0]),
        (MARBLES, "6", TRAJECTORIES[1]),
        (MARBLES, "6", TRAJECTORIES[2]),
        (MARBLES, "6", TRAJECTORIES[3]),
    ]
    keys = []
    for loaded in (tiny_llama, tiny_qwen2):
        for i, (question, answer, trajectory) in enumerate(plan):
            req = RunRequest(question, answer, trajectory, model=loaded.name, label=f"{loaded.name}-{i}")
            keys.append(run_question(req, store, loaded=loaded).key)
    return store, keys


@pytest.fixture(scope="module")
def report(claims_store):
    store, keys = claims_store
    return dataset_claims(store, keys, ClaimsSettings(grid_points=21, window=6, bins=4))


# ---------------------------------------------------------------------------- intervals
def test_intervals_contain_estimates_and_match_scipy():
    rng = np.random.default_rng(3)
    values = rng.normal(2.0, 1.0, 40)
    iv = intervals.mean_interval(values)
    assert iv.n == 40 and iv.low < iv.estimate < iv.high and iv.estimate == pytest.approx(values.mean())
    assert intervals.mean_interval([5.0, 5.0, 5.0]).as_dict() == {"mean": 5.0, "low": 5.0, "high": 5.0, "n": 3}
    single = intervals.mean_interval([1.0, np.nan])
    assert single.n == 1 and np.isnan(single.low)
    x, y = rng.normal(size=30), rng.normal(size=30)
    y = y + x
    rho = intervals.paired_statistic_interval(x, y, intervals.spearman)
    assert rho.estimate == pytest.approx(spearmanr(x, y).statistic) and rho.low <= rho.estimate <= rho.high
    ratio = intervals.paired_statistic_interval(np.abs(x) + 1, np.abs(y) + 1, intervals.ratio_of_means)
    assert ratio.estimate == pytest.approx((np.abs(x) + 1).mean() / (np.abs(y) + 1).mean())
    grid = rng.normal(size=(12, 5))
    grid[[0, 3], 2] = np.nan
    mean, low, high, n = intervals.column_mean_intervals(grid)
    np.testing.assert_allclose(mean, np.nanmean(grid, 0))
    assert n.tolist() == [12, 12, 10, 12, 12] and np.all(low <= mean) and np.all(mean <= high)


# ---------------------------------------------------------------------------- descent
def _direct_curve(tokens: pd.DataFrame, n: int, grid: np.ndarray) -> np.ndarray:
    """Linear interpolation written out with searchsorted (no np.interp)."""
    kept = tokens[~tokens["after_answer_seen"]]
    x = kept["cut"].to_numpy(float) / n
    y = kept["loss"].to_numpy(float)
    out = np.full(len(grid), np.nan)
    for i, g in enumerate(grid):
        if g < x[0] - 1e-12 or g > x[-1] + 1e-12:
            continue
        j = min(max(int(np.searchsorted(x, g, side="right")) - 1, 0), len(x) - 1)
        if j == len(x) - 1 or x[j] == g:
            out[i] = y[j]
        else:
            out[i] = y[j] + (y[j + 1] - y[j]) * (g - x[j]) / (x[j + 1] - x[j])
    return out


def test_curves_and_group_means_match_direct_computation(claims_store, report):
    store, keys = claims_store
    assert report.runs["key"].tolist() == keys and not report.skipped
    for row, key in enumerate(keys):
        run = store.open(key)
        direct = _direct_curve(run.tokens, run.meta["summary"]["n_tokens"], report.grid)
        np.testing.assert_allclose(report.curves[row], direct, rtol=1e-9, equal_nan=True)
    long = pd.DataFrame(report.curves, columns=report.grid).assign(group=report.runs["group"].to_numpy())
    long = long.melt(id_vars="group", var_name="progress", value_name="loss").dropna()
    expected = pd.concat([long.assign(group="all"), long]).groupby(["group", "progress"])["loss"].agg(["mean", "count"])
    got = report.descent.dropna(subset=["mean"]).set_index(["group", "progress"]).sort_index()
    expected = expected.loc[got.index]
    np.testing.assert_allclose(got["mean"], expected["mean"], rtol=1e-9)
    assert got["n"].tolist() == expected["count"].tolist()
    two_plus = got[got["n"] >= 2]
    assert (two_plus["low"] <= two_plus["mean"] + 1e-12).all() and (two_plus["mean"] <= two_plus["high"] + 1e-12).all()
    final = report.descent_summary.set_index(["group", "statistic"]).loc[("all", "final_loss")]
    assert final["mean"] == pytest.approx(report.runs["final_loss"].mean()) and final["n"] == len(keys)
    drop = report.runs["initial_loss"] - report.runs["final_loss"]
    length = report.length.set_index(["x", "y"]).loc[("n_tokens", "drop")]
    assert length["spearman"] == pytest.approx(spearmanr(report.runs["n_tokens"], drop).statistic)


def test_ema_option_smooths_each_run_before_resampling(claims_store):
    store, keys = claims_store
    raw = dataset_claims(store, keys[:1], ClaimsSettings(grid_points=21, window=6, bins=4))
    smooth = dataset_claims(store, keys[:1], ClaimsSettings(grid_points=21, window=6, bins=4, ema_alpha=0.5))
    tokens = store.open(keys[0]).tokens
    kept = tokens[~tokens["after_answer_seen"]]
    ema = kept["loss"].astype(float).ewm(alpha=0.5, adjust=False).mean().to_numpy()
    x = kept["cut"].to_numpy(float) / store.open(keys[0]).meta["summary"]["n_tokens"]
    inside = (raw.grid >= x[0]) & (raw.grid <= x[-1])
    np.testing.assert_allclose(smooth.curves[0][inside], np.interp(raw.grid[inside], x, ema))
    assert not np.allclose(smooth.curves[0][inside], raw.curves[0][inside])


# ---------------------------------------------------------------------------- reflection
def _direct_occurrences(run, window: int) -> pd.DataFrame:
    tokens = run.tokens.set_index("cut")
    loss = {c: float(v) for c, v, late in zip(tokens.index, tokens["loss"], tokens["after_answer_seen"]) if not late}
    n = run.meta["summary"]["n_tokens"]
    marks = run.meta["reflections"]
    covered = set()
    for m in marks:
        covered.update(range(m["cut_before"], m["cut_after"] + 1))
    rows = []
    for m in marks:
        b, a = m["cut_before"], m["cut_after"]
        if b not in loss or a not in loss:
            continue
        w = a - b
        controls = []
        for tol in (reflection_effect.PROGRESS_TOLERANCE, reflection_effect.WIDER_TOLERANCE):
            starts = [s for s in loss if abs(s - b) / n <= tol and s != b and s + w in loss]
            starts = [s for s in starts if not (set(range(s + 1, s + w + 1)) & covered)]
            if starts:
                controls = [abs(loss[s + w] - loss[s]) / loss[s] for s in sorted(starts)]
                break
        rows.append(
            {
                "word": reflection_effect.canonical_word(m["word"]),
                "rel_change": abs(loss[a] - loss[b]) / loss[b],
                "control_rel_change": np.mean(controls) if controls else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=["word", "rel_change", "control_rel_change"])


def test_reflection_statistics_match_direct_computation(claims_store, report):
    store, keys = claims_store
    direct = pd.concat([_direct_occurrences(store.open(k), 6) for k in keys], ignore_index=True)
    assert len(direct) > 5
    words = report.reflection_words.set_index("word")
    pooled = words.loc["all words"]
    assert pooled["n"] == len(direct)
    assert pooled["rel_change_mean"] == pytest.approx(direct["rel_change"].mean())
    paired = direct.dropna()
    assert pooled["n_matched"] == len(paired)
    assert pooled["ratio"] == pytest.approx(paired["rel_change"].mean() / paired["control_rel_change"].mean())
    assert pooled["difference"] == pytest.approx((paired["rel_change"] - paired["control_rel_change"]).mean())
    for word, part in direct.groupby("word"):
        assert words.loc[word, "n"] == len(part)
        assert words.loc[word, "rel_change_mean"] == pytest.approx(part["rel_change"].mean())
    ok = words[words["n_matched"] >= intervals.MIN_INTERVAL_N]
    assert ((ok["ratio_low"] <= ok["ratio"] + 1e-12) & (ok["ratio"] <= ok["ratio_high"] + 1e-12)).all()
    few = words[words["n_matched"] < intervals.MIN_INTERVAL_N]
    assert few["ratio_low"].isna().all()  # issue 25: no interval from n < 3


def test_event_aligned_average_matches_direct(claims_store, report):
    store, keys = claims_store
    deltas = []
    for key in keys:
        run = store.open(key)
        t = run.tokens
        loss = {c: v for c, v, late in zip(t["cut"], t["loss"].astype(float), t["after_answer_seen"]) if not late}
        for m in run.meta["reflections"]:
            b, a = m["cut_before"], m["cut_after"]
            if b in loss and a in loss and loss[b] > 0:
                deltas.append([loss.get(b + o, np.nan) - loss[b] for o in range(-6, 7)])
    deltas = np.array(deltas)
    words = report.reflection_events[report.reflection_events["series"] == "reflection word"].sort_values("offset")
    np.testing.assert_allclose(words["mean"], np.nanmean(deltas, 0), rtol=1e-9)
    assert words["n"].tolist() == np.isfinite(deltas).sum(0).tolist()
    assert words.set_index("offset").loc[0, "mean"] == 0.0


# ---------------------------------------------------------------------------- inner loop, task map
def test_inner_loop_matches_direct_step_geometry(claims_store, report):
    store, keys = claims_store
    rows = []
    for key in keys:
        run = store.open(key)
        layer = sorted(run.meta["proxy_layers"])[len(run.meta["proxy_layers"]) // 2]
        u = space_vectors(run, layer, "proxy").astype(float)
        size = np.linalg.norm(u[1:] - u[:-1], axis=1)
        cuts = np.concatenate([[0], run.steps["end"].to_numpy()])[1:]
        bins = np.minimum((cuts / run.meta["summary"]["n_tokens"] * 4).astype(int), 3)
        per_run = pd.DataFrame({"bin": bins, "size": size}).groupby("bin")["size"].mean()
        rows += [{"key": key, "bin": b, "size": v} for b, v in per_run.items()]
    expected = pd.DataFrame(rows).groupby("bin")["size"].agg(["mean", "count"])
    got = report.inner_loop.query("measure == 'step_size' and group == 'all'").set_index("bin")
    got = got[got["n"] > 0]
    np.testing.assert_allclose(got["mean"], expected.loc[got.index, "mean"], rtol=1e-6)
    assert got["n"].tolist() == expected.loc[got.index, "count"].tolist()


def test_task_map_similarities_neighbours_and_control(claims_store, report, tiny_llama):
    tm = report.task_map("update", tiny_llama.name)
    keys = tm["points"]["key"].tolist()
    rows = [report.runs["key"].tolist().index(k) for k in keys]
    vectors = report.vectors["update"][rows]
    similarity = sk_cosine(vectors)
    fitted = task_map.fit_map(keys, vectors)
    np.testing.assert_allclose(fitted.similarity, similarity, atol=1e-9)
    first = tm["neighbours"][tm["neighbours"]["rank"] == 1].set_index("key")["neighbour"]
    for i, key in enumerate(keys):
        order = [j for j in np.argsort(-similarity[i]) if j != i]
        assert first[key] == keys[order[0]]
    assert "fewer than 30" in tm["warning"] and 0.0 <= tm["trustworthiness"] <= 1.0
    control = sk_cosine(report.vectors["question"][rows])
    expected_agreement = spearmanr(similarity[np.triu_indices(5, 1)], control[np.triu_indices(5, 1)]).statistic
    assert tm["similarity_agreement_with_control"] == pytest.approx(expected_agreement)
    with pytest.raises(Exception, match="unknown task-map space"):
        report.task_map("nope")


# ---------------------------------------------------------------------------- two models, samples
def test_model_pairs_match_pandas(report, tiny_llama, tiny_qwen2):
    comparison = model_pairs.compare_models(report.runs, report.curves, report.grid, tiny_llama.name, tiny_qwen2.name)
    per = report.runs.groupby(["model", "question"])["final_loss"].mean().unstack("model")
    diff = per[tiny_qwen2.name] - per[tiny_llama.name]
    summary = comparison.summary.set_index("statistic")
    assert summary.loc["final_loss", "n_questions"] == 2
    assert summary.loc["final_loss", "difference"] == pytest.approx(diff.mean())
    assert summary.loc["final_loss", "model_a"] == pytest.approx(per[tiny_llama.name].mean())
    correct = report.runs.assign(c=report.runs["correct"].astype(float)).groupby(["model", "question"])["c"].mean()
    assert summary.loc["accuracy", "model_b"] == pytest.approx(correct[tiny_qwen2.name].mean())
    assert set(comparison.curves["model"]) == {tiny_llama.name, tiny_qwen2.name}


def test_samples_spread_and_mean_update(claims_store, report, tiny_llama):
    store, keys = claims_store
    rows = np.flatnonzero(((report.runs["model"] == tiny_llama.name) & (report.runs["question"] == MARBLES)).to_numpy())
    spread = samples.spread(
        MARBLES,
        report.runs["key"].iloc[rows].tolist(),
        report.curves[rows],
        report.runs["final_loss"].to_numpy()[rows],
        report.grid,
    )
    assert spread.best_final_loss == report.runs["final_loss"].iloc[rows].min()
    np.testing.assert_allclose(spread.curves["mean"], np.nanmean(report.curves[rows], 0), equal_nan=True)
    assert (spread.curves["min"] <= spread.curves["mean"] + 1e-12).all()

    runs = [store.open(k) for k in report.runs["key"].iloc[rows]]
    layer = runs[0].meta["proxy_layers"][1]
    paths = []
    for run in runs:
        u = space_vectors(run, layer, "proxy")
        progress = np.concatenate([[0], run.steps["end"].to_numpy()]) / run.meta["summary"]["n_tokens"]
        paths.append(samples.path_on_grid(u, progress))
        np.testing.assert_allclose(paths[-1][0], u[0], atol=1e-7)  # progress 0 = no trajectory
        np.testing.assert_allclose(paths[-1][-1], u[-1], atol=1e-6)
    mean = samples.mean_path(paths)
    np.testing.assert_allclose(mean, np.mean(paths, axis=0))
    from backend.analysis.landscapes.surfaces import question_ids
    from backend.engine.forward import teacher_forced_loss

    losses = samples.mean_update_losses(runs[0], tiny_llama, layer, mean[[0, -1]])
    ids, m_a = question_ids(runs[0], tiny_llama.tokenizer)
    assert losses[0] == pytest.approx(teacher_forced_loss(tiny_llama.model, ids, m_a), abs=1e-4)  # zero update = L_q(θ)
    assert np.isfinite(losses[1])


# ---------------------------------------------------------------------------- issue 25: summaries, branches
def test_descent_summary_follows_the_after_answer_switch(claims_store):
    """Item 5: with "drop cut points after the answer appears" the table's final L̂ and drop are
    those of the kept cut points (as the curves), and without it those of every cut point."""
    store, keys = claims_store
    on = dataset_claims(store, keys, ClaimsSettings(grid_points=21, window=6, bins=4))
    off = dataset_claims(store, keys, ClaimsSettings(grid_points=21, window=6, bins=4, exclude_after_answer=False))
    kept_final, full_final = [], []
    for key in on.runs["key"]:
        run = store.open(key)
        kept = run.tokens[~run.tokens["after_answer_seen"]]
        kept_final.append(float(kept["loss"].iloc[-1]))
        full_final.append(float(run.summary.final_loss))
    np.testing.assert_allclose(on.runs["final_loss"], kept_final)
    np.testing.assert_allclose(off.runs.set_index("key").loc[on.runs["key"], "final_loss"], full_final)
    assert not np.allclose(kept_final, full_final)  # the answer does appear early in some runs

    def summary(report, statistic):
        table = report.descent_summary
        return float(table[(table["group"] == "all") & (table["statistic"] == statistic)]["mean"].iloc[0])

    assert summary(on, "final_loss") == pytest.approx(np.mean(kept_final))
    assert summary(off, "final_loss") == pytest.approx(np.mean(full_final))
    assert summary(on, "drop") == pytest.approx(np.mean(on.runs["initial_loss"] - np.array(kept_final)))


def test_branches_are_left_out_of_dataset_statistics_unless_asked_then_clustered(tmp_path, tiny_llama):
    """Item 4: a parent and its edits repeat one question. By default the statistics leave the
    branches out; the switch pools them, every interval then resamples whole questions (so two
    questions give no interval however many runs), and ``stats --json`` says each run's parent."""
    from backend.pipeline import branches as branching

    store = RunStore(tmp_path / "cache")
    parent = run_question(
        RunRequest(SAMPLE_QUESTION, "6", SAMPLE_TRAJECTORY, model=tiny_llama.name), store, loaded=tiny_llama
    ).key
    other = run_question(RunRequest(MARBLES, "6", TRAJECTORIES[1], model=tiny_llama.name), store, loaded=tiny_llama).key
    edits = [branching.edit(store, parent, step, "So she has 9 apples. ", loaded=tiny_llama).key for step in (2, 3, 4)]
    settings = ClaimsSettings(grid_points=21, window=6, bins=4)
    default = dataset_claims(store, None, settings)
    assert sorted(default.runs["key"]) == sorted([parent, other])  # branches left out
    pooled = dataset_claims(store, None, ClaimsSettings(grid_points=21, window=6, bins=4, include_branches=True))
    assert sorted(pooled.runs["key"]) == sorted([parent, other, *edits])
    assert dict(zip(pooled.runs["key"], pooled.runs["parent"]))[edits[0]] == parent
    final = pooled.descent_summary.set_index(["group", "statistic"]).loc[("all", "final_loss")]
    assert final["n"] == 5 and np.isnan(final["low"]) and final["values"]  # 2 questions: values, not an interval
    as_rows = intervals.mean_interval(pooled.runs["final_loss"])
    assert np.isfinite(as_rows.low)  # what counting the 5 runs as independent would have claimed

    proc = _cli(store.root, "--json", "--include-branches", "--grid", "21")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["n_runs"] == 5 and {r["key"]: r["parent"] for r in out["runs"]}[edits[1]] == parent
    assert out["settings"]["include_branches"] is True
    plain = json.loads(_cli(store.root, "--json", "--grid", "21").stdout)
    assert plain["n_runs"] == 2 and all(r["parent"] is None for r in plain["runs"])


# ---------------------------------------------------------------------------- cache, CLI, page
def test_report_is_cached_on_disk_and_refreshed_by_a_new_run(claims_store, tiny_llama):
    store, keys = claims_store
    settings = ClaimsSettings(grid_points=21, window=6, bins=4)
    first = dataset_claims(store, keys[:3], settings)
    again = dataset_claims(store, keys[:3], settings)
    assert not first.from_cache and again.from_cache
    pd.testing.assert_frame_equal(first.descent, again.descent, check_dtype=False)
    pd.testing.assert_frame_equal(first.reflection_words, again.reflection_words, check_dtype=False)
    assert list(first.runs["key"]) == list(again.runs["key"])
    assert list((store.path(keys[0]) / "derived").glob("claims-*.npz"))
    bigger = dataset_claims(store, keys[:4], settings)
    assert not bigger.from_cache and len(bigger.runs) == 4
    with pytest.raises(Exception, match="EMA alpha"):
        dataset_claims(store, keys, ClaimsSettings(ema_alpha=2.0))


def _cli(cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "backend", "--cache-dir", str(cache), "stats", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_stats_json_prints_every_aggregate(claims_store, tiny_qwen2):
    store, keys = claims_store
    proc = _cli(store.root, "--json", f"model={tiny_qwen2.name}", "--grid", "21")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["n_runs"] == 5 and {r["model"] for r in out["runs"]} == {tiny_qwen2.name}
    for section in ("descent", "descent_summary", "length", "reflection_words", "reflection_events", "inner_loop"):
        assert out[section], section
    assert f"{tiny_qwen2.name}/update" in out["task_maps"]
    expected = dataset_claims(store, keys[5:], ClaimsSettings(grid_points=21))
    final = [r for r in out["descent_summary"] if r["group"] == "all" and r["statistic"] == "final_loss"][0]
    assert final["mean"] == pytest.approx(expected.runs["final_loss"].mean())
    bad = _cli(store.root, "colour=red")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown filter field 'colour'" in bad.stderr


def test_dataset_page_renders_every_claim_view(monkeypatch, claims_store):
    from streamlit.testing.v1 import AppTest

    store, keys = claims_store
    monkeypatch.setenv("RAML_CACHE_DIR", str(store.root))
    at = AppTest.from_file("../../app/views/dataset.py", default_timeout=120)
    at.query_params["model"] = "all models"
    at = at.run()
    assert not at.exception and not at.error
    charts = {chart.key for chart in at.get("plotly_chart")}
    assert {
        "claims_descent",
        "claims_reflection_forest",
        "claims_reflection_events",
        "claims_length",
        "claims_pairs",
        "claims_samples",
        "claims_map",
        "claims_map_control",
        "claims_inner",
    } <= charts
    assert any("fewer than 30" in w.value for w in at.warning)
    assert set(at.dataframe[-1].value["key"]) == set(keys)


def test_canonical_word_and_groups():
    from backend.analysis.dataset.groups import canonical_word, group_of

    words = ("Wait", "Hmmm", "HOWEVER", "let  me check", "Re-check")
    assert [canonical_word(w) for w in words] == ["wait", "hmm", "however", "let me check", "recheck"]
    assert [group_of(v) for v in (True, False, None, float("nan"))] == ["correct", "incorrect", "unknown", "unknown"]
