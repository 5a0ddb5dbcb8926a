"""Kinds ``exact`` (the trajectory as an exact all-layer weight update,
``backend.analysis.exact.run.ensure``) and ``exact_landscape`` (the loss over the plane of the
exact updates, ``backend.analysis.exact.landscape.surface``; computes the update first when it
is not cached). Both are cached as the run's derived data."""

from __future__ import annotations

from dataclasses import dataclass, replace

from backend.jobs import params as P
from backend.jobs.kinds.common import check_grid, short
from backend.jobs.kinds.models import derived_estimate, model_for_run
from backend.jobs.queue import JobContext


@dataclass(frozen=True)
class ExactParams:
    key: str

    def checked(self, store, kind: str) -> ExactParams:
        return replace(self, key=P.resolve_key(store, self.key, kind))


@dataclass(frozen=True)
class ExactLandscapeParams:
    key: str
    grid: int = 15
    span: float = 1.5

    def checked(self, store, kind: str) -> ExactLandscapeParams:
        check_grid(kind, self.grid, self.span)
        return replace(self, key=P.resolve_key(store, self.key, kind))


def exact_title(p: ExactParams) -> str:
    return f"Exact update: {short(p.key)}"


def exact_landscape_title(p: ExactLandscapeParams) -> str:
    return f"Exact landscape: {short(p.key)}, {p.grid}×{p.grid}"


def exact_estimate(p: ExactParams, queue, device: str):
    return derived_estimate("exact", p.key, queue, device)


def exact_landscape_estimate(p: ExactLandscapeParams, queue, device: str):
    from backend.analysis.exact import run as exact_run
    from backend.errors import RamlError

    try:
        cached = exact_run.load(queue.store.open(p.key, verify=False), queue.store) is not None
    except (RamlError, OSError, ValueError):
        cached = False
    return derived_estimate("exact_landscape", p.key, queue, device, points=p.grid * p.grid, exact_cached=cached)


def _ensure(ctx: JobContext, run, loaded_box: list):
    """The cached exact update, or computed now (the model loaded only then)."""
    from backend.analysis.exact import run as exact_run

    hit = exact_run.load(run, ctx.store)
    if hit is not None:
        return hit
    loaded_box.append(model_for_run(ctx, run))
    ctx.progress("exact", 0, 1)
    result = exact_run.ensure(run, loaded=loaded_box[-1], store=ctx.store, progress=ctx.reporter("exact"))
    from backend.jobs import estimates

    boundaries = int((result.meta.get("stored") or {}).get("K_path") or result.update.K)
    shape = estimates.run_shape(run)  # the work done, for the estimates' seconds per boundary (issue 23)
    ctx.work("exact", estimates.exact_work(shape["n"], boundaries, shape["d_model"]))
    return result


def run_exact(p: ExactParams, ctx: JobContext) -> None:
    run = ctx.store.open(p.key)
    result = _ensure(ctx, run, [])
    ctx.add_result(p.key)
    ctx.set_value(result)
    ctx.progress("done", 1, 1)


def run_exact_landscape(p: ExactLandscapeParams, ctx: JobContext) -> None:
    from backend.analysis.exact import landscape

    run = ctx.store.open(p.key)
    hit = landscape.load_surface(run, p.grid, p.span, ctx.store)
    if hit is None:
        loaded_box: list = []
        exact = _ensure(ctx, run, loaded_box)
        ctx.check_cancel()
        loaded = loaded_box[-1] if loaded_box else model_for_run(ctx, run)
        ctx.progress("exact_landscape", 0, 1)
        hit = landscape.surface(run, exact, loaded, grid=p.grid, span=p.span, store=ctx.store)
    ctx.add_result(p.key)
    ctx.set_value(hit)
    ctx.progress("done", 1, 1)
