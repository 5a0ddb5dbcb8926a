"""Do the step-importance methods agree? (issue 21 item 3; docs/importance.md, "Agreement").

Rank correlations between the three per-step measures of one run, each ``[S]`` (S = K − 1 steps):

- ``ablation``: L̂ without step k − L̂ (nats; ``importance.run``);
- ``attention``: the answer probe's attention on step k through the receiver heads
  (``attention.receiver_mean``; Thought Anchors' receiver heads);
- ``resampling``: Thought Anchors' counterfactual importance, KL(kept ‖ resampled) of the answer
  distributions of the branches resampled at step k (``backend.pipeline.branches.counterfactual``).

Spearman's ρ and Kendall's τ-b (``scipy.stats``) over the steps where both measures are finite,
with percentile bootstrap intervals: over steps for one run; over runs (a cluster bootstrap: a
run's steps are not independent) for a pool of runs, where each run's values are first replaced
by their within-run ranks scaled to 0..1 so that runs of different lengths and loss scales pool.
Pure functions over cached arrays: no model, no store.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = ("ablation", "attention", "resampling")
PAIRS = (("ablation", "attention"), ("ablation", "resampling"), ("attention", "resampling"))
MIN_STEPS = 3  # fewer common steps: no correlation is reported
N_BOOT = 1000
CONFIDENCE = 0.95


def _array(values, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    vals = [np.nan if v is None else float(v) for v in list(values)[:n]]
    out[: len(vals)] = vals
    return out


def method_vectors(importance: dict | None, counterfactual: list[dict] | None, n_steps: int) -> dict[str, np.ndarray]:
    """The measures a run has, ``[S]`` each (NaN where a step has no value): from its stored
    importance payload and its counterfactual rows."""
    vectors: dict[str, np.ndarray] = {}
    if importance:
        vectors["ablation"] = _array(importance.get("ablation") or [], n_steps)
        attention = importance.get("attention") or {}
        if attention.get("receiver_mean"):
            vectors["attention"] = _array(attention["receiver_mean"], n_steps)
    if counterfactual:
        values = np.full(n_steps, np.nan)
        for row in counterfactual:
            if row.get("answer_kl") is not None and 0 <= int(row["step"]) < n_steps:
                values[int(row["step"])] = float(row["answer_kl"])
        vectors["resampling"] = values
    return vectors


@dataclass(frozen=True)
class Agreement:
    """One pair of measures: ρ and τ with their intervals, over ``n`` steps (of ``runs`` runs)."""

    a: str
    b: str
    n: int
    runs: int
    spearman: float | None
    spearman_low: float | None
    spearman_high: float | None
    kendall: float | None
    kendall_low: float | None
    kendall_high: float | None
    note: str = ""

    def to_json(self) -> dict:
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in self.__dict__.items()}


def _rho_tau(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from scipy.stats import kendalltau, spearmanr

    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    return float(spearmanr(x, y).statistic), float(kendalltau(x, y).statistic)


def _interval(samples: list[float], confidence: float) -> tuple[float | None, float | None]:
    values = np.asarray([s for s in samples if np.isfinite(s)])
    if len(values) < 10:
        return None, None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return round(float(low), 6), round(float(high), 6)


def _round(v: float) -> float | None:
    return round(v, 6) if np.isfinite(v) else None


def rank_agreement(
    x, y, *, a: str = "x", b: str = "y", n_boot: int = N_BOOT, confidence: float = CONFIDENCE, seed: int = 0
) -> Agreement:
    """ρ and τ of two measures of one run over the steps where both are finite; intervals from
    resampling those steps with replacement (seeded: the same numbers every time)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(keep.sum())
    if n < MIN_STEPS:
        return Agreement(
            a, b, n, 1, None, None, None, None, None, None, f"{n} steps with both measures (need {MIN_STEPS})"
        )
    rho, tau = _rho_tau(x, y)
    if not np.isfinite(rho):
        return Agreement(a, b, n, 1, None, None, None, None, None, None, "one measure is constant over these steps")
    rng = np.random.default_rng(seed)
    boots = [_rho_tau(x[idx], y[idx]) for idx in rng.integers(0, n, size=(n_boot, n))]
    s_low, s_high = _interval([r for r, _ in boots], confidence)
    k_low, k_high = _interval([t for _, t in boots], confidence)
    return Agreement(a, b, n, 1, _round(rho), s_low, s_high, _round(tau), k_low, k_high)


def within_run_ranks(values: np.ndarray) -> np.ndarray:
    """Finite values -> their average ranks scaled to 0..1 (NaN stays NaN; one value -> 0.5)."""
    from scipy.stats import rankdata

    out = np.full(len(values), np.nan)
    finite = np.isfinite(values)
    m = int(finite.sum())
    if m:
        out[finite] = 0.5 if m == 1 else (rankdata(values[finite]) - 1) / (m - 1)
    return out


def pooled_agreement(
    runs: list[dict[str, np.ndarray]],
    a: str,
    b: str,
    *,
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Agreement:
    """ρ and τ of measures ``a`` and ``b`` pooled over several runs (each run's values turned into
    within-run ranks first); intervals from resampling runs with replacement (cluster bootstrap).
    One run: the same as ``rank_agreement`` of that run."""
    pairs = []
    for vectors in runs:
        if a in vectors and b in vectors:
            keep = np.isfinite(vectors[a]) & np.isfinite(vectors[b])
            if keep.sum() >= 2:
                pairs.append((within_run_ranks(vectors[a][keep]), within_run_ranks(vectors[b][keep])))
    if len(pairs) <= 1:
        if not pairs:
            return Agreement(a, b, 0, 0, None, None, None, None, None, None, "no run has both measures")
        one = rank_agreement(pairs[0][0], pairs[0][1], a=a, b=b, n_boot=n_boot, confidence=confidence, seed=seed)
        return one
    n = sum(len(x) for x, _ in pairs)
    x, y = np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
    rho, tau = _rho_tau(x, y)
    rng = np.random.default_rng(seed)
    boots = []
    for picks in rng.integers(0, len(pairs), size=(n_boot, len(pairs))):
        bx = np.concatenate([pairs[i][0] for i in picks])
        by = np.concatenate([pairs[i][1] for i in picks])
        boots.append(_rho_tau(bx, by))
    s_low, s_high = _interval([r for r, _ in boots], confidence)
    k_low, k_high = _interval([t for _, t in boots], confidence)
    return Agreement(a, b, n, len(pairs), _round(rho), s_low, s_high, _round(tau), k_low, k_high)


def agreement_table(vectors: dict[str, np.ndarray], **kwargs) -> list[Agreement]:
    """Every pair of the measures a run has."""
    return [
        rank_agreement(vectors[a], vectors[b], a=a, b=b, **kwargs) for a, b in PAIRS if a in vectors and b in vectors
    ]


def dataset_agreement(groups: dict[str, list[dict[str, np.ndarray]]], **kwargs) -> dict:
    """Pooled over every run, and per question (``groups``: question -> its runs' vectors)."""
    every = [v for runs in groups.values() for v in runs]
    pairs = [(a, b) for a, b in PAIRS if any(a in v and b in v for v in every)]
    return {
        "pooled": [pooled_agreement(every, a, b, **kwargs).to_json() for a, b in pairs],
        "per_question": [
            {"question": q, **pooled_agreement(runs, a, b, **kwargs).to_json()}
            for q, runs in groups.items()
            for a, b in pairs
            if any(a in v and b in v for v in runs)
        ],
    }
