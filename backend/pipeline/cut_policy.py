"""The cut-point policy for long traces (issue 23): which cuts a run scores, decided before any
work from this machine's measured throughput and a time budget.

``--cuts auto`` (the CLI's and the Runs page's default) scores every token when that fits the
budget, and otherwise the densest ``stride:K`` that fits it. Every step boundary is always
scored (the probe engine adds the boundaries to any cut set, ``ProbeRequest.all_cuts``), so a
stride only thins the cuts between boundaries. An explicit
``--cuts all | stride:K | steps`` is honoured as given; the policy is still recorded in the run's
meta (``Meta.CUT_POLICY``) with the estimate it was chosen from.

Pure functions: the scoring time of C cuts is ``fixed_s + C * per_cut_s`` (the prefill of the n
trajectory tokens, then C probes of m tokens; ``backend.jobs.estimates`` supplies both from the
machine's measured rate). No torch, no model.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

AUTO = "auto"
DEFAULT_BUDGET_S = 300.0  # seconds the scoring of cut points may take before auto thins the cuts
BUDGET_ENV = "RAML_CUT_BUDGET_S"
DEFAULT_S_PER_TOKEN = 1 / 300  # first guess: probe-engine tokens per second, SmolLM2-135M on 2 CPU cores
DEFAULT_D_MODEL = 576  # SmolLM2-135M


def context_factor(context_tokens: float, d_model: int | None) -> float:
    """How much dearer a token is when it attends to ``context_tokens`` earlier ones: attention
    costs about 4·ctx·d per layer against about 24·d² for the projections and the MLP, so the cost
    doubles near ctx = 6·d (clipped below at 2,048: small models are overhead-bound on a CPU)."""
    scale = max(2048.0, 6.0 * float(d_model or DEFAULT_D_MODEL))
    return 1.0 + max(0.0, float(context_tokens)) / scale


def scoring_costs(n_tokens: int, n_probe: int, s_per_token: float, d_model: int | None = None) -> tuple[float, float]:
    """(fixed_s, per_cut_s) of scoring a trajectory of n tokens with probes of m tokens: the
    prefill of the n tokens, and each cut's m probe tokens, at the average context n / 2."""
    factor = context_factor(n_tokens / 2, d_model)
    return n_tokens * factor * s_per_token, n_probe * factor * s_per_token


def default_budget_s() -> float:
    """``RAML_CUT_BUDGET_S`` if set to a positive number, else ``DEFAULT_BUDGET_S``."""
    try:
        value = float(os.environ.get(BUDGET_ENV, ""))
    except ValueError:
        return DEFAULT_BUDGET_S
    return value if math.isfinite(value) and value > 0 else DEFAULT_BUDGET_S


@dataclass(frozen=True)
class CutPolicy:
    """What was asked, what is scored, and why (stored in meta as ``asdict``)."""

    requested: str  # "auto", "all", "stride:K" or "steps"
    chosen: str  # the cuts scored: "all", "stride:K" or "steps" (never "auto")
    stride: int | None  # K of the chosen stride (None for all / steps)
    budget_s: float | None  # the budget auto compared against (None: cuts given explicitly)
    estimate_s: float  # scoring time of the chosen cuts (seconds)
    estimate_all_s: float  # scoring time of every cut, for the one-line reason
    n_cuts: int  # cut points scored (boundaries included)
    fits: bool  # the chosen cuts fit the budget (always True without a budget)

    def to_json(self) -> dict:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def line(self) -> str:
        """The one line the CLI (stderr) and the Runs page show before any work."""
        if self.budget_s is None:
            return f"cuts: {self.chosen} as asked ({self.n_cuts:,} cut points, scoring ≈ {_fmt(self.estimate_s)})"
        if self.chosen == "all":
            return (
                f"cuts: every token ({self.n_cuts:,} cut points, scoring ≈ {_fmt(self.estimate_s)}, "
                f"within the {_fmt(self.budget_s)} budget)"
            )
        over = f"every token would take ≈ {_fmt(self.estimate_all_s)}, over the {_fmt(self.budget_s)} budget"
        kept = "every step boundary kept"
        if not self.fits:
            return (
                f"cuts: {over}, and no stride fits it: the step boundaries only ({self.n_cuts:,} cut points, "
                f"≈ {_fmt(self.estimate_s)}); --budget-s to allow more, --cuts all to score every token"
            )
        return (
            f"cuts: {over}: {self.chosen} ({kept}, {self.n_cuts:,} cut points, ≈ {_fmt(self.estimate_s)}); "
            "--cuts all to score every token"
        )


