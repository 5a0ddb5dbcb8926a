"""The cut-point policy for long traces (backend.pipeline.cut_policy, issue 23) as a pure
function: every step boundary is always kept, the chosen stride is the densest that fits the
budget, an explicit ``--cuts`` (``all`` above all) is honoured, and the decision is one line."""

from __future__ import annotations

import random

import pytest

from backend.engine.specs import parse_cuts
from backend.pipeline import cut_policy as cp


def _scored(n: int, cuts: str, boundaries: list[int]) -> set[int]:
    """The cut points the probe engine scores: the parsed cuts plus every boundary (ProbeRequest.all_cuts)."""
    chosen = parse_cuts(cuts, n, boundaries)
    return set(range(n + 1) if chosen is None else chosen) | set(boundaries)


def test_count_cuts_is_the_engine_s_cut_set_with_every_boundary():
    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(1, 3000)
        boundaries = sorted({0, n, *rng.sample(range(n + 1), min(n + 1, rng.randint(0, 60)))})
        k = rng.randint(1, 300)
        assert cp.count_cuts(n, k, boundaries) == len(_scored(n, f"stride:{k}", boundaries))
        assert cp.count_cuts(n, k, len(boundaries) - 1) >= cp.count_cuts(n, k, boundaries)  # a count: an upper bound
    assert cp.count_cuts(100, None, 5) == 101


def test_auto_picks_the_densest_stride_that_fits_and_keeps_every_boundary():
    n = 6000
    boundaries = sorted({0, n, *range(17, n, 23)})  # 261 steps
    fixed_s, per_cut_s, budget = 20.0, 0.5, 300.0
    policy = cp.choose_cuts("auto", n, boundaries, fixed_s=fixed_s, per_cut_s=per_cut_s, budget_s=budget)
    k = policy.stride
    assert policy.requested == "auto" and policy.chosen == f"stride:{k}" and policy.fits
    scored = _scored(n, policy.chosen, boundaries)
    assert set(boundaries) <= scored and len(scored) == policy.n_cuts
    assert policy.estimate_s == pytest.approx(fixed_s + policy.n_cuts * per_cut_s) and policy.estimate_s <= budget
    denser = cp.count_cuts(n, k - 1, boundaries)
    assert fixed_s + denser * per_cut_s > budget  # one step denser would not fit
    assert policy.estimate_all_s == pytest.approx(fixed_s + (n + 1) * per_cut_s)
    line = policy.line()
    assert "budget" in line and f"stride:{k}" in line and "boundary" in line and "--cuts all" in line


def test_auto_scores_every_token_within_the_budget():
    policy = cp.choose_cuts("auto", 400, 20, fixed_s=1.0, per_cut_s=0.01, budget_s=60)
    assert (policy.chosen, policy.stride, policy.n_cuts, policy.fits) == ("all", None, 401, True)
    assert "within" in policy.line()


def test_explicit_cuts_are_honoured_even_over_the_budget():
    for cuts in ("all", "stride:4", "steps"):
        policy = cp.choose_cuts(cuts, 6000, 260, fixed_s=20.0, per_cut_s=0.5, budget_s=10.0)
        assert policy.requested == policy.chosen == cuts and policy.budget_s is None and policy.fits
    assert cp.choose_cuts("all", 6000, 260, fixed_s=20.0, per_cut_s=0.5).n_cuts == 6001
    assert cp.choose_cuts("steps", 6000, 260, fixed_s=20.0, per_cut_s=0.5).n_cuts == 261


def test_when_no_stride_fits_the_boundaries_alone_are_scored_and_it_says_so():
    policy = cp.choose_cuts("auto", 6000, 1500, fixed_s=200.0, per_cut_s=0.5, budget_s=300.0)
    assert policy.chosen == "steps" and not policy.fits and policy.n_cuts == 1501
    assert "no stride fits" in policy.line() and "--budget-s" in policy.line()


def test_budget_default_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(cp.BUDGET_ENV, "42")
    assert cp.default_budget_s() == 42.0
    assert cp.choose_cuts("auto", 10, 2, fixed_s=0.0, per_cut_s=1.0).budget_s == 42.0
    monkeypatch.setenv(cp.BUDGET_ENV, "nonsense")
    assert cp.default_budget_s() == cp.DEFAULT_BUDGET_S


def test_the_context_makes_each_token_dearer():
    assert cp.context_factor(0, 576) == 1.0
    assert cp.context_factor(16000, 576) > 3 * cp.context_factor(500, 576) / 1.2
    fixed_s, per_cut_s = cp.scoring_costs(1000, 12, 0.01, 576)
    assert fixed_s > 1000 * 0.01 and per_cut_s == pytest.approx(12 * 0.01 * cp.context_factor(500, 576))
