"""Intervals a researcher can trust (issue 25 item 4): none from fewer than three independent
units (the values are shown instead), and a cluster bootstrap that resamples whole questions, so
a parent and its branches never count as independent samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backend.analysis.dataset import intervals, progress_curves


def test_no_interval_from_fewer_than_three_values():
    two = intervals.mean_interval([0.2, 0.9])
    assert two.n == 2 and two.estimate == pytest.approx(0.55) and np.isnan(two.low) and np.isnan(two.high)
    three = intervals.mean_interval([0.2, 0.9, 0.4])
    assert three.low < three.estimate < three.high
    pair = intervals.paired_statistic_interval([1.0, 2.0], [2.0, 3.0], intervals.ratio_of_means)
    assert np.isnan(pair.low) and pair.estimate == pytest.approx(1.5 / 2.5)
    grid = np.array([[1.0, 1.0], [2.0, np.nan], [3.0, np.nan]])
    mean, low, high, n = intervals.column_mean_intervals(grid)
    assert n.tolist() == [3, 1] and np.isfinite(low[0]) and np.isnan(low[1]) and mean[1] == 1.0
    assert intervals.few_values([0.2, np.nan, 0.9]) == "0.2, 0.9"


def test_cluster_bootstrap_counts_questions_not_runs():
    # four questions; the first is a parent with nine branches that repeat its value
    values = np.array([1.0] * 10 + [0.0, 2.0, 3.0])
    clusters = ["q1"] * 10 + ["q2", "q3", "q4"]
    rows = intervals.mean_interval(values)
    clustered = intervals.mean_interval(values, clusters=clusters)
    assert clustered.estimate == rows.estimate == pytest.approx(values.mean())
    assert clustered.high - clustered.low > 1.5 * (rows.high - rows.low)  # pseudo-replication narrowed it
    # two questions, however many runs: no interval at all
    assert np.isnan(intervals.mean_interval([1.0, 1.1, 1.2, 3.0, 3.1], clusters=list("aaabb")).low)


def test_cluster_bootstrap_of_identical_copies_is_the_bootstrap_of_the_questions():
    rng = np.random.default_rng(1)
    means = rng.normal(size=12)
    copies = np.repeat(means, 4)  # every question run four times, identical results
    labels = np.repeat(np.arange(12), 4)
    clustered = intervals.mean_interval(copies, clusters=labels, n_resamples=4000)
    plain = intervals.mean_interval(means, n_resamples=4000)
    assert clustered.low == pytest.approx(plain.low, abs=0.08) and clustered.high == pytest.approx(plain.high, abs=0.08)
    rho_rows = intervals.paired_statistic_interval(np.repeat(means, 4), copies * 2 + 1, intervals.spearman)
    assert rho_rows.estimate == pytest.approx(1.0)
    col_mean, col_low, col_high, col_n = intervals.column_mean_intervals(copies[:, None], clusters=labels)
    assert col_n[0] == 48 and col_low[0] == pytest.approx(plain.low, abs=0.08)


def test_group_curve_stops_where_fewer_than_the_minimum_of_runs_remain():
    grid = progress_curves.progress_grid(5)
    curves = np.array(
        [
            [3.0, 2.0, 1.0, 0.5, 0.2],
            [3.0, 2.5, 1.5, np.nan, np.nan],
            [3.0, 2.2, np.nan, np.nan, np.nan],
            [3.0, 2.1, 1.1, 0.7, np.nan],
        ]
    )
    frame = progress_curves.group_curves(curves, np.array(["correct"] * 4), grid, order=("all",))
    part = frame[frame["group"] == "all"]
    assert part["n"].tolist() == [4, 4, 3, 2, 1]
    drawn = np.isfinite(part["mean"].to_numpy())
    assert drawn.tolist() == [True, True, True, False, False]  # n < MIN_CURVE_RUNS: stopped
    assert part["mean"].iloc[2] == pytest.approx(np.mean([1.0, 1.5, 1.1]))
    two = progress_curves.group_curves(curves[:2], np.array(["x", "x"]), grid, order=("all",))
    drawn_two = np.isfinite(two[two["group"] == "all"]["mean"].to_numpy())
    assert drawn_two.tolist() == [True, True, True, False, False]  # a group of two: where both remain


def test_word_effects_show_values_instead_of_an_interval_below_three():
    from backend.analysis.dataset.reflection_effect import word_effects

    table = pd.DataFrame(
        {
            "word": ["wait", "wait", "wait", "let me check", "let me check"],
            "progress": [0.1, 0.5, 0.7, 0.3, 0.6],
            "span": [1, 1, 1, 3, 3],
            "rel_change": [0.1, 0.2, 0.3, 0.5, 0.7],
            "control_rel_change": [0.05, 0.1, 0.1, 0.2, 0.3],
            "n_control": [2, 2, 2, 2, 2],
        }
    )
    words = word_effects(table).set_index("word")
    assert words.loc["let me check", "n"] == 2 and np.isnan(words.loc["let me check", "rel_change_low"])
    assert np.isnan(words.loc["let me check", "ratio_low"]) and words.loc["let me check", "values"] == "0.5, 0.7"
    assert np.isfinite(words.loc["wait", "rel_change_low"]) and words.loc["wait", "values"] == ""
    # the same sentence in a parent and its edit: one question, so no interval even for "wait"
    clustered = word_effects(table.assign(cluster=["q", "q", "q", "q", "r"])).set_index("word")
    assert np.isnan(clustered.loc["wait", "rel_change_low"]) and clustered.loc["wait", "units"] == 1
