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


@dataclass
class ExactUpdate:
    """ΔW_c for every boundary as factors: ΔW_o^ℓ(c) = left[c, ℓ] @ right[c, ℓ].

    left ``[K, L, d, m]`` = W_o (V_c − V_0); right ``[K, L, m, H]`` = pinv(V_0⊥) (float32 on
    disk, float64 while solving). Row 0 (c = 0) is zero.
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

    @property
    def K(self) -> int:
        return len(self.boundary_cuts)

    @property
    def n_layers(self) -> int:
        return self.left.shape[1]

    def meta(self) -> dict:
        cond = self.condition[np.isfinite(self.condition)]
        return {
            "P": self.P,
            "m": self.m,
            "m_a": self.m_a,
            "K": self.K,
            "n_layers": self.n_layers,
            "d": int(self.left.shape[2]),
            "H": int(self.right.shape[3]),
            "max_rank": int(self.rank.max()) if self.rank.size else 0,
            "worst_condition": float(cond.max()) if cond.size else None,
            "timings": {k: round(float(v), 4) for k, v in self.timings.items()},
            "version": EXACT_VERSION,
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
        """Per boundary: cut, L̂(c), exact_update_loss, exact_update_norm, step size, cosine, top layer."""
        t = geo.path_table(self.layer_grams)
        t.insert(1, "cut", self.update.boundary_cuts)
        t.insert(2, "target_loss", self.update.target_loss)
        t.insert(3, "exact_update_loss", self.edited_loss)
        return t


def cache_path(run: RunData, store=None) -> Path | None:
    """The cached exact update's file, or where it will be written."""
    return derived.derived_path(store, run, schema.EXACT, EXACT_PARAMS)


def save(run: RunData, result: ExactRun, store=None) -> str | None:
    """Cache ``result`` as derived data; None when written, else the warning line (it still counts)."""
    u = result.update
    arrays = {
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
    )
    return ExactRun(update, arrays["layer_grams"], arrays["edited_loss"], info)


def show_fields(run: RunData, store=None) -> tuple[dict[int, dict], dict | None]:
    """For ``show --json``: {cut: {exact_update_loss, exact_update_norm}} and the fidelity block
    (empty / None while ``raml exact KEY`` has not been run)."""
    hit = load(run, store)
    if hit is None:
        return {}, None
    norms = np.sqrt(np.clip(np.diag(hit.gram), 0, None))
    per_cut = {
        int(c): {"exact_update_loss": float(loss), "exact_update_norm": float(norm)}
        for c, loss, norm in zip(hit.update.boundary_cuts, hit.edited_loss, norms)
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
