"""``batch``: one run per (question, sample) of a question set, resumable (cached runs are
skipped by the content-addressed cache), failures reported per line without stopping the
others. The local engine runs in this process; the Ray engine lives in ``batch_ray``.

Question sets are JSONL, Parquet or a Hugging Face ``save_to_disk`` folder
(``backend.io.tables``), with ``--question-field/--answer-field`` naming the columns.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, replace

from backend.errors import RamlError
from backend.io.jsonl import LineError, QuestionRecord
from backend.io.tables import FieldMap, is_table, read_questions
from backend.io.terminal import printable

log = logging.getLogger(__name__)

DEFAULT_SAMPLING_TEMPERATURE = 0.7


@dataclass
class BatchItem:
    record: QuestionRecord
    sample: int  # 0..K-1; the seed offset


@dataclass
class ItemResult:
    item: BatchItem
    key: str | None
    cached: bool
    error: str | None


def plan(records: list[QuestionRecord], samples: int, limit: int | None) -> list[BatchItem]:
    """Items to run: K samples per question; a record with its own trajectory runs once
    (its K samples would be the same run)."""
    records = records[:limit] if limit else records
    k = max(1, samples)
    return [BatchItem(r, s) for r in records for s in range(1 if r.trajectory is not None else k)]


def item_request(args, make_request, item: BatchItem):
    """The RunRequest of one item; K > 1 samples use temperature sampling with seeds seed+k."""
    rec = item.record
    req = make_request(args, rec.question, rec.answer, rec.trajectory, label=rec.id, seed=args.seed + item.sample)
    if args.samples > 1 and rec.trajectory is None and req.generation.temperature <= 0:
        req.generation = replace(req.generation, temperature=DEFAULT_SAMPLING_TEMPERATURE)
    return req


def describe_failure(exc: BaseException) -> str:
    """One line for a failed item: the user-facing message, or the bug's type and message."""
    if isinstance(exc, RamlError):
        return str(exc)
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"internal error {type(exc).__name__}{': ' + text if text else ''} (a bug; rerun with -v for details)"


def run_request(req, store) -> tuple[str | None, bool, str | None]:
    """Run one request; returns (key, cached, error). Never raises for one bad item."""
    from backend.jobs import run_question

    try:
        outcome = run_question(req, store)
        return outcome.key, outcome.cached, None
    except Exception as exc:  # one bad item must not stop a batch of hundreds
        log.debug("item failed", exc_info=True)
        return None, False, describe_failure(exc)


def run_item(args, make_request, item: BatchItem, store) -> ItemResult:
    try:
        req = item_request(args, make_request, item)
    except Exception as exc:
        return ItemResult(item, None, False, describe_failure(exc))
    return ItemResult(item, *run_request(req, store))


def load_records(args) -> tuple[list[QuestionRecord], list[LineError]]:
    """Records of ``args.file`` (JSONL, Parquet or HF folder) with the field mapping applied."""
    return read_questions(args.file, FieldMap.from_args(args))


def where(args, record: QuestionRecord) -> str:
    """``FILE:LINE`` for JSONL, ``FILE, row N`` for tables."""
    return f"{args.file}, row {record.line}" if is_table(args.file) else f"{args.file}:{record.line}"


def report(args, results: list[ItemResult], errors: list[LineError]) -> int:
    """Print per-line failures and a summary; exit code 1 if anything failed."""
    failed = [r for r in results if r.error]
    lines = [(e.line, -1, str(e)) for e in errors]
    for r in failed:
        sample = f" (sample {r.item.sample})" if args.samples > 1 else ""
        lines.append((r.item.record.line, r.item.sample, f"{where(args, r.item.record)}{sample}: {r.error}"))
    for _, _, message in sorted(lines):
        print(f"error: {printable(message)}", file=sys.stderr)
    done = sum(1 for r in results if r.key and not r.cached)
    hits = sum(1 for r in results if r.cached)
    print(f"{done} computed, {hits} cached, {len(failed) + len(errors)} failed", file=sys.stderr)
    for r in results:
        if r.key:
            print(f"{printable(r.item.record.id)}\t{r.item.sample}\t{r.key}")
    return 1 if failed or errors else 0


def run_items_local(args, make_request, items: list[BatchItem], store) -> list[ItemResult]:
    """Run items one after another in this process (the model loads once, on first need)."""
    from tqdm import tqdm

    results = []
    with tqdm(total=len(items), desc="batch", unit="run", disable=getattr(args, "quiet", False)) as bar:
        for item in items:
            results.append(run_item(args, make_request, item, store))
            bar.update(1)
    return results


def run_batch(args, make_request, store) -> int:
    records, errors = load_records(args)
    if args.limit and len(records) >= args.limit:  # errors past the last kept question are not this run's
        last_line = records[args.limit - 1].line
        errors = [e for e in errors if e.line <= last_line]
    items = plan(records, args.samples, args.limit)
    if args.engine == "ray":
        from backend.scale.ray_engine import run_items_ray

        results = run_items_ray(args, make_request, items, store)
    else:
        results = run_items_local(args, make_request, items, store)
    return report(args, results, errors)
