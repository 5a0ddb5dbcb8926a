"""Read question files (JSONL, docs/architecture.md §2) line by line: good lines become records, bad
lines become errors that name the file, the line and the field. One bad line never stops
the others.

Line format: ``{"id"?: str|int, "question": str, "answer"?: str|number, "trajectory"?: str}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

MAX_LINE_BYTES = 1 << 20  # 1 MiB
MAX_FILE_BYTES = 64 << 20


@dataclass
class QuestionRecord:
    line: int
    id: str
    question: str
    answer: str | None = None
    trajectory: str | None = None


@dataclass
class LineError:
    source: str
    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {f'field {self.field!r}: ' if self.field else ''}{self.message}"


def _bad_text(value) -> str | None:
    """Why a decoded string cannot be stored (lone surrogates from ``\\ud800`` escapes), or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"contains an invalid unicode escape (lone surrogate at character {exc.start})"
    return None


def parse_line(obj, line_no: int, source: str) -> QuestionRecord | LineError:
    """Validate one decoded JSON value."""
    if not isinstance(obj, dict):
        return LineError(source, line_no, None, f"expected a JSON object, got {type(obj).__name__}")
    for name in ("id", "question", "answer", "trajectory"):
        problem = _bad_text(obj.get(name))
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
    if isinstance(answer, bool) or not (answer is None or isinstance(answer, (str, int, float))):
        return LineError(source, line_no, "answer", f"must be a string or number, got {type(answer).__name__}")
    if isinstance(answer, str) and not answer.strip():
        return LineError(source, line_no, "answer", "is empty (leave it out to use the model's own answer)")
    if isinstance(answer, float) and not math.isfinite(answer):
        return LineError(source, line_no, "answer", f"must be a finite number, got {answer}")
    trajectory = obj.get("trajectory")
    if trajectory is not None and not isinstance(trajectory, str):
        return LineError(source, line_no, "trajectory", f"must be a string, got {type(trajectory).__name__}")
    rid = obj.get("id", f"line{line_no}")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        return LineError(source, line_no, "id", f"must be a string or integer, got {type(rid).__name__}")
    return QuestionRecord(line_no, str(rid), q, None if answer is None else str(answer), trajectory)


def decode_line(raw: bytes, line_no: int, source: str):
    """One JSONL line (no line break) -> its decoded JSON value, or a ``LineError`` saying why
    not: too long, not UTF-8, invalid JSON, or nested too deeply to decode."""
    if len(raw) > MAX_LINE_BYTES:
        return LineError(source, line_no, None, f"line is longer than {MAX_LINE_BYTES >> 20} MiB")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return LineError(source, line_no, None, f"not valid UTF-8 (byte {exc.start})")
    except json.JSONDecodeError as exc:
        return LineError(source, line_no, None, f"invalid JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:
        return LineError(source, line_no, None, "invalid JSON: nested too deeply")


def parse_jsonl_bytes(data: bytes, source: str) -> tuple[list[QuestionRecord], list[LineError]]:
    """Parse JSONL content (UTF-8, BOM and CRLF accepted)."""
    records: list[QuestionRecord] = []
    errors: list[LineError] = []
    if len(data) > MAX_FILE_BYTES:
        return [], [LineError(source, 0, None, f"file is larger than {MAX_FILE_BYTES >> 20} MiB")]
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return [], [LineError(source, 0, None, "file is UTF-16; save it as UTF-8")]
    lines = data.split(b"\n")
    for line_no, raw in enumerate(lines, start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        obj = decode_line(raw, line_no, source)
        if isinstance(obj, LineError):
            errors.append(obj)
            continue
        parsed = parse_line(obj, line_no, source)
        (errors if isinstance(parsed, LineError) else records).append(parsed)
    if not records and not errors:
        errors.append(LineError(source, 0, None, "file has no questions"))
    return records, errors


def read_jsonl(path: str | Path) -> tuple[list[QuestionRecord], list[LineError]]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [], [LineError(str(path), 0, None, f"cannot read file: {exc.strerror}")]
    return parse_jsonl_bytes(data, str(path))
