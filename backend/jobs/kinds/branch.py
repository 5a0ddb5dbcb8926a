"""Kind ``branch``: branch a run at a step, ``backend.pipeline.branches.resample`` (K sampled
continuations) or ``edit`` (the step replaced by ``text``; the rest kept or regenerated).
Every branch is a run of its own; the job's results are the branches' keys."""

from __future__ import annotations

from dataclasses import dataclass, replace

from backend.errors import InputError
from backend.jobs import params as P
from backend.jobs.kinds.common import short
from backend.jobs.kinds.models import model_for_run
from backend.jobs.queue import JobContext

MODES = ("resample", "edit")


@dataclass(frozen=True)
class BranchParams:
    key: str
    step: int  # 0-based index of the step resampled or replaced
    mode: str = "resample"
    samples: int = 1
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 64
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
            if self.samples != 1:
                raise InputError(f"job kind '{kind}': samples must be 1 with mode edit (an edit is one branch)")
        else:
            if self.text is not None:
                raise InputError(f"job kind '{kind}': text goes with mode edit, not resample")
            if self.regenerate:
                raise InputError(
                    f"job kind '{kind}': regenerate goes with mode edit (resampled branches are generated)"
                )
        try:
            branches.validate(run, self.step, self.samples, self.settings())
        except InputError as exc:
            raise InputError(f"job kind '{kind}': {str(exc).replace('--', '')}") from None
        return replace(self, key=key)


def branch_title(p: BranchParams) -> str:
    what = f"{p.samples} resample(s)" if p.mode == "resample" else "edit" + (" + regenerate" if p.regenerate else "")
    return f"Branch: {short(p.key)} at step {p.step}, {what}"


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
    ctx.set_value(outcomes)
    ctx.progress("done", 1, 1)
