"""Bootstrap 95% intervals for every aggregate the Dataset page shows (scipy.stats.bootstrap).

Every function returns the point estimate on the full sample, the interval and n, so a
figure or table can show all three. Percentile intervals (BCa fails on the degenerate,
all-equal samples that small datasets produce); a fixed seed makes them reproducible.
``mean_interval`` is scipy.stats.bootstrap; the paired and per-column versions resample
indices once and evaluate a vectorized statistic, which keeps a 2,000-resample interval
of a rank correlation or of a 51-point curve in milliseconds.
With fewer than two values there is no interval (NaN bounds).
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


def mean_interval(values, *, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> Interval:
    """Mean of the finite values with a bootstrap interval."""
    x = _finite(values)
    if x.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    estimate = float(x.mean())
    if x.size < 2 or np.all(x == x[0]):
        low = high = estimate if x.size >= 2 else float("nan")
        return Interval(estimate, low, high, int(x.size))
    res = stats.bootstrap((x,), np.mean, n_resamples=n_resamples, confidence_level=LEVEL, method="percentile", rng=seed)
    return Interval(estimate, float(res.confidence_interval.low), float(res.confidence_interval.high), int(x.size))


def paired_statistic_interval(
    a, b, statistic: Callable[..., np.ndarray], *, n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> Interval:
    """A statistic of two paired samples (pairs resampled together), e.g. a ratio of means.

    ``statistic(x, y, axis=-1)`` must be vectorized along ``axis`` (see ``ratio_of_means``,
    ``spearman``); it is NaN where undefined, and resamples giving NaN are left out.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if a.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    estimate = float(statistic(a, b, axis=-1))
    if a.size < 2 or not np.isfinite(estimate):
        return Interval(estimate, float("nan"), float("nan"), int(a.size))
    idx = np.random.default_rng(seed).integers(0, a.size, size=(n_resamples, a.size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        boot = np.asarray(statistic(a[idx], b[idx], axis=-1), dtype=np.float64)
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
    values: np.ndarray, *, n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per column of ``values`` ``[R, G]`` (rows = runs, NaN = no value): (mean, low, high, n) ``[G]`` each.

    Rows are resampled as a whole (a run is the unit), and each column's mean is taken over
    the rows that have a value there, as the point estimate is. Written out (not
    scipy.stats.bootstrap) because each column has its own missing rows and one shared
    resampling of rows keeps the band of a curve coherent across its points.
    """
    values = np.asarray(values, dtype=np.float64)
    n_rows, n_cols = values.shape
    present = np.isfinite(values)
    n = present.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.where(present, values, 0).sum(0) / np.maximum(n, 1), np.nan)
    low = np.full(n_cols, np.nan)
    high = np.full(n_cols, np.nan)
    if n_rows >= 2:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n_rows, size=(n_resamples, n_rows))
        filled = np.where(present, values, 0.0)
        sums = filled[idx].sum(axis=1)  # [B, G]
        counts = present[idx].sum(axis=1)  # [B, G]
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        alpha = (1 - LEVEL) / 2
        ok = n >= 2
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
