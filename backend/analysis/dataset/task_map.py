"""A map of tasks by their implicit updates: which questions move the model the same way?

Each run's final implicit update at a proxy layer, u_final = u at the last boundary (the
single-layer ΔW_final = u_final ẑ_0ᵀ up to the shared factor; docs/architecture.md §1), or,
as an alternative, the final shift of the residual stream h_final − h_0 at that layer. The
control is the question alone: h_0, the residual stream at the probe position with no
trajectory, so a reader sees what the trajectory adds. Vectors are compared by cosine;
the 2-D map is PCA (or UMAP) of the unit vectors, with trustworthiness (how well the map
keeps each point's nearest neighbours) and a warning below MIN_POINTS points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MIN_POINTS = 30
NEIGHBOURS = 3
SPACES = {
    "update": "final implicit update u_final (single-layer proxy)",
    "shift": "final hidden-state shift h_final − h_0",
    "question": "control: the question alone (h_0, no trajectory)",
}


@dataclass
class TaskMap:
    """coords ``[R, 2]`` of R runs, their cosine similarities ``[R, R]``, neighbours and the fit's quality."""

    keys: list[str]
    coords: np.ndarray
    similarity: np.ndarray
    method: str
    trustworthiness: float | None
    warning: str | None


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero."""
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def cosine_similarity(vectors: np.ndarray) -> np.ndarray:
    u = unit_rows(vectors)
    return np.clip(u @ u.T, -1.0, 1.0)


def fit_map(keys: list[str], vectors: np.ndarray, method: str = "pca", seed: int = 0) -> TaskMap:
    """2-D map of ``vectors`` ``[R, D]`` (one row per run) in cosine geometry."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import trustworthiness

    if method not in ("pca", "umap"):
        raise ValueError(f"map method must be pca or umap, got {method!r}")
    n = len(keys)
    unit = unit_rows(vectors)
    coords = np.zeros((n, 2))
    if n >= 3:
        if method == "umap":
            import umap

            reducer = umap.UMAP(n_components=2, metric="cosine", random_state=seed, n_neighbors=min(15, n - 1))
            coords = reducer.fit_transform(unit)
        else:
            fitted = PCA(n_components=min(2, n, unit.shape[1])).fit_transform(unit)
            coords[:, : fitted.shape[1]] = fitted
    elif n == 2:
        coords[1, 0] = float(np.linalg.norm(unit[1] - unit[0]))
    trust = None
    k = min(5, (n - 1) // 2)
    if n >= 4 and k >= 1:
        trust = float(trustworthiness(unit, coords, n_neighbors=k, metric="cosine"))
    warning = None
    if n < MIN_POINTS:
        warning = (
            f"only {n} runs: a 2-D map of fewer than {MIN_POINTS} points says little "
            "(trustworthiness is unreliable and UMAP is not meaningful); read the neighbour table instead"
        )
    return TaskMap(list(keys), coords, cosine_similarity(vectors), method, trust, warning)


def neighbours(similarity: np.ndarray, keys: list[str], k: int = NEIGHBOURS) -> pd.DataFrame:
    """For each run, its k most similar other runs: rows (key, rank, neighbour, cosine)."""
    rows = []
    for i, key in enumerate(keys):
        order = [j for j in np.argsort(-similarity[i], kind="stable") if j != i][:k]
        for rank, j in enumerate(order, start=1):
            rows.append({"key": key, "rank": rank, "neighbour": keys[j], "cosine": float(similarity[i, j])})
    return pd.DataFrame(rows, columns=["key", "rank", "neighbour", "cosine"])


def neighbour_overlap(a: np.ndarray, b: np.ndarray, k: int = NEIGHBOURS) -> float:
    """Mean fraction of each run's k nearest neighbours shared by two similarity matrices
    (1 = the trajectory changes nothing about which questions are alike)."""
    n = len(a)
    if n <= k:
        return float("nan")
    shared = []
    for i in range(n):
        first_a = set([j for j in np.argsort(-a[i], kind="stable") if j != i][:k])
        first_b = set([j for j in np.argsort(-b[i], kind="stable") if j != i][:k])
        shared.append(len(first_a & first_b) / k)
    return float(np.mean(shared))


def similarity_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of the off-diagonal similarities of two maps."""
    from scipy.stats import spearmanr

    n = len(a)
    if n < 3:
        return float("nan")
    upper = np.triu_indices(n, 1)
    return float(spearmanr(a[upper], b[upper]).statistic)
