"""The one JSONL reader, for the app's upload and the CLI alike (docs/datasets.md).

Streams the file line by line (memory bounded by ``MAX_LINE_BYTES``), so a path on disk may be
of any size. Whole-file problems are one error naming the file: UTF-16 (save as UTF-8), a
Parquet or Arrow file under a JSONL name, binary content (NUL bytes), no questions. A bad line
is one error naming the file, the line and the field; the other lines still load. UTF-8 BOM
and CRLF line ends are accepted; numbers keep their digits (``0.10`` stays ``"0.10"``).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import BinaryIO

from backend.io.records import MAX_FILE_BYTES, MAX_LINE_BYTES, LineError, QuestionRecord, parse_line

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_LINE_BYTES",
    "LineError",
    "QuestionRecord",
    "iter_jsonl_rows",
    "parse_line",
]

HEAD_BYTES = 4096  # what the whole-file checks look at


def file_problem(head: bytes) -> str | None:
    """Why content starting with ``head`` (BOM already removed) is not JSONL text, or None."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "file is UTF-16; save it as UTF-8"
    if head.startswith(b"PAR1"):
        return "is a Parquet file: give it a .parquet name"
    if head.startswith((b"ARROW1", b"\xff\xff\xff\xff")):
        return "is an Arrow file: give it a .arrow name"
    if b"\x00" in head:
        nul_odd, nul_even = head[1::2].count(0), head[0::2].count(0)
        if max(nul_odd, nul_even) > len(head) // 4 and min(nul_odd, nul_even) == 0:
            return "file is UTF-16; save it as UTF-8"
        return "is binary (it has NUL bytes), not JSONL text"
    return None


def decode_line(raw: bytes, line_no: int, source: str):
    """One JSONL line (no line break) -> its decoded JSON value, or a ``LineError`` saying why not."""
    if b"\x00" in raw:
        return LineError(source, line_no, None, f"contains a NUL byte (byte {raw.index(0) + 1})")
    try:
        return json.loads(raw.decode("utf-8"), parse_float=Decimal)
    except UnicodeDecodeError as exc:
        return LineError(source, line_no, None, f"not valid UTF-8 (byte {exc.start})")
    except json.JSONDecodeError as exc:
        return LineError(source, line_no, None, f"invalid JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:  # "[[[[..." 100k deep: json.loads raises this, not JSONDecodeError
        return LineError(source, line_no, None, "invalid JSON: nested too deeply")


def iter_jsonl_rows(stream: BinaryIO, source: str) -> Iterator[tuple[int, object]]:
    """(line number, decoded JSON value or LineError) per non-empty line. A whole-file problem
    is yielded once as line 0 and ends the file."""
    head = stream.read(HEAD_BYTES)
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    problem = file_problem(head)
    if problem:
        yield 0, LineError(source, 0, None, problem)
        return
    stream = io.BufferedReader(_Chain(head, stream)) if head else stream  # type: ignore[arg-type]
    line_no = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        line_no += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the over-long line
                raw = stream.readline(MAX_LINE_BYTES)
            yield line_no, LineError(source, line_no, None, f"line is longer than {MAX_LINE_BYTES >> 20} MiB")
            continue
        raw = raw.rstrip(b"\n").rstrip(b"\r")
        if len(raw) > MAX_LINE_BYTES:
            yield line_no, LineError(source, line_no, None, f"line is longer than {MAX_LINE_BYTES >> 20} MiB")
        elif raw.strip():
            yield line_no, decode_line(raw, line_no, source)


class _Chain(io.RawIOBase):
    """The already-read head followed by the rest of the stream."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head, self._rest = memoryview(head), rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
