"""Kind ``importance``: step importance of a run (ablation, and the answer probe's attention),
``backend.analysis.importance.run.compute_run_importance``, saved as the run's derived data."""

from __future__ import annotations

from dataclasses import dataclass, replace

from backend.analysis.importance import defaults
from backend.jobs import params as P
from backend.jobs.kinds.common import short
from backend.jobs.kinds.models import derived_estimate, model_for_run
from backend.jobs.queue import JobContext


@dataclass(frozen=True)
class ImportanceParams:
    key: str
    attention: bool = defaults.ATTENTION  # the one set of defaults, shared with the CLI and Explore
    every_boundary: bool = defaults.EVERY_BOUNDARY

    def checked(self, store, kind: str) -> ImportanceParams:
        return replace(self, key=P.resolve_key(store, self.key, kind))


def importance_title(p: ImportanceParams) -> str:
    return f"Importance: {short(p.key)}" + (" + attention" if p.attention else "")


def importance_estimate(p: ImportanceParams, queue, device: str):
    return derived_estimate("importance", p.key, queue, device, attention=p.attention, every_boundary=p.every_boundary)


def run_importance(p: ImportanceParams, ctx: JobContext) -> None:
    from backend.analysis.importance.run import compute_run_importance

    run = ctx.store.open(p.key)
    loaded = model_for_run(ctx, run)
    payload = compute_run_importance(
        run, loaded, store=ctx.store, attention=p.attention, every_boundary=p.every_boundary, progress=ctx.progress
    )
    record_importance_throughput(ctx, run, payload)
    ctx.add_result(p.key)
    ctx.set_value(payload)
    ctx.progress("done", 1, 1)


def record_importance_throughput(ctx: JobContext, run, payload: dict) -> None:
    """The work the stages really did, for the estimates to learn seconds per unit from (issue 23):
    ``ablate`` the tokens it encoded (``estimates.ablation_tokens`` + the probes), ``attention``
    the probed cuts' tokens (``estimates.attention_work``)."""
    from backend.jobs import estimates

    shape = estimates.run_shape(run)
    boundaries = [int(c) for c in payload.get("boundary_cuts") or []]
    if boundaries:
        probes = len(boundaries) / 2 if payload.get("every_boundary") else 1
        ctx.work("ablate", estimates.ablate_work(shape["n"], boundaries, probes, shape["m"], shape["d_model"]))
    if payload.get("attention"):
        cuts = len(payload["attention"]["cuts"])
        ctx.work("attention", estimates.attention_work(shape["n"], cuts, shape["m"], shape["d_model"]))
