"""Bootstrap 95% intervals for every aggregate the Dataset page shows (scipy.stats.bootstrap).

Every function returns the point estimate on the full sample, the interval and n, so a
figure or table can show all three. Percentile intervals (BCa fails on the degenerate,
all-equal samples that small datasets produce); a fixed seed makes them reproducible.
``mean_interval`` is scipy.stats.bootstrap; the paired and per-column versions resample
indices once and evaluate a vectorized statistic, which keeps a 2,000-resample interval
of a rank correlation or of a 51-point curve in milliseconds.

No interval rests on fewer than ``MIN_INTERVAL_N`` (3) independent units: below that the bounds
are NaN and a page shows the values themselves (``few_values``). Units are the values (runs) —
or, given ``clusters`` (one label per value, e.g. the question of each run when a parent and its
branches are pooled), the clusters: a cluster bootstrap resamples whole clusters, so a parent and
its branches are never counted as independent samples (issue 25).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
N_RESAMPLES = 2000
SEED = 0
MIN_INTERVAL_N = 3  # fewer independent units than this: no interval (show the values)
FEW_VALUES_SHOWN = 5


@dataclass(frozen=True)
class Interval:
    """A statistic with its bootstrap interval: ``low <= estimate <= high`` for a mean."""

    estimate: float
    low: float
    high: float
    n: int

    def as_dict(self, prefix: str = "") -> dict[str, float | int]:
        return {
            f"{prefix}mean": self.estimate,
            f"{prefix}low": self.low,
            f"{prefix}high": self.high,
            f"{prefix}n": self.n,
        }


def _finite(values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    return arr[np.isfinite(arr)]


def _cluster_codes(clusters, n: int) -> np.ndarray | None:
    """``[n]`` integer cluster ids 0..Q−1, or None (every value its own unit)."""
    if clusters is None:
        return None
    labels = np.array([str(c) for c in clusters])
    if len(labels) != n:
        raise ValueError(f"{len(labels)} cluster labels for {n} values")
    return np.unique(labels, return_inverse=True)[1].astype(np.int64).ravel()


def n_units(clusters: np.ndarray | None, n: int) -> int:
    """Independent units: distinct clusters, else the values themselves."""
    return n if clusters is None else int(len(np.unique(clusters)))


def cluster_weights(codes: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """``[B, R]``: how often each row is drawn when whole clusters are resampled with replacement."""
    q = int(codes.max()) + 1
    picks = np.random.default_rng(seed).integers(0, q, size=(n_resamples, q))
    counts = np.zeros((n_resamples, q), dtype=np.int64)
    np.add.at(counts, (np.arange(n_resamples)[:, None], picks), 1)
    return counts[:, codes]


def few_values(values, limit: int = FEW_VALUES_SHOWN) -> str:
    """The values themselves, for a page to show where there is no interval (n < MIN_INTERVAL_N)."""
    x = _finite(values)
    shown = ", ".join(f"{v:.3g}" for v in x[:limit])
    return shown + (" …" if x.size > limit else "")


def _keep_clusters(values, clusters):
    arr = np.asarray(values, dtype=np.float64).ravel()
    ok = np.isfinite(arr)
    codes = _cluster_codes(clusters, arr.size)
    return arr[ok], (None if codes is None else codes[ok])


def mean_interval(values, *, clusters=None, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> Interval:
    """Mean of the finite values with a bootstrap interval (clusters resampled whole when given)."""
    x, codes = _keep_clusters(values, clusters)
    if x.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    estimate = float(x.mean())
    if n_units(codes, x.size) < MIN_INTERVAL_N:
        return Interval(estimate, float("nan"), float("nan"), int(x.size))
    if np.all(x == x[0]):
        return Interval(estimate, estimate, estimate, int(x.size))
    if codes is not None:
        w = cluster_weights(codes, n_resamples, seed)
        boot = (w @ x) / w.sum(axis=1)
        alpha = (1 - LEVEL) / 2
        low, high = np.quantile(boot, [alpha, 1 - alpha])
        return Interval(estimate, float(low), float(high), int(x.size))
    res = stats.bootstrap((x,), np.mean, n_resamples=n_resamples, confidence_level=LEVEL, method="percentile", rng=seed)
    return Interval(estimate, float(res.confidence_interval.low), float(res.confidence_interval.high), int(x.size))


def paired_statistic_interval(
    a,
    b,
    statistic: Callable[..., np.ndarray],
    *,
    clusters=None,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """A statistic of two paired samples (pairs resampled together), e.g. a ratio of means.

    ``statistic(x, y, axis=-1)`` must be vectorized along ``axis`` (see ``ratio_of_means``,
    ``spearman``); it is NaN where undefined, and resamples giving NaN are left out. With
    ``clusters`` whole clusters of pairs are resampled.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    keep = np.isfinite(a) & np.isfinite(b)
    codes = _cluster_codes(clusters, a.size)
    a, b = a[keep], b[keep]
    codes = None if codes is None else codes[keep]
    if a.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    estimate = float(statistic(a, b, axis=-1))
    if n_units(codes, a.size) < MIN_INTERVAL_N or not np.isfinite(estimate):
        return Interval(estimate, float("nan"), float("nan"), int(a.size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if codes is None:
            idx = np.random.default_rng(seed).integers(0, a.size, size=(n_resamples, a.size))
            boot = np.asarray(statistic(a[idx], b[idx], axis=-1), dtype=np.float64)
        else:  # resamples of clusters differ in length: one statistic per resample
            rows = np.arange(a.size)
            w = cluster_weights(codes, n_resamples, seed)
            boot = np.array([float(statistic(a[r], b[r], axis=-1)) for r in (np.repeat(rows, wb) for wb in w)])
    boot = boot[np.isfinite(boot)]
    if boot.size < n_resamples // 2:
        return Interval(estimate, float("nan"), float("nan"), int(a.size))
    alpha = (1 - LEVEL) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    return Interval(estimate, float(low), float(high), int(a.size))


def ratio_of_means(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """mean(x) / mean(y) along ``axis`` (NaN where mean(y) <= 0)."""
    num, den = np.mean(x, axis=axis), np.mean(y, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def spearman(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman's rank correlation along ``axis`` (NaN for a constant sample or n < 3)."""
    rx = stats.rankdata(x, axis=axis)
    ry = stats.rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    den = np.sqrt((rx**2).sum(axis=axis) * (ry**2).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(den > 0, (rx * ry).sum(axis=axis) / np.where(den > 0, den, 1.0), np.nan)
    return np.where(np.shape(x)[axis] >= 3, rho, np.nan)


def column_mean_intervals(
    values: np.ndarray, *, clusters=None, n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per column of ``values`` ``[R, G]`` (rows = runs, NaN = no value): (mean, low, high, n) ``[G]`` each.

    Rows are resampled as a whole (a run is the unit; with ``clusters`` [R], a whole cluster of
    rows), and each column's mean is taken over the rows that have a value there, as the point
    estimate is. Written out (not scipy.stats.bootstrap) because each column has its own missing
    rows and one shared resampling of rows keeps the band of a curve coherent across its points.
    A column with fewer than ``MIN_INTERVAL_N`` units gets no band.
    """
    values = np.asarray(values, dtype=np.float64)
    n_rows, n_cols = values.shape
    present = np.isfinite(values)
    n = present.sum(axis=0)
    codes = _cluster_codes(clusters, n_rows)
    units = n if codes is None else np.array([len(np.unique(codes[present[:, j]])) for j in range(n_cols)])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.where(present, values, 0).sum(0) / np.maximum(n, 1), np.nan)
    low = np.full(n_cols, np.nan)
    high = np.full(n_cols, np.nan)
    if n_rows >= 2:
        filled = np.where(present, values, 0.0)
        if codes is None:
            idx = np.random.default_rng(seed).integers(0, n_rows, size=(n_resamples, n_rows))
            sums = filled[idx].sum(axis=1)  # [B, G]
            counts = present[idx].sum(axis=1)  # [B, G]
        else:
            w = cluster_weights(codes, n_resamples, seed).astype(np.float64)  # [B, R]
            sums, counts = w @ filled, w @ present
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        alpha = (1 - LEVEL) / 2
        ok = units >= MIN_INTERVAL_N
        if ok.any():
            low[ok] = np.nanquantile(boot[:, ok], alpha, axis=0)
            high[ok] = np.nanquantile(boot[:, ok], 1 - alpha, axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (n = 0) are masked by ``ok``
            masked = np.where(present, values, np.nan)
            constant = ok & (np.nanmax(masked, 0) == np.nanmin(masked, 0))
        low[constant] = mean[constant]
        high[constant] = mean[constant]
    return mean, low, high, n.astype(np.int64)
