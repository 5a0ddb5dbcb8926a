"""Drawing long runs (issue 23): what a figure sends to the browser when a run has more points
than the chart has pixels. Pure numpy, no plotly.

- **Curves are decimated, never resampled**: ``decimate_minmax`` keeps, per bucket of equal
  index width, the first, last, smallest and largest point (the envelope a pixel column would
  show), plus every index the caller must keep exactly (step boundaries, reflection words). Every
  drawn point is a real point of the run, so its hover value is exact for the token it names.
- **Grids are binned** when they have more columns than ``max_bins``: ``bin_edges`` cuts ``N``
  columns into bins of equal width ``w = ceil(N / max_bins)`` (the last may be shorter); each bin
  is drawn as one brick spanning its columns, so the x axis keeps the run's own numbers and the
  hover names the bin's range.

Shapes: ``[N]`` points or columns, ``[R, N]`` grid rows, ``[nb + 1]`` bin edges (indices).
"""

from __future__ import annotations

import math

import numpy as np

CURVE_BUCKETS = 800  # about the loss chart's width in pixels at 1440-1920 px windows
DECIMATE_ABOVE = 4 * CURVE_BUCKETS  # curves with fewer points are drawn whole
GRID_MAX_BINS = 200  # lens grid and importance strip: at most this many columns drawn


def decimate_minmax(values: np.ndarray, buckets: int = CURVE_BUCKETS, keep=()) -> np.ndarray:
    """Sorted indices of ``values`` [N] to draw: per bucket its first, last, argmin and argmax
    (NaNs ignored), plus every index in ``keep``. All indices when ``N <= 4 * buckets``."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n <= 4 * buckets:
        return np.arange(n)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    starts, ends = edges[:-1], edges[1:] - 1
    width = int(np.max(np.diff(edges)))
    # a [buckets, width] view padded with NaN (bucket widths differ by at most one)
    idx = starts[:, None] + np.arange(width)[None, :]
    valid = idx <= ends[:, None]
    padded = np.where(valid, values[np.minimum(idx, n - 1)], np.nan)
    finite = np.isfinite(padded)
    lo = np.where(finite, padded, np.inf).argmin(axis=1)
    hi = np.where(finite, padded, -np.inf).argmax(axis=1)
    picks = np.concatenate([starts, ends, starts + lo, starts + hi, np.asarray(list(keep), dtype=np.int64)])
    picks = picks[(picks >= 0) & (picks < n)]
    return np.unique(picks)


def bin_width(n_columns: int, max_bins: int = GRID_MAX_BINS) -> int:
    """Columns per bin: 1 when ``n_columns`` fits, else ``ceil(n_columns / max_bins)``."""
    return 1 if n_columns <= max_bins else int(math.ceil(n_columns / max_bins))


def bin_edges(n_columns: int, width: int) -> np.ndarray:
    """Start index of every bin and the end, ``[nb + 1]``: bin j holds columns ``edges[j]..edges[j+1]-1``."""
    return np.unique(np.concatenate([np.arange(0, n_columns, max(int(width), 1)), [n_columns]]))


def bin_of(n_columns: int, width: int) -> np.ndarray:
    """Bin index of every column, ``[N]``."""
    return np.arange(n_columns) // max(int(width), 1)


def bin_mean(grid: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean over each bin's columns (NaNs ignored; an all-NaN bin is NaN): ``[R, N]`` -> ``[R, nb]``."""
    grid = np.asarray(grid, dtype=np.float64)
    out = np.full((grid.shape[0], len(edges) - 1), np.nan)
    for j, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        block = grid[:, a:b]
        counts = np.isfinite(block).sum(axis=1)
        sums = np.nansum(block, axis=1)
        out[:, j] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out


def bin_range(grid: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) over each bin's columns, NaNs ignored: ``[R, N]`` -> two ``[R, nb]``."""
    grid = np.asarray(grid, dtype=np.float64)
    lo = np.full((grid.shape[0], len(edges) - 1), np.nan)
    hi = lo.copy()
    for j, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        block = grid[:, a:b]
        has = np.isfinite(block).any(axis=1)
        lo[has, j] = np.nanmin(block[has], axis=1)
        hi[has, j] = np.nanmax(block[has], axis=1)
    return lo, hi


def bin_strongest(grid: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(value, column) of the largest |value| in each bin, sign kept (a spike stays visible):
    ``[R, N]`` -> ``[R, nb]`` values (NaN for an all-NaN bin) and ``[R, nb]`` column indices (-1 then)."""
    grid = np.asarray(grid, dtype=np.float64)
    value = np.full((grid.shape[0], len(edges) - 1), np.nan)
    column = np.full(value.shape, -1, dtype=np.int64)
    for j, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        block = grid[:, a:b]
        mag = np.where(np.isfinite(block), np.abs(block), -1.0)
        best = mag.argmax(axis=1)
        has = mag[np.arange(len(block)), best] >= 0
        value[has, j] = block[has, best[has]]
        column[has, j] = a + best[has]
    return value, column
