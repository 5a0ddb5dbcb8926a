"""Several samples of one question: the spread of their curves, best-of-N, and the mean update.

The mean of the samples' proxy paths is the average of their implicit updates, as Reptile
averages inner-loop updates. All samples of one question and model share z_0 (the MLP input
with no trajectory), so their updates ΔW = u ẑ_0ᵀ share the right factor and the mean update
is (mean u) ẑ_0ᵀ: its loss L_q(θ + mean ΔW) is exactly what the proxy surface evaluates.
Paths have different numbers of boundaries, so each is resampled onto a common progress grid
(linear interpolation per coordinate) before averaging.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DEFAULT_PATH_POINTS = 11


@dataclass
class SampleSpread:
    """curves: (progress, mean, q10, q90, min, max, n) over samples; best_key: lowest final L̂."""

    question: str
    keys: list[str]
    curves: pd.DataFrame
    best_key: str
    best_final_loss: float
    mean_final_loss: float


def spread(
    question: str, keys: list[str], curves: np.ndarray, final_losses: np.ndarray, grid: np.ndarray
) -> SampleSpread:
    """curves ``[N, G]`` and final L̂ ``[N]`` of the N samples of one question."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        frame = pd.DataFrame(
            {
                "progress": grid,
                "mean": np.nanmean(curves, 0),
                "q10": np.nanquantile(curves, 0.1, axis=0),
                "q90": np.nanquantile(curves, 0.9, axis=0),
                "min": np.nanmin(curves, 0),
                "max": np.nanmax(curves, 0),
                "n": np.isfinite(curves).sum(0),
            }
        )
    best = int(np.nanargmin(final_losses))
    return SampleSpread(
        question, list(keys), frame, keys[best], float(final_losses[best]), float(np.nanmean(final_losses))
    )


def path_on_grid(vectors: np.ndarray, boundary_progress: np.ndarray, points: int = DEFAULT_PATH_POINTS) -> np.ndarray:
    """A path ``[K, D]`` at boundary progress ``[K]`` resampled to ``[points, D]`` on 0..1."""
    grid = np.linspace(0.0, 1.0, points)
    x = np.asarray(boundary_progress, dtype=np.float64)
    v = np.asarray(vectors, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    x, v = x[order], v[order]
    out = np.empty((points, v.shape[1]))
    for j in range(v.shape[1]):
        out[:, j] = np.interp(grid, x, v[:, j])
    return out


def mean_path(paths: list[np.ndarray]) -> np.ndarray:
    """Mean of resampled paths ``[points, D]`` each (the Reptile-style average update per point)."""
    if not paths:
        raise ValueError("no paths to average")
    return np.mean(np.stack(paths), axis=0)


def mean_update_losses(run, loaded, layer: int, mean_u: np.ndarray) -> np.ndarray:
    """L_q(θ + u ẑ_0ᵀ) for each row of ``mean_u`` ``[points, F]`` (no trajectory in context),
    with ``run`` any sample of the question (they share ẑ_0 and the prompt)."""
    from backend.analysis.landscapes.surfaces import LayerEditEvaluator, question_ids
    from backend.analysis.spaces.proxy import proxy_factors

    _, z_hat = proxy_factors(run, layer)
    ids, m_a = question_ids(run, loaded.tokenizer)
    evaluator = LayerEditEvaluator(loaded, ids, m_a, layer, z_hat)
    return evaluator.losses(np.asarray(mean_u, dtype=np.float32))
