"""Kind ``branch``: branch a run at a step, ``backend.pipeline.branches.resample`` (K sampled
continuations) or ``edit`` (the step replaced by ``text``; the rest kept or regenerated).
Every branch is a run of its own; the job's results are the branches' keys."""

from __future__ import annotations

from dataclasses import dataclass, replace

from backend.errors import InputError
from backend.jobs import params as P
from backend.jobs.kinds.common import short
from backend.jobs.kinds.models import model_flags, model_for_run
from backend.jobs.queue import JobContext
from backend.pipeline.branch_defaults import DEFAULTS  # the one set of defaults (page, CLI, this kind)

MODES = ("resample", "edit")


@dataclass(frozen=True)
class BranchParams:
    key: str
    step: int  # the step resampled or replaced, 1..S (docs/architecture.md §3)
    mode: str = "resample"
    samples: int | None = None  # None: DEFAULTS.samples for a resample, 1 for an edit
    temperature: float = DEFAULTS.temperature
    top_p: float = DEFAULTS.top_p
    max_new_tokens: int = DEFAULTS.max_new_tokens
    seed: int = 0
    text: str | None = None  # the replacement step (mode "edit")
    regenerate: bool = False  # mode "edit": regenerate the steps after it

    def settings(self):
        from backend.engine.trajectory import GenerationSettings

        return GenerationSettings(self.max_new_tokens, self.temperature, self.top_p, self.seed)

    def checked(self, store, kind: str) -> BranchParams:
        from backend.pipeline import branches

        if self.mode not in MODES:
            raise InputError(f"job kind '{kind}': mode '{self.mode}' is not one of {', '.join(MODES)}")
        key = P.resolve_key(store, self.key, kind)
        run = store.open(key)
        if self.mode == "edit":
            if self.text is None or not self.text.strip():
                raise InputError(f"job kind '{kind}': text is needed (and not empty) with mode edit")
            if self.samples not in (None, 1):
                raise InputError(f"job kind '{kind}': samples must be 1 with mode edit (an edit is one branch)")
        else:
            if self.text is not None:
                raise InputError(f"job kind '{kind}': text goes with mode edit, not resample")
            if self.regenerate:
                raise InputError(
                    f"job kind '{kind}': regenerate goes with mode edit (resampled branches are generated)"
                )
        samples = (1 if self.mode == "edit" else DEFAULTS.samples) if self.samples is None else self.samples
        try:
            branches.validate(run, self.step, samples, self.settings())
        except InputError as exc:
            raise InputError(f"job kind '{kind}': {str(exc).replace('--', '')}") from None
        return replace(self, key=key, samples=samples)


def branch_title(p: BranchParams) -> str:
    what = f"{p.samples} resample(s)" if p.mode == "resample" else "edit" + (" + regenerate" if p.regenerate else "")
    return f"Branch: {short(p.key)} at step {p.step}, {what}"


def branch_estimate(p: BranchParams, queue, device: str):
    """Load (unless in memory), generation from the boundary (cap × the model's learned fill),
    then the scoring of every branch (``estimates.estimate_branch``)."""
    from backend.errors import RamlError
    from backend.jobs.estimates import estimate_branch

    try:
        run = queue.store.open(p.key, verify=False)
    except RamlError:
        return None
    in_memory, needs_conversion = model_flags(run.model_name)
    return estimate_branch(
        run,
        queue,
        device,
        step=p.step,
        samples=int(p.samples or 1),
        mode=p.mode,
        max_new_tokens=p.max_new_tokens,
        regenerate=p.regenerate,
        in_memory=in_memory,
        needs_conversion=needs_conversion,
        edit_chars=len(p.text or ""),
    )


def _record_branches(ctx: JobContext, keys: list[str]) -> None:
    """The work the branches really did: tokens generated, and their scoring (for the estimates)."""
    from backend.jobs import estimates

    generated = analysed = written = 0.0
    for key in keys:
        run = ctx.store.open(key, verify=False)
        shape = estimates.run_shape(run)
        generated += float(run.branch.get("generated_tokens") or 0)
        analysed += estimates.analysis_work(shape["n"], shape["cuts"], shape["m"], shape["d_model"])
        written += estimates.write_work(shape["n"])
        cap = (run.branch.get("generation") or {}).get("max_new_tokens")
        if run.branch.get("generated_tokens") and cap:
            ctx.record_facts(run.model_fingerprint, {"generate_fill": min(1.0, run.branch["generated_tokens"] / cap)})
    if generated:
        ctx.work("generate", generated)
    ctx.work("analyze", analysed)
    ctx.work("write", written)


def run_branch(p: BranchParams, ctx: JobContext) -> None:
    from backend.pipeline import branches

    run = ctx.store.open(p.key)
    if p.mode == "edit":  # its limits (length, the model's context) before the weights load
        branches.check_edit(run, p.step, str(p.text), p.regenerate)
    loaded = model_for_run(ctx, run)
    if p.mode == "edit":
        outcomes = [
            branches.edit(
                ctx.store,
                p.key,
                p.step,
                str(p.text),
                regenerate=p.regenerate,
                settings=p.settings(),
                loaded=loaded,
                progress=ctx.progress,
            )
        ]
    else:
        outcomes = branches.resample(
            ctx.store, p.key, p.step, p.samples, settings=p.settings(), loaded=loaded, progress=ctx.progress
        )
    for outcome in outcomes:
        ctx.add_result(outcome.key)
    computed = [o.key for o in outcomes if not o.cached]
    if len(computed) == len(outcomes):  # a cache hit among them: its stages did not run, nothing to learn
        _record_branches(ctx, computed)
    else:
        ctx.work("analyze", 0.0)
        ctx.work("generate", 0.0)
    ctx.set_value(outcomes)
    ctx.progress("done", 1, 1)
