"""The record every reader produces (one run's question, answer and trace) and the per-line /
per-row errors that name the file, the line or row, and the field (docs/architecture.md §2).

``parse_line`` validates one decoded object in the JSONL line shape
``{"id"?: str|int, "question": str, "answer"?: str|number, "trajectory"?: str}``; every reader
maps its own columns to that shape first (``backend.io.fields``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

MAX_LINE_BYTES = 1 << 20  # 1 MiB: one JSONL line
MAX_CELL_BYTES = 32 << 20  # 32 MiB: one text cell of a table (a long trace)
MAX_FILE_BYTES = 64 << 20  # 64 MiB: an upload held in memory by the app (paths on disk are streamed)


@dataclass
class QuestionRecord:
    line: int  # JSONL line or table row, 1-based
    id: str
    question: str
    answer: str | None = None
    trajectory: str | None = None
    trace_index: int | None = None  # element of a list-valued trace column (id ends in "#k")
    where: str = ""  # "FILE:LINE", "FILE, row N" or a problem folder: where a failed run is reported
    # what the source file says about this record beyond the trace (an eval log's sample id, epoch and
    # scores; lm-eval's doc_id and metrics): kept in the run's meta as ``source`` (not in the key)
    source: dict | None = None
    # a rollout of another record of the same file (Thought Anchors): {"of": that record's id,
    # "branch_at": step, "kind": "resample", ...}; the batch runs it as a branch of that record's run
    branch: dict | None = None
    segmentation: str | None = None  # the file's own step split (Thought Anchors' chunks), over the batch's


@dataclass
class LineError:
    source: str
    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {f'field {self.field!r}: ' if self.field else ''}{self.message}"


class RowError(LineError):
    """A bad row of a table (Parquet, Arrow, CSV): printed as ``FILE, row N: ...``."""

    def __str__(self) -> str:
        where = f"{self.source}, row {self.line}" if self.line else self.source
        return f"{where}: {f'field {self.field!r}: ' if self.field else ''}{self.message}"


def bad_text(value) -> str | None:
    """Why a decoded string cannot be stored (lone surrogates, NUL characters), or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return f"contains a NUL character (at character {value.index(chr(0))})"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"contains an invalid unicode escape (lone surrogate at character {exc.start})"
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def parse_line(obj, line_no: int, source: str) -> QuestionRecord | LineError:
    """Validate one decoded object in the JSONL line shape."""
    if not isinstance(obj, dict):
        return LineError(source, line_no, None, f"expected a JSON object, got {type(obj).__name__}")
    for name in ("id", "question", "answer", "trajectory"):
        problem = bad_text(obj.get(name))
        if problem:
            return LineError(source, line_no, name, problem)
    q = obj.get("question")
    if q is None:
        return LineError(source, line_no, "question", "missing")
    if not isinstance(q, str):
        return LineError(source, line_no, "question", f"must be a string, got {type(q).__name__}")
    if not q.strip():
        return LineError(source, line_no, "question", "is empty")
    answer = obj.get("answer")
    if not (answer is None or isinstance(answer, str) or _is_number(answer)):
        return LineError(source, line_no, "answer", f"must be a string or number, got {type(answer).__name__}")
    if isinstance(answer, str) and not answer.strip():
        return LineError(source, line_no, "answer", "is empty (leave it out to use the model's own answer)")
    if isinstance(answer, (float, Decimal)) and not math.isfinite(answer):
        return LineError(source, line_no, "answer", f"must be a finite number, got {answer}")
    trajectory = obj.get("trajectory")
    if trajectory is not None and not isinstance(trajectory, str):
        return LineError(source, line_no, "trajectory", f"must be a string, got {type(trajectory).__name__}")
    rid = obj.get("id", f"line{line_no}")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        return LineError(source, line_no, "id", f"must be a string or integer, got {type(rid).__name__}")
    return QuestionRecord(line_no, str(rid), q, None if answer is None else str(answer), trajectory)
