"""Inner-loop statistics over a dataset: step size and the cosine of consecutive steps over progress.

For one run at one proxy layer the path is u_k, one point per step boundary k (docs/
architecture.md §1); its pseudo-gradient steps are g_k = u_k − u_(k−1). The step size ‖g_k‖
and cos(g_k, g_(k−1)) (momentum near +1, oscillation near −1) are placed at the progress of
boundary k (its cut / n) and averaged per progress bin within the run, then across runs
with intervals. Step sizes differ in scale between questions, so the share of the run's
path length taken in each bin is reported too (it sums to 1 per run).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from backend.analysis.dataset.intervals import column_mean_intervals
from backend.analysis.spaces.proxy import step_geometry

DEFAULT_BINS = 10
MEASURES = ("step_size", "step_share", "cosine_prev")


def run_profile(vectors: np.ndarray, boundary_cuts: np.ndarray, n_tokens: int, bins: int = DEFAULT_BINS) -> dict:
    """One run's per-bin means ``[bins]`` of step size, path share and cosine (NaN where empty).

    vectors ``[K, D]`` the path (row 0 = no trajectory); boundary_cuts ``[K]`` their cut points.
    """
    geometry = step_geometry(vectors)
    progress = np.asarray(boundary_cuts, dtype=np.float64) / max(int(n_tokens), 1)
    bin_of = np.minimum((progress * bins).astype(np.int64), bins - 1)
    total = float(np.nansum(geometry["step_size"].to_numpy()))
    out = {}
    for measure in MEASURES:
        column = "step_size" if measure == "step_share" else measure
        values = geometry[column].to_numpy(dtype=np.float64)
        if measure == "step_share":
            values = values / total if total > 0 else np.full_like(values, np.nan)
        per_bin = np.full(bins, np.nan)
        for b in range(bins):
            chosen = values[(bin_of == b) & np.isfinite(values)]
            if chosen.size:
                per_bin[b] = chosen.sum() if measure == "step_share" else chosen.mean()
        out[measure] = per_bin
    return out


def dataset_profile(profiles: list[dict], groups: np.ndarray, bins: int = DEFAULT_BINS, clusters=None) -> pd.DataFrame:
    """Rows (measure, group, bin, progress, mean, low, high, n) over runs; group "all" pools them;
    ``clusters`` [R] (optional) are resampled whole by the bootstrap."""
    codes = None if clusters is None else np.asarray([str(c) for c in clusters])
    frames = []
    centres = (np.arange(bins) + 0.5) / bins
    for measure in MEASURES:
        values = np.array([p[measure] for p in profiles], dtype=np.float64).reshape(len(profiles), bins)
        for name in ["all", *[g for g in pd.unique(groups)]]:
            pick = np.ones(len(values), bool) if name == "all" else np.asarray(groups) == name
            rows = values[pick]
            if rows.shape[0] == 0:
                continue
            mean, low, high, n = column_mean_intervals(rows, clusters=None if codes is None else codes[pick])
            frames.append(
                pd.DataFrame(
                    {
                        "measure": measure,
                        "group": name,
                        "bin": np.arange(bins),
                        "progress": centres,
                        "mean": mean,
                        "low": low,
                        "high": high,
                        "n": n,
                    }
                )
            )
    columns = ["measure", "group", "bin", "progress", "mean", "low", "high", "n"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
