"""Step importance of a stored run: rebuild its token ids, compute, and keep the result as
derived data of the run (``schema.IMPORTANCE``, ``backend.store.derived``; docs/architecture.md §5).

``compute_run_importance`` is long-running and takes a ``progress(stage, done, total)``
callback like ``backend.pipeline.run.run_question``, so a job queue can run and watch it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from backend.analysis.importance.ablation import ablate
from backend.analysis.importance.attention import probe_attention
from backend.analysis.importance.stored import IMPORTANCE_PARAMS, IMPORTANCE_VERSION
from backend.analysis.importance.stored import load_importance as load_importance  # re-exported: readers' old path
from backend.engine import provider
from backend.engine.probe import ProbeRequest
from backend.engine.trajectory import encode, encode_with_offsets
from backend.errors import InputError
from backend.store import derived, schema
from backend.store.runs import RunData

StageProgress = Callable[[str, int, int], None]
RECEIVER_HEADS = 5


def probe_request_for_run(run: RunData, tokenizer) -> ProbeRequest:
    """The run's prompt, trajectory, template and answer ids and its step boundaries, as the
    run was analysed (same encoders as ``backend.pipeline.run``)."""
    traj_ids, _offsets = encode_with_offsets(tokenizer, run.trajectory)
    n = int(run.n_tokens)
    if len(traj_ids) != n:
        raise InputError(
            f"run {run.key}: its trajectory re-tokenizes to {len(traj_ids)} tokens, not the stored {n}; "
            "was it analysed with another tokenizer?"
        )
    ends = [int(e) for e in run.steps["end"]]
    return ProbeRequest(
        prompt_ids=encode(tokenizer, run.prompt),
        trajectory_ids=traj_ids,
        template_ids=encode(tokenizer, run.template),
        answer_ids=encode(tokenizer, run.answer),
        cuts=[],
        boundary_cuts=[0, *ends],
    )


def importance_path(run: RunData, store=None) -> Path | None:
    """The stored importance's file, or where it will be written."""
    return derived.derived_path(store, run, schema.IMPORTANCE, IMPORTANCE_PARAMS)


def _floats(values) -> list:
    return [None if not np.isfinite(v) else round(float(v), 7) for v in np.asarray(values).ravel()]


def compute_run_importance(
    run: RunData,
    loaded=None,
    *,
    store=None,
    attention: bool = False,
    every_boundary: bool = False,
    progress: StageProgress | None = None,
) -> dict:
    """Ablation importance (and, with ``attention``, the probe's attention per step) of a run,
    saved as derived data (a failed write is a logged warning) and returned as a JSON-ready dict."""
    report = progress or (lambda stage, done, total: None)
    loaded = provider.provide_for_run(run.model_name, run.model_fingerprint, run.key, loaded=loaded)
    req = probe_request_for_run(run, loaded.tokenizer)
    S = len(req.boundary_cuts) - 1
    t0 = time.perf_counter()
    report("ablate", 0, S)
    result = ablate(loaded.model, req, every_boundary=every_boundary, progress=lambda d, t: report("ablate", d, t))
    ablate_s = time.perf_counter() - t0
    payload: dict = {
        "version": IMPORTANCE_VERSION,
        "model": loaded.fingerprint,
        "boundary_cuts": [int(c) for c in result.boundary_cuts],
        "final_loss": round(result.final_full, 7),
        "ablation": _floats(result.importance),  # [S] nats
        "ablated_final_loss": _floats(result.ablated_loss[:, -1]),
        "every_boundary": every_boundary,
        "ablation_at_boundaries": (
            [_floats(row) for row in result.importance_at_boundaries] if every_boundary else None
        ),
        "attention": None,
        "timings": {"ablate_s": round(ablate_s, 4)},
        "created": time.time(),
    }
    if attention:
        report("attention", 0, 1)
        t0 = time.perf_counter()
        att = probe_attention(loaded.model, req, every_boundary=every_boundary)
        heads = att.receiver_heads(RECEIVER_HEADS)
        final = att.per_step[-1]  # [L, H, S]
        payload["attention"] = {
            "cuts": [int(c) for c in att.cuts],
            "head_mean": _floats(att.head_mean[-1]),  # [S]
            "head_mean_at_boundaries": [_floats(r) for r in att.head_mean] if every_boundary else None,
            "receiver_heads": [{"layer": layer, "head": head, "kurtosis": round(k, 4)} for layer, head, k in heads],
            "receiver_mean": _floats(np.mean([final[layer, head] for layer, head, _ in heads], axis=0)),  # [S]
            "prompt_mass": round(float(att.prompt_mass[-1].mean()), 6),
            "probe_mass": round(float(att.probe_mass[-1].mean()), 6),
            "per_layer_head_shape": list(final.shape),
        }
        payload["timings"]["attention_s"] = round(time.perf_counter() - t0, 4)
        report("attention", 1, 1)
    derived.save_derived(store, run, schema.IMPORTANCE, IMPORTANCE_PARAMS, payload)
    return payload
