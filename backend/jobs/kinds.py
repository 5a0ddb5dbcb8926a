"""The built-in job kinds of the queue (``backend.jobs.queue``): ``run`` (one question:
new run or imported trajectory), ``batch`` (many questions, e.g. the app's bulk import),
``surface`` (proxy-plane loss surface of a run) and ``landscape`` (random-direction
landscape). Each handler turns JSON params into backend calls, reports progress (which is
also where a cancel takes effect), links the run keys it produced and records this
machine's throughput for the estimates (``backend.jobs.estimates``).

Models kept in memory by tests or notebooks are looked up in ``MODEL_OVERRIDES``
(name → LoadedModel) before anything is loaded from disk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict

from backend.engine.trajectory import GenerationSettings
from backend.errors import InputError, RamlError
from backend.jobs.queue import JobContext, handler
from backend.pipeline.run import RunRequest, run_question

log = logging.getLogger(__name__)

# name -> LoadedModel, or a callable name -> LoadedModel | None (the app's overrides)
MODEL_OVERRIDES: dict = {}
MODEL_LOOKUPS: list[Callable[[str], object]] = []


def override(name: str):
    """An in-memory model registered under ``name`` (None: load it from disk as usual)."""
    if name in MODEL_OVERRIDES:
        return MODEL_OVERRIDES[name]
    for lookup in MODEL_LOOKUPS:
        found = lookup(name)
        if found is not None:
            return found
    return None


def request_params(req: RunRequest) -> dict:
    """A RunRequest as the JSON params of a ``run`` job."""
    return asdict(req)


def request_from_params(params: dict) -> RunRequest:
    fields = dict(params)
    fields.pop("force", None)
    fields.pop("line", None)
    generation = fields.pop("generation", None) or {}
    try:
        return RunRequest(**fields, generation=GenerationSettings(**generation))
    except TypeError as exc:
        raise InputError(f"job params do not describe a run: {exc}") from None


def _record_run(ctx: JobContext, req: RunRequest, key: str, loaded_before: bool, needs_conversion: bool) -> None:
    """Fold a computed run's stage times into this machine's throughput table."""
    from backend.engine.models import load_model
    from backend.engine.trajectory import encode

    ctx.close_stage()
    run = ctx.store.open(key, verify=False)
    fingerprint, device = run.model_fingerprint, ctx.job.device
    seconds = ctx.stage_seconds
    if not loaded_before and seconds.get("load", 0.0) > 0.2:
        ctx.queue.record(fingerprint, device, "load_gguf_s" if needs_conversion else "load_s", seconds["load"])
    generated = run.trajectory_source == "generated"
    n_tokens = int(run.n_tokens)
    if generated and seconds.get("generate", 0.0) > 0.05:
        ctx.queue.record(fingerprint, device, "generate_tps", n_tokens / seconds["generate"])
    if seconds.get("analyze", 0.0) > 0.05:
        loaded = override(req.model) or load_model(req.model, trust_remote_code=req.trust_remote_code)
        m = len(encode(loaded.tokenizer, run.template)) + len(run.answer_ids or [])
        probe_tokens = n_tokens + int(run.summary.n_cuts or n_tokens + 1) * m
        ctx.queue.record(fingerprint, device, "analyze_tps", probe_tokens / seconds["analyze"])


def _model_flags(name: str) -> tuple[bool, bool]:
    from backend.jobs.estimates import model_state

    if override(name) is not None:
        return True, False
    try:
        _, in_memory, needs_conversion = model_state(name)
    except RamlError:
        return False, False
    return in_memory, needs_conversion


@handler("run")
def run_job(params: dict, ctx: JobContext) -> None:
    req = request_from_params(params)
    loaded_before, needs_conversion = _model_flags(req.model)
    outcome = run_question(
        req, ctx.store, loaded=override(req.model), progress=ctx.progress, force=bool(params.get("force"))
    )
    ctx.add_result(outcome.key)
    for warning in outcome.warnings:
        ctx.message(warning)
    if not outcome.cached:
        _record_run(ctx, req, outcome.key, loaded_before, needs_conversion)
    ctx.progress("done", 1, 1)


@handler("batch")
def batch_job(params: dict, ctx: JobContext) -> None:
    """params: ``{"requests": [RunRequest params...], "source": "file name"}``; one failed
    question is a message, the others still run; a cancel stops between or inside questions."""
    items = params.get("requests") or []
    source = params.get("source", "")
    failed = 0
    for i, item in enumerate(items):
        ctx.progress("question", i, len(items))
        req = request_from_params(item)
        loaded_before, needs_conversion = _model_flags(req.model)
        try:
            outcome = run_question(req, ctx.store, loaded=override(req.model), progress=_inner(ctx, i, len(items)))
        except RamlError as exc:
            failed += 1
            ctx.message(f"{_where(source, item, i)} ({req.label or 'no id'}): {exc}")
            continue
        except Exception as exc:  # a bug on one question: reported as such (traceback in the log), the rest run
            failed += 1
            log.exception("batch job %s: question %d failed", ctx.job.id, i + 1)
            ctx.message(
                f"{_where(source, item, i)} ({req.label or 'no id'}): a bug, please report it: "
                f"{type(exc).__name__}: {exc}"
            )
            continue
        ctx.add_result(outcome.key)
        if not outcome.cached:
            _record_run(ctx, req, outcome.key, loaded_before, needs_conversion)
    ctx.progress("question", len(items), len(items))
    if failed == len(items) and items:
        raise InputError(f"all {len(items)} questions failed (first: {ctx.messages[0] if ctx.messages else '?'})")


def _where(source: str, item: dict, i: int) -> str:
    return f"{source}:{item.get('line', i + 1)}" if source else f"question {i + 1}"


def _inner(ctx: JobContext, i: int, n: int):
    """Progress of one question of a batch: the stage name says which question it is."""

    def report(stage: str, done: int, total: int) -> None:
        ctx.progress(stage, done, total)
        ctx.queue._update(ctx.job.id, title=f"{ctx.job.title.split(' · ')[0]} · question {i + 1}/{n}")

    return report


@handler("surface")
def surface_job(params: dict, ctx: JobContext) -> None:
    """params: ``{"key", "layer", "grid", "span"}``: the proxy-plane loss surface of a run."""
    from backend.analysis.landscapes.surfaces import loss_surface

    run = ctx.store.open(params["key"])
    grid = int(params.get("grid", 15))
    loaded = _load_for(ctx, run)
    ctx.progress("surface", 0, grid * grid)
    loss_surface(
        run,
        int(params["layer"]),
        loaded=loaded,
        grid=grid,
        span=float(params.get("span", 1.5)),
        progress=lambda d, t: ctx.progress("surface", d, t),
        store=ctx.store,
    )
    ctx.add_result(params["key"])
    _record_grid(ctx, run, "surface", grid * grid)


@handler("landscape")
def landscape_job(params: dict, ctx: JobContext) -> None:
    """params: ``{"key", "grid", "span", "seed"}``: the random-direction landscape of a run."""
    from backend.analysis.landscapes.surfaces import random_landscape

    run = ctx.store.open(params["key"])
    grid = int(params.get("grid", 11))
    loaded = _load_for(ctx, run)
    ctx.progress("landscape", 0, grid * grid)
    random_landscape(
        run,
        loaded=loaded,
        grid=grid,
        span=float(params.get("span", 1.0)),
        seed=int(params.get("seed", 0)),
        progress=lambda d, t: ctx.progress("landscape", d, t),
        store=ctx.store,
    )
    ctx.add_result(params["key"])
    _record_grid(ctx, run, "landscape", grid * grid)


def _load_for(ctx: JobContext, run):
    """The run's model, loaded as its own stage (so the grid's rate excludes the load)."""
    from backend.engine.models import load_model

    name = run.model_name
    loaded_before, needs_conversion = _model_flags(name)
    ctx.progress("load", 0, 1)
    loaded = override(name) or load_model(name)
    ctx.progress("load", 1, 1)
    ctx.close_stage()
    if not loaded_before and ctx.stage_seconds.get("load", 0.0) > 0.2:
        metric = "load_gguf_s" if needs_conversion else "load_s"
        ctx.queue.record(run.model_fingerprint, ctx.job.device, metric, ctx.stage_seconds["load"])
    return loaded


def _record_grid(ctx: JobContext, run, kind: str, points: int) -> None:
    ctx.close_stage()
    seconds = ctx.stage_seconds.get(kind, 0.0)
    if seconds > 0.05 and points:
        ctx.queue.record(run.model_fingerprint, ctx.job.device, f"{kind}_point_s", seconds / points)
