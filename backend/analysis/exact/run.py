"""The exact update of a cached run as derived data (``schema.EXACT``, ``backend.store.derived``).

``ensure`` computes it once (backend.analysis.exact.update), checks it by explicitly edited
forwards, measures the fidelity of each proxy, and caches factors, Gram matrices and meta;
``load`` reads it back without a model. docs/exact_update.md; docs/architecture.md §5.
"""

from __future__ import annotations

import time

import numpy as np

from backend.analysis.exact import geometry as geo
from backend.analysis.exact import update as ex
from backend.analysis.exact.data import ExactRun, cache_path, load, save, show_fields  # noqa: F401
from backend.engine import forward, provider
from backend.store.runs import RunData

TOP_K_LAYERS = (1, 2, 4, 8)  # truncations of the exact update reported as fidelity


def run_inputs(run: RunData, tokenizer) -> dict:
    """prompt, trajectory, probe ids and m_a exactly as ``backend.pipeline.run`` built them, plus the boundary cuts."""
    from backend.engine.trajectory import encode, encode_with_offsets

    answer_ids = [int(i) for i in run.answer_ids or encode(tokenizer, run.answer)]
    return {
        "prompt_ids": encode(tokenizer, run.prompt),
        "trajectory_ids": encode_with_offsets(tokenizer, run.trajectory)[0],
        "probe_ids": encode(tokenizer, run.template) + answer_ids,
        "m_a": len(answer_ids),
        "boundary_cuts": [int(c) for c in run.boundary_cuts()],
    }


def fidelity(run: RunData, loaded, inputs: dict, update: ex.ExactUpdate, layer_grams, edited_loss) -> dict:
    """Fraction of the descent L̂(0) − L̂(end) each proxy reproduces at the last boundary:
    (L̂(0) − L(θ + ΔW)) / (L̂(0) − L̂(end)) for the single-layer proxy (per stored layer),
    the exact update truncated to its top-k layers, and the full exact update."""
    from backend.analysis.landscapes.surfaces import LayerEditEvaluator
    from backend.analysis.spaces.proxy import available_layers, proxy_factors

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
            loss = forward.teacher_forced_loss(loaded.model, ids, update.m_a)
        truncated[str(k)] = {"layers": layers, "loss": loss, "fraction": frac(loss)}
    out["exact_top_k"] = truncated
    out["exact"] = {"loss": float(edited_loss[-1]), "fraction": frac(float(edited_loss[-1]))}
    return out


def ensure(run: RunData, loaded=None, store=None, progress=None) -> ExactRun:
    """The run's exact update: cached, or computed now (needs the run's model) and cached."""
    hit = load(run, store)
    if hit is not None:
        return hit
    loaded = provider.provide_for_run(run.model_name, run.model_fingerprint, run.key, loaded=loaded)
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
    info = update.meta()
    info["max_abs_error"] = float(np.abs(edited - update.target_loss).max())
    info["fidelity"] = fidelity(run, loaded, inputs, update, grams, edited)
    result = ExactRun(update, grams, edited, info)
    save(run, result, store)  # a failed write is a logged warning: the result still counts
    return result
