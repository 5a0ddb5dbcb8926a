"""The typed batch API (docs/architecture.md §2, docs/datasets.md): one run per (record,
sample) of a question or trace file, resumable (cached runs are skipped by the
content-addressed store), failures reported per line or row without stopping the others.

    report = run_batch(BatchSpec("openr1.parquet", FieldMap.build("openr1"), limit=20),
                       RunRequest(question="", model="smollm2-135m"), RunStore("cache"))

``template_request`` holds every run setting (model, generation, template, segmentation, cuts,
proxy layers); each item copies it with its record's question, answer, trace and label. The
engines live in ``local_engine`` and ``ray_engine``; neither imports the other or this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from backend.errors import InputError
from backend.io.fields import FieldMap
from backend.io.readers import iter_questions
from backend.io.records import LineError, QuestionRecord
from backend.pipeline.run import RunRequest
from backend.scale.items import BatchItem, ItemResult, describe_failure, item_request, plan

ENGINES = ("local", "ray")
DEFAULT_SAMPLING_TEMPERATURE = 0.7


@dataclass(frozen=True)
class BatchSpec:
    """What to run: which file, how its columns map, how many samples, which engine."""

    source: str | Path
    fields: FieldMap = field(default_factory=FieldMap)
    samples: int = 1  # K sampled trajectories per question without a trace
    limit: int | None = None  # the first N records (each element of a list-valued trace counts)
    engine: str = "local"  # "local" | "ray"
    address: str | None = None  # Ray cluster address; None starts a local instance
    sampling_temperature: float = DEFAULT_SAMPLING_TEMPERATURE  # for K > 1 when the template is greedy
    show_progress: bool = True

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise InputError(f"unknown batch engine {self.engine!r} (--engine): use {' or '.join(ENGINES)}")
        if self.samples < 1:
            raise InputError(f"samples must be at least 1, got {self.samples} (--samples)")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"limit must be at least 1, got {self.limit} (--limit)")
        if not self.sampling_temperature > 0:
            raise InputError(f"sampling temperature must be above 0, got {self.sampling_temperature}")


@dataclass
class BatchReport:
    """Every item's outcome and every unreadable line, in file order."""

    spec: BatchSpec
    results: list[ItemResult]
    read_errors: list[tuple[int, LineError]]  # (position in the file's stream, error)

    @property
    def computed(self) -> int:
        return sum(1 for r in self.results if r.key and not r.cached)

    @property
    def cached(self) -> int:
        return sum(1 for r in self.results if r.cached)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if r.error) + len(self.read_errors)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def error_lines(self) -> list[str]:
        """One line per unreadable line/row and per failed run, in file order."""
        lines = [(pos, -1, str(e)) for pos, e in self.read_errors]
        for r in self.results:
            if r.error:
                sample = f" (sample {r.item.sample})" if self.spec.samples > 1 else ""
                lines.append((r.item.order, r.item.sample, f"{r.item.record.where}{sample}: {r.error}"))
        return [text for _, _, text in sorted(lines, key=lambda t: (t[0], t[1]))]

    def summary(self) -> str:
        return f"{self.computed} computed, {self.cached} cached, {self.failed} failed"

    def key_lines(self) -> list[str]:
        """``id<TAB>sample<TAB>key`` per stored run."""
        return [f"{r.item.record.id}\t{r.item.sample}\t{r.key}" for r in self.results if r.key]


def read_records(spec: BatchSpec) -> tuple[list[QuestionRecord], list[int], list[tuple[int, LineError]]]:
    """The first ``spec.limit`` records with their positions in the file, and the read errors
    among them (errors after the last kept record belong to rows that were not run and are
    left out). Positions count records and errors together, so a report keeps the file's order."""
    records: list[QuestionRecord] = []
    positions: list[int] = []
    errors: list[tuple[int, LineError]] = []
    for position, item in enumerate(iter_questions(spec.source, spec.fields)):
        if spec.limit is not None and len(records) >= spec.limit:
            break
        if isinstance(item, QuestionRecord):
            records.append(item)
            positions.append(position)
        else:
            errors.append((position, item))
    if not records and not errors:
        errors.append((0, LineError(str(spec.source), 0, None, "file has no questions")))
    return records, positions, errors


