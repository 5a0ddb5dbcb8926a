"""Kind ``importance``: step importance of a run (ablation, and the answer probe's attention),
``backend.analysis.importance.run.compute_run_importance``, saved as the run's derived data."""

from __future__ import annotations

from dataclasses import dataclass, replace

from backend.analysis.importance import defaults
from backend.jobs import params as P
from backend.jobs.kinds.common import short
from backend.jobs.kinds.models import model_for_run
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


def ablation_tokens(n_tokens: int, boundary_cuts: list[int]) -> int:
    """Tokens the fast ablation encodes besides its probes: the prefill n plus every step's suffix
    Σ_k (n − e_k) (docs/importance.md): about S·n/2, the quantity its time follows."""
    ends = sorted(set(int(c) for c in boundary_cuts))[1:]
    return int(n_tokens) + sum(int(n_tokens) - e for e in ends)


def record_importance_throughput(ctx: JobContext, run, payload: dict) -> None:
    """This machine's rates for the estimates (issue 23): ``ablation_tps`` (encoded tokens per
    second, ``ablation_tokens``) and ``attention_cut_s`` (seconds per probed cut)."""
    timings = payload.get("timings") or {}
    if timings.get("ablate_s"):
        tokens = ablation_tokens(run.n_tokens, payload["boundary_cuts"])
        ctx.record_throughput(run.model_fingerprint, "ablation_tps", tokens / timings["ablate_s"])
    if timings.get("attention_s") and payload.get("attention"):
        cuts = len(payload["attention"]["cuts"])
        ctx.record_throughput(run.model_fingerprint, "attention_cut_s", timings["attention_s"] / max(1, cuts))
