"""Torch-free reading of a run's exact update (derived data; docs/exact_update.md): the factor
container, the cache file, ``load`` and the ``show --json`` fields. Computing lives in
``exact_update`` / ``exact_run``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.analysis.exact import geometry as geo
from backend.store import derived, schema
from backend.store.runs import RunData

EXACT_VERSION = schema.EXACT.version
EXACT_PARAMS: dict = {}  # the exact update depends on the run alone
# Factors kept per run (issue 23): 4·L·m·(d + H) bytes a boundary (SmolLM2-135M, m = 13: 1.8 MB), so
# 1,500 boundaries would be 2.7 GB. Above the budget the factors are kept for a subsample (STORE_RULE);
# every boundary still gets its losses, condition, rank and the path's inner products (``path_*``).
EXACT_STORE_BYTES = 128 << 20
EXACT_MAX_STORED = 512  # and at most this many boundaries: the Gram matrices are [L, B, B] float64
STORE_RULE = (
    "factors of every boundary while they fit; else of B = min(512, max(2, budget // (4·L·m·(d+H)))) "
    "boundaries evenly spaced by index (first and last kept); budget 128 MiB"
)


def factor_bytes(n_layers: int, d: int, H: int, m: int) -> int:
    """Bytes of one boundary's factors on disk: left ``[L, d, m]`` + right ``[L, m, H]``, float32."""
    return 4 * n_layers * m * (d + H)


def stored_rows(K: int, per_boundary_bytes: int, budget_bytes: int = EXACT_STORE_BYTES) -> np.ndarray:
    """Indices ``[B]`` (into the K boundaries) whose factors are kept: all of them when they fit
    ``budget_bytes`` and number at most ``EXACT_MAX_STORED``, else B = min(EXACT_MAX_STORED,
    max(2, budget // per_boundary)) evenly spaced by index, 0 and K − 1 kept (STORE_RULE)."""
    B = min(EXACT_MAX_STORED, max(2, int(budget_bytes) // max(1, int(per_boundary_bytes))))
    if K <= B:
        return np.arange(K, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, K - 1, B)).astype(np.int64))


@dataclass
class ExactUpdate:
    """ΔW_c for the stored boundaries as factors: ΔW_o^ℓ(c) = left[k, ℓ] @ right[k, ℓ].

    left ``[K, L, d, m]`` = W_o (V_c − V_0); right ``[K, L, m, H]`` = pinv(V_0⊥) (float32 on
    disk, float64 while solving). Row 0 (c = 0) is zero. K here counts the *stored* boundaries:
    every boundary of the run while the factors fit ``EXACT_STORE_BYTES``, else a subsample
    (``stored_rows``, STORE_RULE). The ``path_*`` arrays cover all K_path boundaries of the run
    (``stored_rows`` indexes them); None in files written before issue 23 (then K_path = K).
    """

    boundary_cuts: np.ndarray  # [K]
    left: np.ndarray  # [K, L, d, m]
    right: np.ndarray  # [K, L, m, H]
    condition: np.ndarray  # [K, L] cond([V_0, V_P]) (NaN at c = 0, where ΔW = 0)
    rank: np.ndarray  # [K, L] numerical rank of ΔW_o^ℓ
    target_loss: np.ndarray  # [K] L̂(c) of the with-context forward
    construction_loss: np.ndarray  # [K] loss of the no-context forward with the edit applied by hooks
    P: int
    m: int
    m_a: int
    timings: dict[str, float] = field(default_factory=dict)
    path_cuts: np.ndarray | None = None  # [K_path] every boundary of the run
    path_target_loss: np.ndarray | None = None  # [K_path] L̂(c)
    path_construction_loss: np.ndarray | None = None  # [K_path] L(θ + ΔW_c), the edit applied by hooks
    path_grams: np.ndarray | None = None  # [L, K_path, 3] ⟨ΔW_k, ΔW_k⟩, ⟨ΔW_k, ΔW_k−1⟩, ⟨ΔW_k, ΔW_k−2⟩ per layer
    path_condition: np.ndarray | None = None  # [K_path, L]
    path_rank: np.ndarray | None = None  # [K_path, L]
    stored: np.ndarray | None = None  # [K] rows of path_cuts whose factors are kept
    store_bytes: int | None = None  # the budget the subsample was chosen under

    @property
    def K(self) -> int:
        return len(self.boundary_cuts)

    @property
    def K_path(self) -> int:
        return self.K if self.path_cuts is None else len(self.path_cuts)

    @property
    def subsampled(self) -> bool:
        """True when factors are kept for fewer boundaries than the run has."""
        return self.K_path > self.K

    @property
    def n_layers(self) -> int:
        return self.left.shape[1]

    def meta(self) -> dict:
        condition = self.condition if self.path_condition is None else self.path_condition
        rank = self.rank if self.path_rank is None else self.path_rank
        cond = condition[np.isfinite(condition)]
        return {
            "P": self.P,
            "m": self.m,
            "m_a": self.m_a,
            "K": self.K,
            "n_layers": self.n_layers,
            "d": int(self.left.shape[2]),
            "H": int(self.right.shape[3]),
            "max_rank": int(rank.max()) if rank.size else 0,
            "worst_condition": float(cond.max()) if cond.size else None,
            "timings": {k: round(float(v), 4) for k, v in self.timings.items()},
            "version": EXACT_VERSION,
            "stored": {  # the size bound (issue 23): which boundaries keep their factors, and why
                "K_path": self.K_path,
                "K_stored": self.K,
                "subsampled": self.subsampled,
                "bytes_per_boundary": factor_bytes(
                    self.n_layers, int(self.left.shape[2]), int(self.right.shape[3]), self.m
                ),
                "budget_bytes": self.store_bytes,
                "rule": STORE_RULE,
            },
        }

    def dense(self, k: int, layer: int) -> np.ndarray:
        """ΔW_o^ℓ(c_k) ``[d, H]`` float64 (tests and small checks only)."""
        return self.left[k, layer].astype(np.float64) @ self.right[k, layer].astype(np.float64)


