"""The model of a job, from ``backend.engine.provider`` only, loaded as its own ``load`` stage
(so a grid's or an analysis's rate excludes the load) with the load time recorded."""

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

    name = run.model_name
    in_memory, needs_conversion = model_flags(name)
    ctx.progress("load", 0, 1)
    loaded = provider.provide_for_run(name, run.model_fingerprint, run.key)
    ctx.progress("load", 1, 1)
    ctx.close_stage()
    if not in_memory and ctx.stage_s("load") > 0.2:
        metric = "load_gguf_s" if needs_conversion else "load_s"
        ctx.record_throughput(loaded.fingerprint, metric, ctx.stage_s("load"))
    return loaded


def open_run(ctx: JobContext, key: str):
    return ctx.store.open(key)
