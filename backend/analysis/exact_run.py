"""The exact update of a cached run as derived data (``<run dir>/derived/exact-<hash>.npz``).

``ensure`` computes it once (backend.analysis.exact_update), checks it by explicitly edited
forwards, measures the fidelity of each proxy, and caches factors, Gram matrices and meta;
``load`` reads it back without a model. docs/exact_update.md; docs/architecture.md §5.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.analysis import exact_geometry as geo
from backend.analysis import exact_update as ex
from backend.analysis.proxy import derived_dir, load_npz, save_npz_atomic
from backend.store.runs import RunData

TOP_K_LAYERS = (1, 2, 4, 8)  # truncations of the exact update reported as fidelity


@dataclass
class ExactRun:
    """A run's exact update: factors, per-layer Gram ``[L, K, K]``, losses ``[K]`` and meta."""

    update: ex.ExactUpdate
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
    d = derived_dir(run, store)
    if d is None:
        return None
    tag = hashlib.sha256(json.dumps({"run": run.key, "version": ex.EXACT_VERSION}).encode()).hexdigest()[:16]
    return d / f"exact-{tag}.npz"


def run_inputs(run: RunData, tokenizer) -> dict:
    """prompt, trajectory, probe ids and m_a exactly as ``backend.jobs`` built them, plus the boundary cuts."""
    from backend.engine.trajectory import encode, encode_with_offsets

    meta = run.meta
    answer_ids = [int(i) for i in meta.get("answer_ids") or encode(tokenizer, meta["answer"])]
    return {
        "prompt_ids": encode(tokenizer, meta["prompt"]),
        "trajectory_ids": encode_with_offsets(tokenizer, meta["trajectory"])[0],
        "probe_ids": encode(tokenizer, meta["template"]) + answer_ids,
        "m_a": len(answer_ids),
        "boundary_cuts": [int(c) for c in run.tensor("boundary_cuts")],
    }


def load(run: RunData, store=None) -> ExactRun | None:
    """The cached exact update of ``run``, or None if it was never computed."""
    path = cache_path(run, store)
    arrays = load_npz(path) if path is not None else None
    if arrays is None or "meta" not in arrays:
        return None
    meta = json.loads(str(arrays["meta"]))
    update = ex.ExactUpdate(
        boundary_cuts=arrays["boundary_cuts"],
        left=arrays["left"],
        right=arrays["right"],
        condition=arrays["condition"],
        rank=arrays["rank"],
        target_loss=arrays["target_loss"],
        construction_loss=arrays["construction_loss"],
        P=meta["P"],
        m=meta["m"],
        m_a=meta["m_a"],
        timings=meta.get("timings", {}),
    )
    return ExactRun(update, arrays["layer_grams"], arrays["edited_loss"], meta)


def fidelity(run: RunData, loaded, inputs: dict, update: ex.ExactUpdate, layer_grams, edited_loss) -> dict:
    """Fraction of the descent L̂(0) − L̂(end) each proxy reproduces at the last boundary:
    (L̂(0) − L(θ + ΔW)) / (L̂(0) − L̂(end)) for the single-layer proxy (per stored layer),
    the exact update truncated to its top-k layers, and the full exact update."""
    from backend.analysis.landscape import LayerEditEvaluator
    from backend.analysis.proxy import available_layers, proxy_factors

    start, end = float(update.target_loss[0]), float(update.target_loss[-1])
    descent = start - end

    def frac(loss: float) -> float | None:
        return None if abs(descent) < 1e-9 else (start - loss) / descent

    ids = list(inputs["prompt_ids"]) + list(inputs["probe_ids"])
    out: dict = {"initial_loss": start, "final_loss": end, "descent": descent}
    proxy = {}
    for layer in available_layers(run, "proxy"):
        u, z_hat = proxy_factors(run, layer)
        loss = float(LayerEditEvaluator(loaded, ids, update.m_a, layer, z_hat).losses(u[-1:])[0])
        proxy[str(layer)] = {"loss": loss, "fraction": frac(loss)}
    out["single_layer_proxy"] = proxy
    truncated = {}
    for k in [k for k in TOP_K_LAYERS if k < update.n_layers]:
        layers = geo.top_layers(layer_grams, k)
        with ex.edited_weights(loaded.model, update, update.K - 1, layers):
            loss = ex.plain_loss(loaded.model, ids, update.m_a)
        truncated[str(k)] = {"layers": layers, "loss": loss, "fraction": frac(loss)}
    out["exact_top_k"] = truncated
    out["exact"] = {"loss": float(edited_loss[-1]), "fraction": frac(float(edited_loss[-1]))}
    return out


def ensure(run: RunData, loaded=None, store=None, progress=None) -> ExactRun:
    """The run's exact update: cached, or computed now (needs the run's model) and cached."""
    from backend.analysis.landscape import _resolve_model

    hit = load(run, store)
    if hit is not None:
        return hit
    loaded = _resolve_model(run, loaded)
    inputs = run_inputs(run, loaded.tokenizer)
    update = ex.compute(
        loaded.model,
        inputs["prompt_ids"],
        inputs["trajectory_ids"],
        inputs["probe_ids"],
        inputs["m_a"],
        inputs["boundary_cuts"],
        progress=progress,
    )
    t0 = time.perf_counter()
    edited = ex.edited_losses(loaded.model, update, inputs["prompt_ids"], inputs["probe_ids"])
    update.timings["verify_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    grams = geo.layer_gram(update.left, update.right)
    update.timings["gram_s"] = time.perf_counter() - t0
    meta = update.meta()
    meta["max_abs_error"] = float(np.abs(edited - update.target_loss).max())
    meta["fidelity"] = fidelity(run, loaded, inputs, update, grams, edited)
    result = ExactRun(update, grams, edited, meta)
    path = cache_path(run, store)
    if path is not None:
        try:
            save_npz_atomic(
                path,
                {
                    "boundary_cuts": update.boundary_cuts,
                    "left": update.left,
                    "right": update.right,
                    "condition": update.condition,
                    "rank": update.rank,
                    "target_loss": update.target_loss,
                    "construction_loss": update.construction_loss,
                    "layer_grams": grams,
                    "edited_loss": edited,
                    "meta": np.array(json.dumps(meta)),
                },
            )
        except OSError:
            pass  # caching is an optimisation
    return result


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
    return per_cut, hit.meta.get("fidelity")
