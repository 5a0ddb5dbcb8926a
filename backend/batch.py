"""``batch``: one run per (question, sample) of a question file, resumable (cached runs are
skipped by the content-addressed cache), failures reported per line without stopping the
others. The local engine runs in this process; the Ray engine lives in ``batch_ray``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from .errors import RamlError
from .questions_io import LineError, QuestionRecord, read_jsonl

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
    records = records[:limit] if limit else records
    return [BatchItem(r, s) for r in records for s in range(max(1, samples))]


def item_request(args, make_request, item: BatchItem):
    """The RunRequest of one item; K > 1 samples use temperature sampling with seeds seed+k."""
    rec = item.record
    req = make_request(args, rec.question, rec.answer, rec.trajectory, label=rec.id, seed=args.seed + item.sample)
    if args.samples > 1 and rec.trajectory is None and req.generation.temperature <= 0:
        from dataclasses import replace

        req.generation = replace(req.generation, temperature=DEFAULT_SAMPLING_TEMPERATURE)
    return req


def run_item(args, make_request, item: BatchItem, store) -> ItemResult:
    from .jobs import run_question

    try:
        outcome = run_question(item_request(args, make_request, item), store)
        return ItemResult(item, outcome.key, outcome.cached, None)
    except RamlError as exc:
        return ItemResult(item, None, False, str(exc))


def load_records(args) -> tuple[list[QuestionRecord], list[LineError]]:
    return read_jsonl(args.file)


def report(args, results: list[ItemResult], errors: list[LineError]) -> int:
    """Print per-line failures and a summary; exit code 1 if anything failed."""
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"error: {args.file}:{r.item.record.line}: {r.error}", file=sys.stderr)
    done = sum(1 for r in results if r.key and not r.cached)
    hits = sum(1 for r in results if r.cached)
    print(f"{done} computed, {hits} cached, {len(failed) + len(errors)} failed", file=sys.stderr)
    for r in results:
        if r.key:
            print(f"{r.item.record.id}\t{r.item.sample}\t{r.key}")
    return 1 if failed or errors else 0


def run_batch(args, make_request, store) -> int:
    records, errors = load_records(args)
    items = plan(records, args.samples, args.limit)
    if args.engine == "ray":
        from .batch_ray import run_items_ray

        results = run_items_ray(args, make_request, items, store)
    else:
        from tqdm import tqdm

        results = [run_item(args, make_request, it, store)
                   for it in tqdm(items, desc="batch", unit="run", disable=args.quiet)]
    return report(args, results, errors)