def _fmt(seconds: float) -> str:
    if seconds < 90:
        return f"{max(0, round(seconds))} s"
    return f"{seconds / 60:.1f} min"


def count_cuts(n_tokens: int, stride: int | None, boundaries: Sequence[int] | int) -> int:
    """Cut points scored over ``n_tokens`` tokens: ``stride`` None is every token (n + 1);
    otherwise 0, K, 2K, ..., n and every boundary. ``boundaries`` is the list of boundary cuts,
    or the number of steps S (its S - 1 inner boundaries then assumed off the stride: an upper
    bound)."""
    n = max(0, int(n_tokens))
    if stride is None:
        return n + 1
    k = max(1, int(stride))
    on_stride = n // k + 1 + (1 if n % k else 0)  # 0, K, ..., and n itself
    if isinstance(boundaries, int):
        return min(n + 1, on_stride + max(0, boundaries - 1))
    extra = {int(b) for b in boundaries if 0 <= int(b) <= n and int(b) % k and int(b) != n}
    return min(n + 1, on_stride + len(extra))


def choose_cuts(
    requested: str,
    n_tokens: int,
    boundaries: Sequence[int] | int,
    *,
    fixed_s: float,
    per_cut_s: float,
    budget_s: float | None = None,
) -> CutPolicy:
    """The cuts a run scores. ``requested`` other than ``auto`` is honoured; ``auto`` is ``all`` when
    its scoring time ``fixed_s + C * per_cut_s`` fits ``budget_s``, else the smallest stride K that
    fits (the boundaries always kept), else ``steps`` (the boundaries alone) with ``fits`` False."""
    n = max(0, int(n_tokens))
    # boundary cuts: the list's length, or S + 1 for a count of S steps
    n_bounds = boundaries + 1 if isinstance(boundaries, int) else len(set(boundaries))

    def seconds(n_cuts: int) -> float:
        return float(fixed_s) + n_cuts * float(per_cut_s)

    all_cuts = n + 1
    if requested != AUTO:
        kind, _, k = requested.partition(":")
        if kind == "stride" and k.isdigit():
            chosen_n, stride = count_cuts(n, int(k), boundaries), int(k)
        elif kind == "steps":
            chosen_n, stride = min(all_cuts, max(2, n_bounds)), None  # the boundaries alone
        else:
            chosen_n, stride = all_cuts, None
        return CutPolicy(requested, requested, stride, None, seconds(chosen_n), seconds(all_cuts), chosen_n, True)
    budget = default_budget_s() if budget_s is None else float(budget_s)
    if seconds(all_cuts) <= budget or n <= 1:
        return CutPolicy(AUTO, "all", None, budget, seconds(all_cuts), seconds(all_cuts), all_cuts, True)
    lo, hi = 2, max(2, n)  # count_cuts is non-increasing in K (up to boundaries on the stride)
    if seconds(count_cuts(n, hi, boundaries)) > budget:  # no stride fits: the boundaries alone, the cheapest
        fewest = min(all_cuts, max(2, n_bounds))
        return CutPolicy(AUTO, "steps", None, budget, seconds(fewest), seconds(all_cuts), fewest, False)
    while lo < hi:
        mid = (lo + hi) // 2
        if seconds(count_cuts(n, mid, boundaries)) <= budget:
            hi = mid
        else:
            lo = mid + 1
    chosen_n = count_cuts(n, lo, boundaries)
    return CutPolicy(AUTO, f"stride:{lo}", lo, budget, seconds(chosen_n), seconds(all_cuts), chosen_n, True)
