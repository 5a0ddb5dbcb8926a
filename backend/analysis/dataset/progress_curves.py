"""Loss curves of many runs on one progress grid x = c / n, and their group means with intervals.

RaML's first claim (the trajectory lowers the answer's loss like an inner loop) is a
statement about the curve L̂(x) averaged over questions. Runs have different lengths, so
each run's curve is resampled onto a common grid of progress values by linear
interpolation between its cut points; grid points outside the run's kept cut points are
missing (never extrapolated), so a run that drops its late cut points (answer already
seen) contributes only where it was measured.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from backend.analysis.dataset.intervals import column_mean_intervals

DEFAULT_GRID_POINTS = 51
MIN_CURVE_RUNS = 3  # a group's mean curve stops where fewer runs than this (or than the group has) remain
PAPER_EMA_ALPHA = 0.01  # the reference notebook's smoothing


def progress_grid(points: int = DEFAULT_GRID_POINTS) -> np.ndarray:
    """``[G]`` evenly spaced progress values 0..1."""
    if not 2 <= int(points) <= 1001:
        raise ValueError(f"grid points must be between 2 and 1001, got {points}")
    return np.linspace(0.0, 1.0, int(points))


def ema(values: np.ndarray, alpha: float) -> np.ndarray:
    """Exponential moving average as in the reference: s_0 = v_0, s_i = α v_i + (1 − α) s_{i−1}."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    return pd.Series(values).ewm(alpha=alpha, adjust=False).mean().to_numpy()


def curve_on_grid(
    cuts: np.ndarray,
    loss: np.ndarray,
    n_tokens: int,
    grid: np.ndarray,
    *,
    keep: np.ndarray | None = None,
    ema_alpha: float | None = None,
) -> np.ndarray:
    """One run's L̂ resampled onto ``grid`` ``[G]`` (NaN where the run has no kept cut points).

    cuts ``[C]`` sorted cut points, loss ``[C]`` L̂ there, keep ``[C]`` bool (False = dropped,
    e.g. after the answer appeared). The EMA, when asked for, runs over the kept cut points in
    order, before resampling.
    """
    cuts = np.asarray(cuts, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    mask = np.isfinite(loss) if keep is None else (np.asarray(keep, dtype=bool) & np.isfinite(loss))
    x = cuts[mask] / max(int(n_tokens), 1)
    y = loss[mask]
    out = np.full(len(grid), np.nan)
    if y.size == 0:
        return out
    if ema_alpha:
        y = ema(y, ema_alpha)
    inside = (grid >= x[0] - 1e-12) & (grid <= x[-1] + 1e-12)
    out[inside] = np.interp(grid[inside], x, y)
    return out


def area_under_curve(curve: np.ndarray, grid: np.ndarray) -> float:
    """Mean L̂ over the progress range the run covers (trapezoid area / covered width)."""
    ok = np.isfinite(curve)
    if ok.sum() < 2:
        return float(curve[ok][0]) if ok.any() else float("nan")
    x, y = grid[ok], curve[ok]
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def min_runs(group_size: int, minimum: int = MIN_CURVE_RUNS) -> int:
    """Runs a point of a group's mean curve needs: ``minimum``, or every run of a smaller group."""
    return max(1, min(int(minimum), int(group_size)))


def group_curves(
    curves: np.ndarray,
    groups: np.ndarray,
    grid: np.ndarray,
    order=("all",),
    *,
    clusters=None,
    minimum: int = MIN_CURVE_RUNS,
) -> pd.DataFrame:
    """Mean curve with a bootstrap band per group: rows (group, progress, mean, low, high, n).

    curves ``[R, G]`` one row per run; groups ``[R]`` a label per run; "all" pools every run;
    clusters ``[R]`` (optional) resampled whole by the band's bootstrap. A group's curve stops
    (NaN) where fewer than ``min_runs(group size)`` runs have a value: a mean of the last one or
    two long runs is not the group's curve.
    """
    frames = []
    groups = np.asarray(groups)
    codes = None if clusters is None else np.asarray([str(c) for c in clusters])
    labels = list(order) + [g for g in pd.unique(groups) if g not in order]
    for name in labels:
        pick = np.ones(len(groups), bool) if name == "all" else groups == name
        rows = curves[pick]
        if rows.shape[0] == 0:
            continue
        mean, low, high, n = column_mean_intervals(rows, clusters=None if codes is None else codes[pick])
        thin = n < min_runs(rows.shape[0], minimum)
        mean, low, high = (np.where(thin, np.nan, v) for v in (mean, low, high))
        frames.append(pd.DataFrame({"group": name, "progress": grid, "mean": mean, "low": low, "high": high, "n": n}))
    if not frames:
        return pd.DataFrame(columns=["group", "progress", "mean", "low", "high", "n"])
    return pd.concat(frames, ignore_index=True)
