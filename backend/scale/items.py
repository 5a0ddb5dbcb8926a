"""What both batch engines share (docs/architecture.md §2): the items of a batch (K samples per
question; an imported trace runs once), the request of one item built from the batch's
template request, and running one request without letting a bad item stop the others."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from backend.errors import RamlError
from backend.io.records import QuestionRecord
from backend.pipeline.run import RunRequest

log = logging.getLogger(__name__)


@dataclass
class BatchItem:
    record: QuestionRecord
    sample: int  # 0..K-1; the seed offset
    order: int = 0  # position of the record in the file (reports follow file order)


@dataclass
class ItemResult:
    item: BatchItem
    key: str | None
    cached: bool
    error: str | None


def plan(records: list[QuestionRecord], samples: int, limit: int | None = None) -> list[BatchItem]:
    """Items to run: K samples per question; a record with its own trajectory runs once
    (its K samples would be the same run)."""
    records = records[:limit] if limit else records
    k = max(1, samples)
    return [
        BatchItem(r, s, order) for order, r in enumerate(records) for s in range(1 if r.trajectory is not None else k)
    ]


def item_request(template: RunRequest, item: BatchItem, samples: int, sampling_temperature: float) -> RunRequest:
    """The RunRequest of one item: the template with the record's question, answer, trace and
    label; seed + sample; K > 1 generated samples use temperature sampling."""
    rec = item.record
    generation = replace(template.generation, seed=template.generation.seed + item.sample)
    if samples > 1 and rec.trajectory is None and generation.temperature <= 0:
        generation = replace(generation, temperature=sampling_temperature)
    return replace(
        template,
        question=rec.question,
        answer=rec.answer,
        trajectory=rec.trajectory,
        label=rec.id,
        generation=generation,
        segmentation=rec.segmentation or template.segmentation,  # a file's own steps (Thought Anchors' chunks)
        origin=rec.source,
    )


def describe_failure(exc: BaseException) -> str:
    """One line for a failed item: the user-facing message, or the bug's type and message."""
    if isinstance(exc, RamlError):
        return str(exc)
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"internal error {type(exc).__name__}{': ' + text if text else ''} (a bug; rerun with -v for details)"


def run_request(req: RunRequest, store) -> tuple[str | None, bool, str | None]:
    """Run one request; returns (key, cached, error). Never raises for one bad item."""
    from backend.engine import provider
    from backend.pipeline.run import run_question

    try:
        outcome = run_question(req, store, loaded=provider.registered(req.model))
        return outcome.key, outcome.cached, None
    except Exception as exc:  # one bad item must not stop a batch of hundreds
        log.debug("item failed", exc_info=True)
        return None, False, describe_failure(exc)
