"""What the eval-log readers share (docs/datasets.md, "Eval-pipeline logs"): a response with a
separate reasoning part becomes one trace in the ``<think>…</think>`` shape that the run pipeline
splits (``backend.engine.trajectory.split_thinking``), and a mapped sample becomes a record whose
errors name the file, the line or record, and the file's own field.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from backend.io.fields import last_boxed
from backend.io.records import LineError, QuestionRecord, parse_line

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
QUESTION_KEYS = ("question", "problem", "input", "query", "prompt", "Question", "Problem")


def join_reasoning(reasoning: str | None, text: str | None) -> str | None:
    """``<think>reasoning</think>text`` when there is a separate reasoning part, else the text
    as it is (it may carry its own ``<think>`` tags: lm-eval without ``think_end_token``)."""
    reasoning = reasoning if isinstance(reasoning, str) and reasoning.strip() else None
    text = text if isinstance(text, str) else ""
    if reasoning is None:
        return text if text.strip() else None
    if THINK_CLOSE in reasoning:  # a server that left the tags inside the reasoning field
        return reasoning + text
    return f"{THINK_OPEN}{reasoning}{THINK_CLOSE}{text}"


def reference_answer(value) -> str | int | float | None:
    """A target as a reference answer: the first of a list; the last ``\\boxed{}`` of a worked
    solution; GSM8K's ``#### N``; else the value itself (None when empty)."""
    if isinstance(value, list):
        value = next((v for v in value if v not in (None, "")), None)
    if isinstance(value, str):
        if "####" in value:
            value = value.rsplit("####", 1)[1].strip() or value
        if "\\boxed{" in value:
            value = last_boxed(value) or value
        return value.strip() or None
    return value


def plain_json(value):
    """``value`` with JSON's exact decimals (``backend.io.jsonl`` keeps ``0.10`` as a Decimal) as
    floats, so it can go into a run's meta."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    return value


def make_record(
    mapped: dict, *, source: str, line: int, where: str, fields: dict[str, str], origin: dict, error=LineError
) -> QuestionRecord | LineError:
    """A record from ``{"id", "question", "answer"?, "trajectory"?}``, or an error naming the
    file's own field (``fields``: record field -> the file's name for it)."""
    parsed = parse_line({k: v for k, v in mapped.items() if v is not None}, line, source)
    if isinstance(parsed, LineError):
        return error(source, line, fields.get(parsed.field or "", parsed.field), parsed.message)
    parsed.where = where
    parsed.source = origin
    return parsed


@dataclass
class SampleError(LineError):
    """A bad record of a file that is not line-based (a sample of an Inspect ``.eval`` archive or
    ``.json`` log, a rollout of a Thought Anchors ``solutions.json``): printed as
    ``FILE, RECORD: field 'F': ...`` (RECORD e.g. ``sample 3 epoch 2``); ``line`` is its position."""

    record: str = ""

    def __str__(self) -> str:
        where = f"{self.source}, {self.record}" if self.record else self.source
        return f"{where}: {f'field {self.field!r}: ' if self.field else ''}{self.message}"