@dataclass
class ExactRun:
    """A run's exact update: factors, per-layer Gram ``[L, K, K]``, losses ``[K]`` and meta."""

    update: ExactUpdate
    layer_grams: np.ndarray  # [L, K, K]
    edited_loss: np.ndarray  # [K] L(θ + ΔW_c) by a forward with the edit written into W_o
    meta: dict  # P, m, rank, worst condition, timings, fidelity

    @property
    def gram(self) -> np.ndarray:
        return self.layer_grams.sum(0)

    def table(self):
        """Per boundary of the run: cut, L̂(c), exact_update_loss, norm, step size, cosine, top layer.

        From the path's neighbour inner products when stored (every boundary, also when the factors
        are subsampled; exact_update_loss is then the explicit edit's loss where factors are kept and
        the hook-applied edit's elsewhere, equal up to float error), else from the Gram matrices."""
        u = self.update
        if u.path_grams is None:
            t = geo.path_table(self.layer_grams)
            t.insert(1, "cut", u.boundary_cuts)
            t.insert(2, "target_loss", u.target_loss)
            t.insert(3, "exact_update_loss", self.edited_loss)
            return t
        loss = np.array(u.path_construction_loss, dtype=np.float64)
        loss[u.stored] = self.edited_loss
        t = geo.neighbour_table(u.path_grams)
        t.insert(1, "cut", u.path_cuts)
        t.insert(2, "target_loss", u.path_target_loss)
        t.insert(3, "exact_update_loss", loss)
        return t


def cache_path(run: RunData, store=None) -> Path | None:
    """The cached exact update's file, or where it will be written."""
    return derived.derived_path(store, run, schema.EXACT, EXACT_PARAMS)


def save(run: RunData, result: ExactRun, store=None) -> str | None:
    """Cache ``result`` as derived data; None when written, else the warning line (it still counts)."""
    u = result.update
    path = {
        name: value
        for name, value in {
            "path_cuts": u.path_cuts,
            "path_target_loss": u.path_target_loss,
            "path_construction_loss": u.path_construction_loss,
            "path_grams": u.path_grams,
            "path_condition": u.path_condition,
            "path_rank": u.path_rank,
            "stored": u.stored,
        }.items()
        if value is not None
    }
    arrays = {
        **path,
        "boundary_cuts": u.boundary_cuts,
        "left": u.left,
        "right": u.right,
        "condition": u.condition,
        "rank": u.rank,
        "target_loss": u.target_loss,
        "construction_loss": u.construction_loss,
        "layer_grams": result.layer_grams,
        "edited_loss": result.edited_loss,
        "meta": np.array(json.dumps(result.meta)),
    }
    return derived.save_derived(store, run, schema.EXACT, EXACT_PARAMS, arrays)


_PATH_ARRAYS = (
    "path_cuts",
    "path_target_loss",
    "path_construction_loss",
    "path_grams",
    "path_condition",
    "path_rank",
    "stored",
)


def load(run: RunData, store=None) -> ExactRun | None:
    """The cached exact update of ``run``, or None if it was never computed."""
    arrays = derived.load_derived(store, run, schema.EXACT, EXACT_PARAMS)
    if arrays is None or "meta" not in arrays:
        return None
    info = json.loads(str(arrays["meta"]))
    update = ExactUpdate(
        boundary_cuts=arrays["boundary_cuts"],
        left=arrays["left"],
        right=arrays["right"],
        condition=arrays["condition"],
        rank=arrays["rank"],
        target_loss=arrays["target_loss"],
        construction_loss=arrays["construction_loss"],
        P=info["P"],
        m=info["m"],
        m_a=info["m_a"],
        timings=info.get("timings", {}),
        store_bytes=(info.get("stored") or {}).get("budget_bytes"),
        **{name: arrays[name] for name in _PATH_ARRAYS if name in arrays},
    )
    return ExactRun(update, arrays["layer_grams"], arrays["edited_loss"], info)


def show_fields(run: RunData, store=None) -> tuple[dict[int, dict], dict | None]:
    """For ``show --json``: {cut: {exact_update_loss, exact_update_norm}} and the fidelity block
    (empty / None while ``raml exact KEY`` has not been run)."""
    hit = load(run, store)
    if hit is None:
        return {}, None
    table = hit.table()  # every boundary of the run (the path's inner products), also when subsampled
    per_cut = {
        int(c): {"exact_update_loss": float(loss), "exact_update_norm": float(norm)}
        for c, loss, norm in zip(table["cut"], table["exact_update_loss"], table["norm"])
    }
    info = hit.meta
    return per_cut, info.get("fidelity")


def load_meta(run: RunData, store=None) -> dict | None:
    """Only the meta (P, m, rank, condition, timings, fidelity) of the cached exact update, or None;
    reads the one small member, not the factors."""
    arrays = derived.load_derived(store, run, schema.EXACT, EXACT_PARAMS, members=("meta",))
    if not arrays or "meta" not in arrays:
        return None
    try:
        return json.loads(str(arrays["meta"]))
    except ValueError:
        return None
