"""Reading a run's stored step importance (derived data, ``schema.IMPORTANCE``): torch-free, so
``show --json`` and the pages read it without loading the computing modules (``run``)."""

from __future__ import annotations

from backend.store import derived, schema
from backend.store.runs import RunData

IMPORTANCE_VERSION = schema.IMPORTANCE.version
IMPORTANCE_PARAMS: dict = {}  # one importance per run: the latest computation (its settings are in the payload)


def load_importance(run: RunData, store=None) -> dict | None:
    """The stored importance of ``run`` (None if never computed, damaged or from an older version)."""
    payload = derived.load_derived(store, run, schema.IMPORTANCE, IMPORTANCE_PARAMS)
    return payload if payload is not None and payload.get("version") == IMPORTANCE_VERSION else None
