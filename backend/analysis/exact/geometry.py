"""Geometry of the exact-update path from its low-rank factors, never densified (docs/exact_update.md).

ΔW_o^ℓ(a) = A_a B_a with A ``[d, m]``, B ``[m, H]``, so

    ⟨ΔW^ℓ(a), ΔW^ℓ(b)⟩_F = tr(B_aᵀ A_aᵀ A_b B_b) = Σ_ij (A_aᵀ A_b)_ij (B_a B_bᵀ)_ij,

an m × m computation per pair and layer. Everything else (norms, steps, cosines, PCA of the
path) follows from the Gram matrix G ``[K, K]`` = Σ_ℓ G^ℓ.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GRAM_BLOCK_BYTES = 64 << 20  # the [a, K', m, m] products in flight per layer


def layer_gram(left: np.ndarray, right: np.ndarray, left_b: np.ndarray | None = None, right_b=None) -> np.ndarray:
    """⟨ΔW^ℓ(a), ΔW^ℓ(b)⟩_F per layer: left ``[K, L, d, m]``, right ``[K, L, m, H]`` -> ``[L, K, K']``
    (``*_b`` another path of the same model, default the same one). Rows a go in blocks so that the
    m × m products in flight stay within ``GRAM_BLOCK_BYTES`` (never ``[K, K', m, m]`` at once)."""
    left_b = left if left_b is None else left_b
    right_b = right if right_b is None else right_b
    n_layers, K, Kb = left.shape[1], left.shape[0], left_b.shape[0]
    m, mb = left.shape[3], left_b.shape[3]
    rows = max(1, GRAM_BLOCK_BYTES // max(1, 2 * 8 * Kb * m * mb))
    out = np.zeros((n_layers, K, Kb))
    for i in range(n_layers):
        a64b, b64b = left_b[:, i].astype(np.float64), right_b[:, i].astype(np.float64)
        for start in range(0, K, rows):
            a64 = left[start : start + rows, i].astype(np.float64)
            b64 = right[start : start + rows, i].astype(np.float64)
            aa = np.einsum("adm,bdn->abmn", a64, a64b, optimize=True)  # [rows, K', m, m]
            bb = np.einsum("amh,bnh->abmn", b64, b64b, optimize=True)
            out[i, start : start + rows] = (aa * bb).sum((-1, -2))
    return out


def isometric_embedding(gram: np.ndarray) -> np.ndarray:
    """Points ``[K, r]`` whose Euclidean inner products are ``gram`` ``[K, K]`` (eigenvectors · √λ):
    the path's Frobenius geometry in an orthonormal basis of its own span."""
    g = (gram + gram.T) / 2
    lam, vec = np.linalg.eigh(g)
    keep = lam > max(lam.max(), 0) * 1e-12
    return vec[:, keep] * np.sqrt(lam[keep])


def neighbour_grams(layer_grams: np.ndarray) -> np.ndarray:
    """``[L, K, 3]``: ⟨ΔW_k, ΔW_k⟩, ⟨ΔW_k, ΔW_k−1⟩, ⟨ΔW_k, ΔW_k−2⟩ per layer (0 before the start)
    from the Gram matrices ``[L, K, K]``: all that the path table needs."""
    L, K = layer_grams.shape[:2]
    out = np.zeros((L, K, 3))
    idx = np.arange(K)
    out[:, :, 0] = layer_grams[:, idx, idx]
    out[:, 1:, 1] = layer_grams[:, idx[1:], idx[1:] - 1]
    out[:, 2:, 2] = layer_grams[:, idx[2:], idx[2:] - 2]
    return out


def path_table(layer_grams: np.ndarray) -> pd.DataFrame:
    """Per boundary k: ‖ΔW_k‖_F, step ‖ΔW_k − ΔW_{k−1}‖_F, cos(step_k, step_{k−1}), and the layer
    carrying most of ‖ΔW_k‖² with its share. layer_grams ``[L, K, K]``."""
    return neighbour_table(neighbour_grams(layer_grams))


def neighbour_table(path_grams: np.ndarray) -> pd.DataFrame:
    """``path_table`` from the neighbour inner products ``[L, K, 3]`` alone (``neighbour_grams``;
    stored for every boundary by ``exact.update.compute``, so it needs no K × K matrix)."""
    g = path_grams.sum(0)  # [K, 3]
    K = len(g)
    diag = g[:, 0]
    norm = np.sqrt(np.clip(diag, 0, None))
    step = np.full(K, np.nan)
    cosine = np.full(K, np.nan)
    if K > 1:
        step[1:] = np.sqrt(np.clip(diag[1:] + diag[:-1] - 2 * g[1:, 1], 0, None))
    for k in range(2, K):
        # ⟨ΔW_k − ΔW_{k−1}, ΔW_{k−1} − ΔW_{k−2}⟩
        dot = g[k, 1] - g[k, 2] - g[k - 1, 0] + g[k - 1, 1]
        denom = step[k] * step[k - 1]
        cosine[k] = np.clip(dot / denom, -1, 1) if denom > 0 else np.nan
    per_layer = path_grams[:, :, 0].T  # [K, L] ‖ΔW^ℓ_k‖²
    total = per_layer.sum(1)
    top = per_layer.argmax(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, per_layer.max(1) / np.where(total > 0, total, 1), np.nan)
    return pd.DataFrame(
        {
            "boundary": np.arange(K),
            "norm": norm,
            "step_size": step,
            "cosine_prev": cosine,
            "top_layer": np.where(total > 0, top, -1),
            "top_layer_share": share,
        }
    )


def layer_norms(layer_grams: np.ndarray) -> np.ndarray:
    """‖ΔW^ℓ_k‖_F ``[K, L]`` from the per-layer Gram matrices ``[L, K, K]``."""
    return np.sqrt(np.clip(np.array([np.diag(x) for x in layer_grams]).T, 0, None))


def top_layers(layer_grams: np.ndarray, k: int, boundary: int = -1) -> list[int]:
    """The ``k`` layers with the largest ‖ΔW^ℓ‖_F at ``boundary`` (default: the last), sorted."""
    norms = layer_norms(layer_grams)[boundary]
    return sorted(int(i) for i in np.argsort(-norms)[:k])