def run_batch(
    spec: BatchSpec, template_request: RunRequest, store, *, progress: Callable[[int, int], None] | None = None
) -> BatchReport:
    """Run every (record, sample) of ``spec.source`` with the settings of ``template_request``.
    ``progress(done, total)`` is called before each item and at the end (a job's cancel point).

    Records that are rollouts of another record (``record.branch``: Thought Anchors) run in a
    second wave, as branches of that record's run (``parent``, ``branch_at`` in their meta)."""
    spec.validate()
    records, positions, read_errors = read_records(spec)
    items = plan(records, spec.samples)
    for item in items:
        item.order = positions[item.order]
    bases = [i for i in items if i.record.branch is None]
    rollouts = [i for i in items if i.record.branch is not None]
    total = len(items)

    def wave_progress(offset: int):
        return (lambda done, _total: progress(offset + done, total)) if progress else None

    results = _run_wave(spec, template_request, store, bases, {}, wave_progress(0))
    if rollouts:
        parents = parent_keys(results, store)
        results += _run_wave(spec, template_request, store, rollouts, parents, wave_progress(len(bases)))
    results.sort(key=lambda r: (r.item.order, r.item.sample))
    return BatchReport(spec, results, read_errors)


def parent_keys(results: list[ItemResult], store) -> dict[str, str | Exception]:
    """Record id -> its run's key, or why its rollouts cannot be its branches (it failed, or its
    steps are not the chunks its file lists)."""
    from backend.io.thought_anchors import normalized_chunks_sha

    keys: dict[str, str | Exception] = {}
    for r in results:
        rid = r.item.record.id
        if not r.key:
            keys[rid] = InputError(f"its base run ({r.item.record.where}) failed")
            continue
        origin = r.item.record.source or {}
        if "chunks_sha" in origin:
            texts = list(store.open(r.key, verify=False).steps["text"])
            if normalized_chunks_sha(texts) != origin["chunks_sha"]:
                keys[rid] = InputError(
                    f"the steps of its base run {r.key} ({len(texts)}) are not the {origin['n_chunks']} chunks of "
                    "chunks.json (their split of another text, or two chunks inside one token), so step k is not chunk k"
                )
                continue
        keys[rid] = r.key
    return keys


def _run_wave(spec, template_request, store, items, parents, progress) -> list[ItemResult]:
    requests: list[RunRequest] = []
    runnable: list[BatchItem] = []
    results: list[ItemResult] = []
    for item in items:
        try:
            request = item_request(template_request, item, spec.samples, spec.sampling_temperature)
            branch = item.record.branch
            if branch is not None:
                parent = parents.get(branch["of"], InputError(f"its base record {branch['of']!r} was not read"))
                if isinstance(parent, Exception):
                    raise InputError(f"rollout not imported: {parent}")
                fields = {k: v for k, v in branch.items() if k != "of"}
                request = replace(request, branch={"parent": parent, **fields, "branch_at": int(branch["branch_at"])})
            requests.append(request)
            runnable.append(item)
        except Exception as exc:
            results.append(ItemResult(item, None, False, describe_failure(exc)))
    if spec.engine == "ray":
        from backend.scale.ray_engine import run_items_ray

        if progress:
            progress(0, len(runnable))
        results += run_items_ray(runnable, requests, store, address=spec.address, show_progress=spec.show_progress)
        if progress:
            progress(len(runnable), len(runnable))
    else:
        from backend.scale.local_engine import run_items_local

        results += run_items_local(runnable, requests, store, show_progress=spec.show_progress, progress=progress)
    return results
