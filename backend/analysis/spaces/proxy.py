"""Parameter-proxy space (docs/architecture.md §1): the trajectory as a path of implicit weight updates.

For a proxy layer ℓ with MLP input projections W (gate and up, stacked), z_c the MLP input at
the probe position after cut c and z_0 the same with no trajectory,

    ΔW_c = W (z_c − z_0) z_0ᵀ / ‖z_0‖²   satisfies   (W + ΔW_c) z_0 = W z_c.

Every ΔW_c is ``u_c ẑ_0ᵀ`` with u_c = W (z_c − z_0) / ‖z_0‖ and the unit vector ẑ_0 shared by
all c, so ‖ΔW_a − ΔW_b‖_F = ‖u_a − u_b‖: the path is studied in u-space ([K, 2·d_ff]).
The hidden-state space (residual stream at the probe position) is the simpler alternative.

This module: vectors per space, step geometry, and 2-D projections (PCA / UMAP) fitted once
per view and cached on disk next to the first run (``<run dir>/derived/``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd

from backend.errors import InputError
from backend.store import derived, schema
from backend.store.runs import RunData

SPACES = ("proxy", "hidden", "exact")
EXACT_ALL_LAYERS = -1  # the exact space's "layer" for the full all-layer update (docs/exact_update.md)
METHODS = ("pca", "umap")
PROJECTION_VERSION = schema.PROJECTION.version
SEED = 0
FIT_COUNT = 0  # number of projections actually fitted in this process (tests count refits)

_memo: dict[str, Projection] = {}
_memo_lock = threading.Lock()
_MEMO_SIZE = 32


class ProxyError(InputError, ValueError):
    """A layer, space or method that the runs do not have (one-line message)."""


# ---------------------------------------------------------------------------- vectors
def available_layers(run: RunData, space: str, store=None) -> list[int]:
    """Layers that ``space`` can show for this run (proxy: ``meta.json`` → ``proxy_layers``)."""
    _check_space(space)
    if space == "exact":  # all layers (-1) or one layer's block, once `raml exact KEY` has run
        from backend.analysis.exact import data as exact_data

        hit = exact_data.load(run, store)
        if hit is None or hit.update.subsampled:  # the path needs every boundary's factors (issue 23)
            return []
        return [EXACT_ALL_LAYERS, *range(hit.update.n_layers)]
    return run.layers_available(space)


def space_vectors(run: RunData, layer: int, space: str) -> np.ndarray:
    """Points of the path, one per boundary: ``[K, D]`` float32 (row 0 = no trajectory).

    proxy: u_c = (W z_c − W z_0) / ‖z_0‖, D = 2·d_ff (gate and up); hidden: residual stream
    after ``layer`` at the probe position, D = d_model.
    """
    layers = available_layers(run, space)
    if not isinstance(layer, (int, np.integer)) or int(layer) not in layers:
        shown = ", ".join(map(str, layers)) if len(layers) <= 12 else f"0..{layers[-1]}"
        raise ProxyError(f"layer {layer} is not stored for the {space} space of run {run.key} (stored: {shown})")
    layer = int(layer)
    if space == "hidden":
        return run.hidden_layer(layer)
    if space == "exact":
        return exact_vectors([run], layer)[0]
    preact = run.proxy_preact(layer).astype(np.float64)  # [K, 2*d_ff]
    z0 = run.proxy_input(layer)[0].astype(np.float64)  # [d]
    z0_norm = float(np.linalg.norm(z0))
    if not np.isfinite(z0_norm) or z0_norm == 0.0:
        raise ProxyError(f"run {run.key}: MLP input z_0 at layer {layer} is zero; the proxy space is undefined")
    return ((preact - preact[0]) / z0_norm).astype(np.float32)


def proxy_factors(run: RunData, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """(u ``[K, 2·d_ff]``, ẑ_0 ``[d]``): ΔW_c = u_c ẑ_0ᵀ (gate rows first, then up)."""
    u = space_vectors(run, layer, "proxy")
    z0 = run.proxy_input(layer)[0].astype(np.float64)
    return u, (z0 / np.linalg.norm(z0)).astype(np.float32)


def step_geometry(vectors: np.ndarray) -> pd.DataFrame:
    """Per boundary c (rows of ``vectors`` ``[K, D]``): the pseudo-gradient step g_c = v_c − v_{c−1}.

    Columns: boundary, step_size ‖g_c‖ (NaN at 0), cosine_prev cos(g_c, g_{c−1}) (NaN at 0, 1
    or for a zero step), path_length Σ‖g‖, displacement ‖v_c − v_0‖, straightness =
    displacement / path_length (NaN while nothing moved).
    """
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or len(v) == 0:
        raise ProxyError(f"step_geometry needs a [K, D] array, got shape {v.shape}")
    n = len(v)
    g = np.diff(v, axis=0)  # [K-1, D]
    size = np.linalg.norm(g, axis=1)
    step_size = np.concatenate([[np.nan], size])
    cosine = np.full(n, np.nan)
    if n > 2:
        dots = np.einsum("ij,ij->i", g[1:], g[:-1])
        denom = size[1:] * size[:-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            cosine[2:] = np.where(denom > 0, dots / np.where(denom > 0, denom, 1.0), np.nan)
    path = np.concatenate([[0.0], np.cumsum(size)])
    displacement = np.linalg.norm(v - v[0], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        straight = np.where(path > 0, displacement / np.where(path > 0, path, 1.0), np.nan)
    return pd.DataFrame(
        {
            "boundary": np.arange(n),
            "step_size": step_size,
            "cosine_prev": np.clip(cosine, -1.0, 1.0),
            "path_length": path,
            "displacement": displacement,
            "straightness": straight,
        }
    )


# ---------------------------------------------------------------------------- projection
@dataclass
class Projection:
    """A 2-D view of one or more runs' paths in one fitted basis.

    coords: one ``[S_i+1, 2]`` array per run (in the order given); explained_variance:
    PCA ratios ``[2]`` (None for UMAP); trustworthiness in [0, 1] of the 2-D embedding
    (None with fewer than 3 points); basis: PCA ``{"components": [2, D], "mean": [D]}``
    (None for UMAP).
    """

    coords: list[np.ndarray]
    explained_variance: np.ndarray | None
    trustworthiness: float | None
    method: str
    basis: dict | None
    layer: int
    space: str
    run_keys: list[str]
    n_neighbors: int | None = None  # k used by trustworthiness

    def origin_coords(self, index: int = 0) -> np.ndarray:
        """PCA only: run ``index`` in plane coordinates through the origin ``[K, 2]``
        (v · components, no mean subtraction), as used by the loss surface."""
        if self.basis is None:
            raise ProxyError("plane coordinates exist for PCA projections only")
        return self.coords[index] + self.basis["mean"] @ self.basis["components"].T


def _check_space(space: str) -> None:
    if space not in SPACES:
        raise ProxyError(f"unknown space '{space}': use one of {', '.join(SPACES)}")


def trust_k(n_points: int) -> int | None:
    """Neighbourhood size for trustworthiness: 5, or smaller for few points (k < n/2)."""
    if n_points < 3:
        return None
    return int(max(1, min(5, (n_points - 1) // 2)))


def projection_params(runs: list[RunData], layer: int, space: str, method: str) -> dict:
    """What a projection depends on (its derived-data parameters; the first run is its home)."""
    return {"runs": [r.key for r in runs], "layer": int(layer), "space": space, "method": method, "seed": SEED}


def projection_cache_key(runs: list[RunData], layer: int, space: str, method: str) -> str:
    return derived.derived_key(schema.PROJECTION, projection_params(runs, layer, space, method), runs[0])


def exact_vectors(runs: list[RunData], layer: int) -> list[np.ndarray]:
    """Each run's exact-update path ``[K_i, r]`` in one orthonormal basis of the joint span of
    all paths: Euclidean geometry of the rows = Frobenius geometry of the ΔW_c (all layers for
    layer −1, else that layer's W_o), computed from the low-rank factors (never densified)."""
    from backend.analysis.exact import data as exact_data
    from backend.analysis.exact import geometry as exact_geometry

    hits = [exact_data.load(r) for r in runs]
    for r, h in zip(runs, hits):
        if h is None:
            raise ProxyError(f"run {r.key} has no exact update yet: run `raml exact {r.key}`")
    sizes = [len(h.update.boundary_cuts) for h in hits]
    blocks = [[None] * len(hits) for _ in hits]
    for a, ha in enumerate(hits):
        for b, hb in enumerate(hits):
            if b < a:
                blocks[a][b] = blocks[b][a].T
                continue
            if a == b:
                g = ha.layer_grams
            else:
                g = exact_geometry.layer_gram(ha.update.left, ha.update.right, hb.update.left, hb.update.right)
            blocks[a][b] = g.sum(0) if layer == EXACT_ALL_LAYERS else g[layer]
    emb = exact_geometry.isometric_embedding(np.block(blocks))
    bounds = np.cumsum([0, *sizes])
    return [emb[i:j].astype(np.float32) for i, j in zip(bounds[:-1], bounds[1:])]


def stacked_vectors(runs: list[RunData], layer: int, space: str) -> tuple[np.ndarray, list[int]]:
    """All runs' vectors stacked ``[Σ(S_i+1), D]`` and each run's row count."""
    if space == "exact" and len(runs) > 1:  # one basis for all paths needs their cross inner products
        for r in runs:
            if layer not in available_layers(r, space):
                raise ProxyError(f"layer {layer} is not available in the exact space of run {r.key}")
        blocks = exact_vectors(runs, layer)
        return np.concatenate(blocks), [len(b) for b in blocks]
    blocks = [space_vectors(r, layer, space) for r in runs]
    dims = {b.shape[1] for b in blocks}
    if len(dims) > 1:
        sizes = ", ".join(f"{r.key[:8]}: {b.shape[1]}" for r, b in zip(runs, blocks))
        raise ProxyError(f"runs have different {space}-space sizes at layer {layer} ({sizes}); no shared basis")
    return np.concatenate(blocks).astype(np.float32), [len(b) for b in blocks]


def _fit(x: np.ndarray, method: str) -> dict[str, np.ndarray]:
    """Fit the 2-D embedding of ``x`` ``[N, D]``; returns arrays to cache."""
    global FIT_COUNT
    from sklearn.manifold import trustworthiness

    n = len(x)
    out: dict[str, np.ndarray] = {}
    if method == "pca":
        mean = x.mean(0, dtype=np.float64)
        centred = x.astype(np.float64) - mean
        # SVD of the centred data (deterministic; signs fixed so each component's largest |entry| > 0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        comps = np.zeros((2, x.shape[1]))
        comps[: min(2, len(vt))] = vt[:2]
        for i in range(2):
            j = np.argmax(np.abs(comps[i]))
            if comps[i, j] < 0:
                comps[i] *= -1
        var = s**2
        total = var.sum()
        ratios = np.zeros(2)
        if total > 0:
            ratios[: min(2, len(var))] = var[:2] / total
        emb = centred @ comps.T
        out.update(components=comps.astype(np.float32), mean=mean.astype(np.float32), explained_variance=ratios)
    else:
        if n < 4:
            raise ProxyError(f"UMAP needs at least 4 points, these runs have {n}; use PCA")
        import warnings

        import umap

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reducer = umap.UMAP(
                n_components=2,
                n_neighbors=int(min(15, n - 1)),
                random_state=SEED,
                init="spectral" if n > 10 else "random",
                transform_seed=SEED,
            )
            emb = reducer.fit_transform(x.astype(np.float32)).astype(np.float64)
    k = trust_k(n)
    trust = np.nan
    if k is not None:
        if np.ptp(emb, axis=0).max() == 0:
            trust = 0.0 if np.ptp(x, axis=0).max() > 0 else 1.0
        else:
            trust = float(trustworthiness(x.astype(np.float64), emb, n_neighbors=k))
    out.update(embedding=emb.astype(np.float32), trustworthiness=np.array(trust), n_neighbors=np.array(k or 0))
    FIT_COUNT += 1
    return out


def project(
    runs: list[RunData] | RunData, layer: int, space: str = "proxy", method: str = "pca", store=None
) -> Projection:
    """Fit one 2-D basis on the stacked paths of ``runs`` and return each run's coordinates.

    Cached in memory and as derived data of the first run (``schema.PROJECTION``, keyed by the
    run keys, layer, space, method), so re-calling with the same arguments never refits.
    """
    if isinstance(runs, RunData):
        runs = [runs]
    runs = list(runs)
    if not runs:
        raise ProxyError("no runs to project")
    _check_space(space)
    if method not in METHODS:
        raise ProxyError(f"unknown projection method '{method}': use one of {', '.join(METHODS)}")
    key = projection_cache_key(runs, layer, space, method)
    with _memo_lock:
        hit = _memo.get(key)
    if hit is not None:
        return hit
    params = projection_params(runs, layer, space, method)
    arrays = derived.load_derived(store, runs[0], schema.PROJECTION, params)
    needed = {"embedding", "trustworthiness", "n_neighbors", "lengths"} | (
        {"components", "mean", "explained_variance"} if method == "pca" else set()
    )
    if arrays is None or not needed <= set(arrays):
        x, lengths = stacked_vectors(runs, layer, space)
        arrays = _fit(x, method)
        arrays["lengths"] = np.array(lengths)
        derived.save_derived(store, runs[0], schema.PROJECTION, params, arrays)  # a failed write only warns
    bounds = np.cumsum([0, *arrays["lengths"].tolist()])
    emb = arrays["embedding"]
    trust = float(arrays["trustworthiness"])
    k = int(arrays["n_neighbors"])
    proj = Projection(
        coords=[emb[a:b] for a, b in zip(bounds[:-1], bounds[1:])],
        explained_variance=arrays["explained_variance"] if method == "pca" else None,
        trustworthiness=None if np.isnan(trust) else trust,
        method=method,
        basis={"components": arrays["components"], "mean": arrays["mean"]} if method == "pca" else None,
        layer=int(layer),
        space=space,
        run_keys=[r.key for r in runs],
        n_neighbors=k or None,
    )
    with _memo_lock:
        if len(_memo) >= _MEMO_SIZE:
            _memo.pop(next(iter(_memo)))
        _memo[key] = proj
    return proj


def clear_memo() -> None:
    """Forget in-memory projections (the on-disk cache stays); used by tests."""
    with _memo_lock:
        _memo.clear()
