"""Kind ``lens_train``: train the tuned lens of a model on offline text and store it by the model's
fingerprint (``backend.analysis.lens.train.train_lens``; docs/lens.md)."""

from __future__ import annotations

from dataclasses import dataclass

from backend.errors import InputError
from backend.jobs.queue import JobContext


@dataclass(frozen=True)
class LensTrainParams:
    model: str = "smollm2-135m"
    tokens: int = 1024  # training tokens (backend.analysis.lens.train.DEFAULT_TOKENS)
    epochs: int = 1
    generations: bool = True
    seed: int = 0

    def checked(self, store, kind: str) -> LensTrainParams:
        from backend.analysis.lens.train import check_tokens

        if not self.model.strip():
            raise InputError("model is empty")
        reason = check_tokens(self.tokens)
        if reason:
            raise InputError(reason)
        if not 1 <= self.epochs <= 100:
            raise InputError(f"epochs {self.epochs} must lie in 1..100")
        return self


def lens_train_title(p: LensTrainParams) -> str:
    return f"Tuned lens: {p.model}, {p.tokens} tokens"


def lens_train_estimate(p: LensTrainParams, queue, device: str):
    from backend.jobs.estimates import estimate_lens_train
    from backend.jobs.kinds.models import model_state_for

    state = model_state_for(p.model)
    if state is None:
        return None
    fingerprint, in_memory, needs_conversion = state
    return estimate_lens_train(
        queue,
        fingerprint,
        device,
        tokens=p.tokens,
        epochs=p.epochs,
        generations=p.generations,
        in_memory=in_memory,
        needs_conversion=needs_conversion,
    )


def run_lens_train(p: LensTrainParams, ctx: JobContext) -> None:
    from backend.analysis.lens.train import LensBudget, train_lens
    from backend.engine import provider

    ctx.progress("load", 0, 1)
    loaded = provider.provide(p.model)
    ctx.progress("load", 1, 1)
    budget = LensBudget(tokens=p.tokens, epochs=p.epochs, generations=p.generations, seed=p.seed)
    config = train_lens(ctx.store, loaded, budget, progress=ctx.progress)
    ctx.message(f"tuned lens of {loaded.name} ({loaded.fingerprint}) stored")
    ctx.set_value(config)
    ctx.progress("done", 1, 1)


@dataclass(frozen=True)
class LensGridParams:
    key: str

    def checked(self, store, kind: str) -> LensGridParams:
        from backend.jobs import params as P

        return LensGridParams(key=P.resolve_key(store, self.key, kind))


def lens_grid_title(p: LensGridParams) -> str:
    return f"Tuned-lens grid: {p.key[:12]}"


def lens_grid_estimate(p: LensGridParams, queue, device: str):
    from backend.jobs.kinds.models import derived_estimate

    return derived_estimate("lens_grid", p.key, queue, device)


def run_lens_grid(p: LensGridParams, ctx: JobContext) -> None:
    from backend.analysis.lens.compute_grid import compute_tuned_grid
    from backend.analysis.lens.grid import json_rows
    from backend.jobs.kinds.models import model_for_run

    run = ctx.store.open(p.key)
    loaded = model_for_run(ctx, run)
    frame = compute_tuned_grid(run, loaded, ctx.store, progress=ctx.reporter("lens"))
    ctx.add_result(p.key)
    ctx.set_value({"columns": list(frame.columns), "rows": json_rows(frame)})
    ctx.progress("done", 1, 1)
