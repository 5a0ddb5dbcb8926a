"""The model of a job, from ``backend.engine.provider`` only, loaded as its own ``load`` stage
(so a grid's or an analysis's rate excludes the load; the registry learns the load's time from
the plan's ``load`` stage)."""

from __future__ import annotations

from backend.errors import RamlError
from backend.jobs.queue import JobContext


def model_flags(name: str) -> tuple[bool, bool]:
    """(already in memory, needs the first GGUF conversion) without loading anything."""
    from backend.engine import provider

    if provider.is_in_memory(name):
        return True, False
    from backend.jobs.estimates import model_state

    try:
        _, in_memory, needs_conversion = model_state(name)
    except RamlError:
        return False, False
    return in_memory, needs_conversion


def model_state_for(name: str) -> tuple[str, bool, bool] | None:
    """(fingerprint, in memory, needs conversion) for the estimates; None when unknown."""
    from backend.engine import provider

    hit = provider.registered(name)
    if hit is not None:
        return hit.fingerprint, True, False
    from backend.jobs.estimates import model_state

    try:
        return model_state(name)
    except RamlError:
        return None


def model_for_run(ctx: JobContext, run):
    """The model ``run`` was analysed with (refuses other weights), as the ``load`` stage."""
    from backend.engine import provider

    ctx.progress("load", 0, 1)
    loaded = provider.provide_for_run(run.model_name, run.model_fingerprint, run.key)
    ctx.progress("load", 1, 1)
    return loaded


def open_run(ctx: JobContext, key: str):
    return ctx.store.open(key)


def derived_estimate(kind: str, key: str, queue, device: str, **options):
    """The estimate of a derived-data job on stored run ``key`` (``estimates.estimate_derived``:
    the model load unless in memory, then the kind's stages); None when the run cannot be read."""
    from backend.jobs.estimates import estimate_derived

    try:
        run = queue.store.open(key, verify=False)
    except RamlError:
        return None
    in_memory, needs_conversion = model_flags(run.model_name) if kind != "export_images" else (True, False)
    return estimate_derived(kind, run, queue, device, in_memory=in_memory, needs_conversion=needs_conversion, **options)
