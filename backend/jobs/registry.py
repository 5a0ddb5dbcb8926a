"""The built-in job kinds, listed explicitly (no registration by import side effect).

A ``Kind`` is a name, its typed params (a frozen dataclass, parsed from JSON by
``backend.jobs.params.parse`` or by the class's own ``from_json``; range checks that need the
cache in its ``checked(store, kind)``), ``run(params, ctx)``, and optional ``title(params)`` and
``estimate(params, queue, device) -> Estimate`` (``backend.jobs.estimates``: stage by stage, or
plain seconds). ``KindRegistry`` is what a ``JobQueue`` is given: it refuses bad params at
submit, estimates the job (again when it starts, in the worker: the model may be in memory by
then), runs its kind, and folds the finished job's stage times into the machine's rates.

To add a kind: a params dataclass and a ``run`` function in a module of ``backend.jobs.kinds``,
then one ``Kind(...)`` line in ``BUILTIN_KINDS`` below (docs/jobs.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from backend.errors import InputError
from backend.jobs import estimates
from backend.jobs import params as P
from backend.jobs.kinds import branch, exact, export, grids, importance, lens
from backend.jobs.kinds import run as run_kinds
from backend.jobs.queue import JobContext, JobQueue, Prepared


@dataclass(frozen=True)
class Kind:
    name: str
    params: type
    run: Callable[[Any, JobContext], None]
    title: Callable[[Any], str] | None = None
    estimate: Callable[[Any, JobQueue, str], estimates.Estimate | float | None] | None = None
    uses_model: bool = True  # False: runs under the "cpu" device lock, and submit never imports torch


class KindRegistry:
    """Kinds by name; implements the queue's ``Registry`` protocol."""

    def __init__(self, kinds: Iterable[Kind]):
        self._kinds: dict[str, Kind] = {}
        for kind in kinds:
            if kind.name in self._kinds:
                raise ValueError(f"job kind '{kind.name}' listed twice")
            self._kinds[kind.name] = kind

    def names(self) -> list[str]:
        return list(self._kinds)

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def get(self, name: str) -> Kind:
        kind = self._kinds.get(name)
        if kind is None:
            raise InputError(f"unknown job kind '{name}' (known: {', '.join(self._kinds) or 'none'})")
        return kind

    def parse(self, name: str, data: Any) -> Any:
        """``data`` (JSON) as the kind's typed params; one-line ``InputError`` naming the field."""
        kind = self.get(name)
        from_json = getattr(kind.params, "from_json", None)
        return from_json(data, name) if from_json else P.parse(kind.params, data, name)

    def check(self, name: str, data: Any, store) -> Any:
        """Parsed and range-checked against ``store`` (run keys resolved): what submit stores."""
        params = self.parse(name, data)
        checked = getattr(params, "checked", None)
        if checked is None:
            return params
        try:
            return checked(store, name)
        except InputError as exc:  # a backend check's own line, prefixed with the kind
            text = str(exc)
            if text.startswith("job kind "):
                raise
            raise InputError(f"job kind '{name}': {text}") from None

    def prepare(self, name: str, data: dict, queue: JobQueue) -> Prepared:
        kind = self.get(name)
        params = self.check(name, data, queue.store)
        to_json = getattr(params, "to_json", None)
        blob = to_json() if to_json else P.to_json(params)
        title = kind.title(params) if kind.title else name
        device = None if kind.uses_model else "cpu"
        estimate_s, plan = self._estimate(kind, params, queue, device)
        return Prepared(blob, title, estimate_s, device, plan)

    def _estimate(self, kind: Kind, params: Any, queue: JobQueue, device: str | None):
        """(seconds, plan) of a job, or (None, None) when its kind cannot tell."""
        if kind.estimate is None:
            return None, None
        if device is None:
            from backend.jobs.queue import default_device

            device = default_device()
        est = kind.estimate(params, queue, device)
        if isinstance(est, estimates.Estimate):
            return est.seconds, est.to_json()
        return est, None

    def execute(self, name: str, data: dict, ctx: JobContext) -> None:
        """Run the kind; re-plan first (this worker's model state), learn from it when it finished."""
        kind = self.get(name)
        params = self.parse(name, data)
        try:
            _, plan = self._estimate(kind, params, ctx.queue, ctx.device)
        except Exception:  # an estimate never stops a job; the one from submit stays
            plan = None
        if plan is not None:
            ctx.set_plan(plan)
        kind.run(params, ctx)
        ctx.close_stage()
        try:
            estimates.learn(ctx.queue, ctx.plan, ctx.stage_seconds, ctx.actual_work)
        except Exception as exc:  # a locked index: the next job teaches the same
            ctx.message(f"the estimates did not learn from this job: {exc}"[:200])


BUILTIN_KINDS: tuple[Kind, ...] = (
    Kind("run", run_kinds.RunParams, run_kinds.run_run, run_kinds.run_title, run_kinds.run_estimate),
    Kind("batch", run_kinds.BatchParams, run_kinds.run_batch, run_kinds.batch_title, run_kinds.batch_estimate),
    Kind(
        "importance",
        importance.ImportanceParams,
        importance.run_importance,
        importance.importance_title,
        importance.importance_estimate,
    ),
    Kind("branch", branch.BranchParams, branch.run_branch, branch.branch_title, branch.branch_estimate),
    Kind("surface", grids.SurfaceParams, grids.run_surface, grids.surface_title, grids.surface_estimate),
    Kind("landscape", grids.LandscapeParams, grids.run_landscape, grids.landscape_title, grids.landscape_estimate),
    Kind("exact", exact.ExactParams, exact.run_exact, exact.exact_title, exact.exact_estimate),
    Kind(
        "exact_landscape",
        exact.ExactLandscapeParams,
        exact.run_exact_landscape,
        exact.exact_landscape_title,
        exact.exact_landscape_estimate,
    ),
    Kind("lens_train", lens.LensTrainParams, lens.run_lens_train, lens.lens_train_title, lens.lens_train_estimate),
    Kind("lens_grid", lens.LensGridParams, lens.run_lens_grid, lens.lens_grid_title, lens.lens_grid_estimate),
    Kind(
        "export_images",
        export.ExportImagesParams,
        export.run_export_images,
        export.export_title,
        export.export_estimate,
        uses_model=False,
    ),
)

BUILTIN = KindRegistry(BUILTIN_KINDS)
