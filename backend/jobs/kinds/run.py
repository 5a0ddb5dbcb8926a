"""Kinds ``run`` (one question: a new run or an imported trajectory, ``run_question``) and
``batch`` (every question of a dataset file, with K samples: ``backend.scale.batch.run_batch``,
the one batch implementation). A ``run`` with ``cuts: "auto"`` gets its cuts from the cut-point
policy at submit (``backend.pipeline.cut_policy``: every token within the budget, else a stride
that fits it, the boundaries always kept), recorded as ``cut_policy``. Both kinds teach the
estimates (``backend.jobs.estimates``): the registry folds their stage times in; ``run`` also
reports the work its stages really did and what the run taught about its model."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.errors import InputError
from backend.jobs import params as P
from backend.jobs.kinds.models import model_state_for
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
        return RunParams(with_cut_policy(self.request, store), self.force)


def with_cut_policy(req: RunRequest, store) -> RunRequest:
    """``req`` with its cuts decided by the policy (``auto`` → all or a stride that fits the
    budget, from this machine's rates) and ``cut_policy`` set to what was decided and why."""
    from dataclasses import replace

    from backend.jobs.estimates import estimate_run
    from backend.jobs.queue import JobQueue, default_device

    if req.cuts != "auto" and req.cut_policy is not None:
        return req
    state = model_state_for(req.model)
    if state is None:
        if req.cuts != "auto":
            return req
        state = ("", False, False)  # an unknown model: run_question refuses it; decided on first guesses
    policy = estimate_run(req, JobQueue(store), default_device(), model_state_=state).cut_policy or {}
    return replace(req, cuts=policy.get("chosen", req.cuts), cut_policy=policy or None)


@dataclass(frozen=True)
class _Force:
    force: bool = False


def run_title(p: RunParams) -> str:
    verb = "Import" if p.request.trajectory is not None else "Run"
    return f"{verb}: {p.request.question.strip()[:60]}"


def run_estimate(p: RunParams, queue, device: str):
    from backend.jobs.estimates import estimate_run

    state = model_state_for(p.request.model)
    return estimate_run(p.request, queue, device, model_state_=state) if state else None


def record_run(ctx: JobContext, req: RunRequest, key: str) -> None:
    """The work a computed run's stages really did (for the estimates to learn from) and what the
    run taught about its model (characters per token, tokens per step, the generation's fill)."""
    from backend.engine import provider
    from backend.engine.trajectory import encode
    from backend.jobs import estimates

    run = ctx.store.open(key, verify=False)
    n_tokens = int(run.n_tokens)
    generated = run.trajectory_source == "generated" and req.trajectory is None
    if generated:
        ctx.work("generate", n_tokens)
    loaded = provider.provide(req.model, trust_remote_code=req.trust_remote_code, device=req.device, dtype=req.dtype)
    m = len(encode(loaded.tokenizer, run.template)) + len(run.answer_ids or [])
    ctx.work("analyze", estimates.analysis_work(n_tokens, int(run.summary.n_cuts or n_tokens + 1), m, run.d_model))
    ctx.work("write", estimates.write_work(n_tokens))
    facts = estimates.facts_of_run(run, req.generation.max_new_tokens if generated else None)
    ctx.record_facts(run.model_fingerprint, facts)


def run_run(p: RunParams, ctx: JobContext) -> None:
    from backend.engine import provider
    from backend.pipeline.run import run_question

    req = p.request
    outcome = run_question(req, ctx.store, loaded=provider.registered(req.model), progress=ctx.progress, force=p.force)
    ctx.add_result(outcome.key)
    for warning in outcome.warnings:
        ctx.message(warning)
    if not outcome.cached:
        record_run(ctx, req, outcome.key)
    ctx.set_value(outcome)
    ctx.progress("done", 1, 1)


def learn_from_run(ctx: JobContext, key: str) -> None:
    """A batch's computed run teaches the scoring rate from its own engine timings (the batch
    reports questions, not stages) and its model's facts; a run that cannot be read teaches nothing."""
    from backend.errors import RamlError
    from backend.jobs import estimates

    try:
        run = ctx.store.open(key, verify=False)
    except RamlError:
        return
    timings = run.timings
    seconds = sum(float(timings.get(k, 0.0)) for k in ("prefill_s", "probe_s", "readout_s"))
    shape = estimates.run_shape(run)
    work = estimates.analysis_work(shape["n"], shape["cuts"], shape["m"], shape["d_model"])
    if seconds >= estimates.MIN_STAGE_S and work > 0:
        ctx.record_throughput(run.model_fingerprint, "analyze", seconds / work)
    ctx.record_facts(run.model_fingerprint, estimates.facts_of_run(run))


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

        return FieldMap.build(self.preset, self.question_field, self.answer_field, self.trajectory_field)

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
        template = self.template_request(kind)
        replace(template, question="options check").validate()
        return replace(self, source=str(Path(self.source).resolve()), template=self._cut_hint(template, store))

    def _cut_hint(self, template: RunRequest, store) -> dict:
        """cuts "auto": each run decides on its real token counts (``run_question``), at this
        machine's measured scoring rate, put into the template here."""
        if template.cuts != "auto" or (self.template.get("cut_policy") or {}).get("s_per_token"):
            return self.template
        from backend.jobs.estimates import Rates
        from backend.jobs.queue import JobQueue, default_device

        state = model_state_for(template.model)
        rates = Rates(JobQueue(store), state[0] if state else "", default_device())
        rate, d_model = rates.rate("analyze"), rates.fact("d_model").seconds
        hint = {"requested": "auto", "s_per_token": rate.seconds if rate.n else None, "d_model": d_model}
        return dict(self.template) | {"cut_policy": hint}


def batch_title(p: BatchParams) -> str:
    samples = f" × {p.samples} samples" if p.samples > 1 else ""
    return f"Batch: {Path(p.source).name}{samples}"


ESTIMATE_MAX_BYTES = 64 << 20  # a larger dataset file is not read twice just to estimate it


def batch_estimate(p: BatchParams, queue, device: str):
    """One load, then every (question, sample)'s stages (``estimates.estimate_batch``); the file
    is read for it (its first ``limit`` questions), unless it is large or unreadable."""
    from dataclasses import replace

    from backend.errors import RamlError
    from backend.jobs.estimates import estimate_batch
    from backend.scale import batch

    source = Path(p.source)
    try:
        if source.is_file() and source.stat().st_size > ESTIMATE_MAX_BYTES:
            return None
        spec = batch.BatchSpec(p.source, p.field_map(), p.samples, p.limit, p.engine, p.address, show_progress=False)
        records, _, _ = batch.read_records(spec)
    except (RamlError, OSError):
        return None
    template = p.template_request()
    reqs = [
        replace(template, question=r.question, answer=r.answer, trajectory=r.trajectory)
        for r in records
        for _ in range(1 if r.trajectory is not None else p.samples)
    ]
    state = model_state_for(template.model)
    return estimate_batch(reqs, queue, device, model_state_=state) if state and reqs else None


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
            if not r.cached:
                learn_from_run(ctx, r.key)
    for line in report.error_lines():
        ctx.message(line)
    ctx.set_title(f"{title} · {report.summary()}")
    ctx.set_value(report)
