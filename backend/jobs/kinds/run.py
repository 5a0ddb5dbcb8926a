"""Kinds ``run`` (one question: a new run or an imported trajectory, ``run_question``) and
``batch`` (every question of a dataset file, with K samples: ``backend.scale.batch.run_batch``,
the one batch implementation). ``run`` records this machine's throughput for the estimates
(a batch's runs go through ``run_batch``, whose stages it does not see: it records none)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.errors import InputError
from backend.jobs import params as P
from backend.jobs.kinds.models import model_flags, model_state_for
from backend.jobs.queue import JobContext

if TYPE_CHECKING:
    from backend.pipeline.request import RunRequest

log = logging.getLogger(__name__)

MAX_SAMPLES = 64  # backend.pipeline.branches.MAX_SAMPLES: K trajectories per question at most
BATCH_ENGINES = ("local", "ray")
PER_RECORD_FIELDS = ("question", "answer", "trajectory", "label")


def request_params(req: RunRequest, *, force: bool = False) -> dict:
    """A RunRequest as the JSON params of a ``run`` job."""
    return asdict(req) | ({"force": True} if force else {})


@dataclass(frozen=True)
class RunParams:
    """``run``: the RunRequest fields (flat, as ``request_params`` writes them) + ``force``."""

    request: RunRequest
    force: bool = False

    @classmethod
    def from_json(cls, data: Any, kind: str) -> RunParams:
        from backend.pipeline.request import RunRequest

        if not isinstance(data, dict):
            raise InputError(f"job kind '{kind}': params must be a JSON object")
        fields = dict(data)
        force = P.parse(_Force, {"force": fields.pop("force", False)}, kind).force
        return cls(P.parse(RunRequest, fields, kind), force)

    def to_json(self) -> dict:
        return asdict(self.request) | {"force": self.force}

    def checked(self, store, kind: str) -> RunParams:
        self.request.validate()
        return self


@dataclass(frozen=True)
class _Force:
    force: bool = False


def run_title(p: RunParams) -> str:
    verb = "Import" if p.request.trajectory is not None else "Run"
    condition = "" if p.request.thinking else " (no thinking)"
    return f"{verb}{condition}: {p.request.question.strip()[:60]}"


def run_estimate(p: RunParams, queue, device: str) -> float | None:
    from backend.jobs.estimates import estimate_run

    state = model_state_for(p.request.model)
    return estimate_run(p.request, queue, device, model_state_=state).seconds if state else None


def record_run(ctx: JobContext, req: RunRequest, key: str, loaded_before: bool, needs_conversion: bool) -> None:
    """Fold a computed run's stage times into this machine's throughput table."""
    from backend.engine import provider
    from backend.engine.trajectory import encode

    ctx.close_stage()
    run = ctx.store.open(key, verify=False)
    fingerprint = run.model_fingerprint
    if not loaded_before and ctx.stage_s("load") > 0.2:
        ctx.record_throughput(fingerprint, "load_gguf_s" if needs_conversion else "load_s", ctx.stage_s("load"))
    n_tokens = int(run.n_tokens)
    if run.trajectory_source == "generated" and ctx.stage_s("generate") > 0.05:
        ctx.record_throughput(fingerprint, "generate_tps", n_tokens / ctx.stage_s("generate"))
    if ctx.stage_s("analyze") > 0.05:
        loaded = provider.provide(
            req.model, trust_remote_code=req.trust_remote_code, device=req.device, dtype=req.dtype
        )
        m = len(encode(loaded.tokenizer, run.template)) + len(run.answer_ids or [])
        probe_tokens = n_tokens + int(run.summary.n_cuts or n_tokens + 1) * m
        ctx.record_throughput(fingerprint, "analyze_tps", probe_tokens / ctx.stage_s("analyze"))


def run_run(p: RunParams, ctx: JobContext) -> None:
    from backend.engine import provider
    from backend.pipeline.run import run_question

    req = p.request
    loaded_before, needs_conversion = model_flags(req.model)
    outcome = run_question(req, ctx.store, loaded=provider.registered(req.model), progress=ctx.progress, force=p.force)
    ctx.add_result(outcome.key)
    for warning in outcome.warnings:
        ctx.message(warning)
    if not outcome.cached:
        record_run(ctx, req, outcome.key, loaded_before, needs_conversion)
    ctx.set_value(outcome)
    ctx.progress("done", 1, 1)


# ---------------------------------------------------------------------------- batch
@dataclass(frozen=True)
class BatchParams:
    """``batch``: one run per (question, sample) of ``source`` with the settings of ``template``
    (RunRequest fields other than question/answer/trajectory/label)."""

    source: str
    samples: int = 1
    limit: int | None = None
    preset: str | None = None
    question_field: str | None = None
    answer_field: str | None = None
    trajectory_field: str | None = None
    batch_input: str | None = None  # OpenAI-style batch output: its batch input file (questions by custom_id)
    template: dict = field(default_factory=dict)
    engine: str = "local"
    address: str | None = None

    def template_request(self, kind: str = "batch") -> RunRequest:
        from backend.pipeline.request import RunRequest

        bad = [k for k in PER_RECORD_FIELDS if k in self.template]
        if bad:
            raise InputError(f"job kind '{kind}': template.{bad[0]} comes from each record, not from the template")
        return P.parse(RunRequest, {"question": "", **self.template}, f"{kind} template")

    def field_map(self):
        from backend.io.fields import FieldMap

        return FieldMap.build(
            self.preset, self.question_field, self.answer_field, self.trajectory_field, batch_input=self.batch_input
        )

    def checked(self, store, kind: str) -> BatchParams:
        from dataclasses import replace

        if not 1 <= self.samples <= MAX_SAMPLES:
            raise InputError(f"job kind '{kind}': samples {self.samples} must lie in 1..{MAX_SAMPLES}")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"job kind '{kind}': limit {self.limit} must be at least 1 (null runs every question)")
        if self.engine not in BATCH_ENGINES:
            raise InputError(f"job kind '{kind}': engine '{self.engine}' is not one of {', '.join(BATCH_ENGINES)}")
        if not self.source.strip():
            raise InputError(f"job kind '{kind}': source is empty (a dataset file or folder)")
        self.field_map()  # an unknown preset is refused here
        replace(self.template_request(kind), question="options check").validate()
        batch_input = None if self.batch_input is None else str(Path(self.batch_input).resolve())
        return replace(self, source=str(Path(self.source).resolve()), batch_input=batch_input)


def batch_title(p: BatchParams) -> str:
    samples = f" × {p.samples} samples" if p.samples > 1 else ""
    return f"Batch: {Path(p.source).name}{samples}"


def run_batch(p: BatchParams, ctx: JobContext) -> None:
    """A failed question or unreadable line (a missing file included) is a message and the
    others still run, as in ``raml batch``. A cancel takes effect between questions."""
    from backend.scale import batch

    spec = batch.BatchSpec(
        p.source, p.field_map(), p.samples, p.limit, p.engine, p.address, show_progress=ctx.interactive
    )
    template = p.template_request()
    title = (ctx.job.title or batch_title(p)).split(" · ")[0]

    def progress(done: int, total: int) -> None:
        ctx.progress("question", done, total)
        if done < total:
            ctx.set_title(f"{title} · question {done + 1}/{total}")

    report = batch.run_batch(spec, template, ctx.store, progress=progress)
    for r in report.results:
        if r.key:
            ctx.add_result(r.key)
    for line in report.error_lines():
        ctx.message(line)
    ctx.set_title(f"{title} · {report.summary()}")
    ctx.set_value(report)
