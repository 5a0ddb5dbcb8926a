"""Do the importance methods agree? (issue 21 item 3): Spearman and Kendall between ablation,
receiver-head attention and counterfactual importance, with bootstrap intervals; golden values
computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from backend.analysis.importance import agreement


def test_golden_spearman_and_kendall():
    # d = rank differences (-1, 1, -1, 1, 0): rho = 1 - 6*4/(5*24) = 0.8; 2 of 10 pairs discordant: tau = 0.6
    result = agreement.rank_agreement([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], a="ablation", b="attention")
    assert (result.spearman, result.kendall, result.n) == (0.8, 0.6, 5)
    assert result.spearman_low <= 0.8 <= result.spearman_high and result.spearman_high <= 1.0
    assert result.kendall_low <= 0.6 <= result.kendall_high
    again = agreement.rank_agreement([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], a="ablation", b="attention")
    assert again == result  # seeded bootstrap


def test_reversed_order_nan_steps_and_too_few():
    result = agreement.rank_agreement([3, np.nan, 2, 1, 0], [0, 5, 1, 2, 3])  # step 1 has no first measure
    assert (result.n, result.spearman, result.kendall) == (4, -1.0, -1.0)
    short = agreement.rank_agreement([1, 2, np.nan], [2, 1, 3])
    assert short.spearman is None and short.note == "2 steps with both measures (need 3)"
    flat = agreement.rank_agreement([1, 1, 1, 1], [1, 2, 3, 4])
    assert flat.spearman is None and flat.note == "one measure is constant over these steps"


def test_method_vectors_from_payload_and_counterfactual_rows():
    payload = {
        "ablation": [0.5, None, 0.1, 0.3],
        "attention": {"head_mean": [0.1, 0.2, 0.3, 0.4], "receiver_mean": [0.4, 0.1, 0.2, 0.3]},
    }
    rows = [{"step": 0, "answer_kl": 0.9}, {"step": 2, "answer_kl": 0.0}, {"step": 3, "answer_kl": None}]
    vectors = agreement.method_vectors(payload, rows, 4)
    np.testing.assert_array_equal(vectors["ablation"], [0.5, np.nan, 0.1, 0.3])
    np.testing.assert_array_equal(vectors["attention"], [0.4, 0.1, 0.2, 0.3])  # receiver heads, not the mean
    np.testing.assert_array_equal(vectors["resampling"], [0.9, np.nan, 0.0, np.nan])
    pairs = [(a.a, a.b) for a in agreement.agreement_table(vectors)]
    assert pairs == [("ablation", "attention"), ("ablation", "resampling"), ("attention", "resampling")]
    assert agreement.method_vectors(None, None, 4) == {}


def test_pooled_uses_within_run_ranks_and_a_cluster_bootstrap():
    # run 1 agrees perfectly on a nats scale, run 2 disagrees perfectly on a tiny scale: pooled ranks cancel
    r1 = {"ablation": np.array([1.0, 2.0, 3.0]), "attention": np.array([10.0, 20.0, 30.0])}
    r2 = {"ablation": np.array([0.001, 0.002, 0.003]), "attention": np.array([0.3, 0.2, 0.1])}
    pooled = agreement.pooled_agreement([r1, r2], "ablation", "attention")
    assert (pooled.n, pooled.runs, pooled.spearman) == (6, 2, 0.0)
    same = agreement.pooled_agreement([r1, r1, r1], "ablation", "attention")
    assert (same.spearman, same.kendall, same.spearman_low, same.spearman_high) == (1.0, 1.0, 1.0, 1.0)
    np.testing.assert_array_equal(
        agreement.within_run_ranks(np.array([5.0, np.nan, 1.0, 5.0])), [0.75, np.nan, 0.0, 0.75]
    )
    report = agreement.dataset_agreement({"q1": [r1], "q2": [r2, r1]})
    assert [(p["a"], p["b"], p["runs"]) for p in report["pooled"]] == [("ablation", "attention", 3)]
    assert [(q["question"], q["runs"]) for q in report["per_question"]] == [("q1", 1), ("q2", 2)]
    assert report["per_question"][0]["spearman"] == 1.0


@pytest.mark.parametrize("n", [3, 8])
def test_bootstrap_interval_matches_a_direct_resample(n):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=n), rng.normal(size=n)
    result = agreement.rank_agreement(x, y, n_boot=200, seed=7)
    from scipy.stats import spearmanr

    draws = np.random.default_rng(7).integers(0, n, size=(200, n))
    rhos = [spearmanr(x[i], y[i]).statistic for i in draws if np.ptp(x[i]) and np.ptp(y[i])]
    assert result.spearman_low == pytest.approx(np.percentile(rhos, 2.5), abs=1e-6)
    assert result.spearman_high == pytest.approx(np.percentile(rhos, 97.5), abs=1e-6)


def test_the_pages_table_shows_intervals_and_reasons():
    from app.panels.importance import agreement_frame

    rows = [
        agreement.rank_agreement([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], a="ablation", b="attention").to_json(),
        agreement.rank_agreement([1, 2], [2, 1], a="ablation", b="resampling").to_json(),
    ]
    table = agreement_frame(rows)
    assert list(table["methods"]) == ["ablation · attention", "ablation · resampling"]
    assert table["Spearman ρ"][0].startswith("+0.80 [") and table["Kendall τ"][0].startswith("+0.60 [")
    assert table["Spearman ρ"][1] == "—" and table["note"][1] == "2 steps with both measures (need 3)"
