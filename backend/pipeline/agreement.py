"""The importance measures of stored runs, gathered for ``backend.analysis.importance.agreement``
(issue 21 item 3): each run's ablation and receiver-head attention (its derived importance) and
its counterfactual importance (its resampled branches). Branch runs are not pooled (they are
samples of their parent's question, not questions of the dataset). Reads the store only (no torch)."""

from __future__ import annotations

import numpy as np

from backend.analysis.importance import agreement
from backend.analysis.importance.stored import load_importance
from backend.errors import RamlError
from backend.pipeline.lineage import counterfactual
from backend.store.runs import RunData, RunStore


def run_vectors(store: RunStore, run: RunData) -> dict[str, np.ndarray]:
    return agreement.method_vectors(load_importance(run, store), counterfactual(store, run.key), len(run.steps))


def run_agreement(store: RunStore, run: RunData) -> list[dict]:
    """Every pair of the measures ``run`` has (Explore, ``show --json``)."""
    return [a.to_json() for a in agreement.agreement_table(run_vectors(store, run))]


def dataset_agreement(store: RunStore, keys: list[str]) -> dict:
    """Pooled and per question over the runs ``keys`` (branches and unreadable runs left out)."""
    groups: dict[str, list[dict[str, np.ndarray]]] = {}
    for key in keys:
        try:
            run = store.open(key, verify=False)
        except RamlError:
            continue
        if run.parent:
            continue
        vectors = run_vectors(store, run)
        if len(vectors) >= 2:
            groups.setdefault(run.question, []).append(vectors)
    report = agreement.dataset_agreement(groups)
    report["runs"] = sum(len(v) for v in groups.values())
    return report
