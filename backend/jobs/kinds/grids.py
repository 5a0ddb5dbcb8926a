"""Kinds ``surface`` (proxy-plane loss surface of a run at a layer,
``backend.analysis.landscapes.surfaces.loss_surface``) and ``landscape`` (random-direction
landscape, ``random_landscape``). Both are cached as the run's derived data; their estimate is
the load plus points × this machine's seconds per grid point, learned as each job finishes."""

from __future__ import annotations

from dataclasses import dataclass, replace

from backend.errors import InputError
from backend.jobs import params as P
from backend.jobs.kinds.common import check_grid, short
from backend.jobs.kinds.models import model_flags, model_for_run
from backend.jobs.queue import JobContext


@dataclass(frozen=True)
class SurfaceParams:
    key: str
    layer: int
    grid: int = 15
    span: float = 1.5

    def checked(self, store, kind: str) -> SurfaceParams:
        check_grid(kind, self.grid, self.span)
        key = P.resolve_key(store, self.key, kind)
        layers = store.open(key, verify=False).proxy_layers
        if self.layer not in layers:
            shown = ", ".join(str(x) for x in layers) or "none"
            raise InputError(
                f"job kind '{kind}': layer {self.layer} is not a stored proxy layer of run {short(key)} ({shown})"
            )
        return replace(self, key=key)


@dataclass(frozen=True)
class LandscapeParams:
    key: str
    grid: int = 11
    span: float = 1.0
    seed: int = 0

    def checked(self, store, kind: str) -> LandscapeParams:
        check_grid(kind, self.grid, self.span)
        return replace(self, key=P.resolve_key(store, self.key, kind))


def surface_title(p: SurfaceParams) -> str:
    return f"Surface: {short(p.key)} layer {p.layer}, {p.grid}×{p.grid}"


def landscape_title(p: LandscapeParams) -> str:
    return f"Landscape: {short(p.key)}, {p.grid}×{p.grid}"


def _grid_estimate(kind: str, key: str, points: int, queue, device: str):
    from backend.errors import RamlError
    from backend.jobs.estimates import estimate_grid

    try:
        run = queue.store.open(key, verify=False)
    except RamlError:
        return None
    in_memory, needs_conversion = model_flags(run.model_name)
    fingerprint = run.model_fingerprint or ""
    return estimate_grid(kind, points, queue, fingerprint, device, in_memory, needs_conversion)


def surface_estimate(p: SurfaceParams, queue, device: str):
    return _grid_estimate("surface", p.key, p.grid * p.grid, queue, device)


def landscape_estimate(p: LandscapeParams, queue, device: str):
    return _grid_estimate("landscape", p.key, p.grid * p.grid, queue, device)


def run_surface(p: SurfaceParams, ctx: JobContext) -> None:
    from backend.analysis.landscapes.surfaces import loss_surface

    run = ctx.store.open(p.key)
    loaded = model_for_run(ctx, run)
    points = p.grid * p.grid
    ctx.progress("surface", 0, points)
    result = loss_surface(
        run, p.layer, loaded=loaded, grid=p.grid, span=p.span, progress=ctx.reporter("surface"), store=ctx.store
    )
    ctx.add_result(p.key)
    ctx.set_value(result)


def run_landscape(p: LandscapeParams, ctx: JobContext) -> None:
    from backend.analysis.landscapes.surfaces import random_landscape

    run = ctx.store.open(p.key)
    loaded = model_for_run(ctx, run)
    points = p.grid * p.grid
    ctx.progress("landscape", 0, points)
    result = random_landscape(
        run, loaded=loaded, grid=p.grid, span=p.span, seed=p.seed, progress=ctx.reporter("landscape"), store=ctx.store
    )
    ctx.add_result(p.key)
    ctx.set_value(result)
