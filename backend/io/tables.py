"""Read question sets in the formats benchmarks ship in: JSONL, Parquet, and a local Hugging
Face ``datasets`` directory written by ``save_to_disk`` (read with pyarrow directly; the
``datasets`` package is not needed).

Every row goes through ``backend.io.jsonl.parse_line`` after the field mapping
(``--question-field problem --answer-field answer``), so an error names the file, the row
(1-based; the line for JSONL) and the field as it is called in that file. One bad row never
stops the others.

GSM8K stores the worked solution in ``answer`` and the number after ``####``; the number is
taken as the reference answer ("... so 72 in total.\\n#### 72" -> "72").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from backend.io.jsonl import MAX_FILE_BYTES, MAX_LINE_BYTES, LineError, QuestionRecord, parse_line

GSM8K_MARKER = "####"
ID_FIELDS = ("id", "unique_id", "ID", "idx")  # tried in order when no id field is named
TABLE_SUFFIXES = (".parquet", ".pq")


class RowError(LineError):
    """A bad row of a table (Parquet, Arrow): printed as ``FILE, row N: ...``."""

    def __str__(self) -> str:
        where = f"{self.source}, row {self.line}" if self.line else self.source
        return f"{where}: {f'field {self.field!r}: ' if self.field else ''}{self.message}"


def is_table(path: str | Path) -> bool:
    """True for the formats whose records are numbered by row rather than by line."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() in (*TABLE_SUFFIXES, ".arrow")


@dataclass(frozen=True)
class FieldMap:
    """Which column of the file holds each part of a question record."""

    question: str = "question"
    answer: str = "answer"
    trajectory: str = "trajectory"
    id: str | None = None  # None: the first of ID_FIELDS present, else "line<N>"

    @classmethod
    def from_args(cls, args) -> FieldMap:
        return cls(
            question=getattr(args, "question_field", None) or "question",
            answer=getattr(args, "answer_field", None) or "answer",
        )

    def columns(self) -> dict[str, str]:
        """record field -> the file's column, to name the file's own field in errors."""
        return {"question": self.question, "answer": self.answer, "trajectory": self.trajectory}


def read_questions(path: str | Path, fields: FieldMap = FieldMap()) -> tuple[list[QuestionRecord], list[LineError]]:
    """Records and per-row errors of a JSONL file, a Parquet file or a ``save_to_disk`` folder."""
    path = Path(path)
    source = str(path)
    if not path.exists():
        return [], [LineError(source, 0, None, "no such file or folder")]
    if path.is_dir():
        rows = _hf_rows(path)
    elif path.suffix.lower() in TABLE_SUFFIXES:
        rows = _parquet_rows(path)
    elif path.suffix.lower() == ".arrow":
        rows = _arrow_file_rows(path)
    else:
        rows = _jsonl_rows(path)
    if isinstance(rows, LineError):
        return [], [rows]
    if isinstance(rows, TableRows) and fields.question not in rows.columns:  # one error, not one per row
        shown = ", ".join(rows.columns[:20])
        return [], [
            LineError(
                source,
                0,
                None,
                f"field {fields.question!r} is not a column of this file "
                f"(columns: {shown}); choose one with --question-field",
            )
        ]
    return _records(rows, source, fields)


def _records(rows, source: str, fields: FieldMap) -> tuple[list[QuestionRecord], list[LineError]]:
    """Map each (row number, decoded object | LineError) to a record or an error."""
    records: list[QuestionRecord] = []
    errors: list[LineError] = []
    column_of = fields.columns()
    is_table = isinstance(rows, TableRows)
    for row_no, obj in rows:
        if isinstance(obj, LineError):
            errors.append(obj)
            continue
        mapped = _map_fields(obj, fields)
        if is_table and isinstance(mapped, dict) and "id" not in mapped:
            mapped["id"] = f"row{row_no}"
        parsed = parse_line(mapped, row_no, source)
        if isinstance(parsed, LineError):
            field = column_of.get(parsed.field, parsed.field)
            errors.append(
                RowError(source, row_no, field, parsed.message)
                if is_table
                else LineError(source, row_no, field, parsed.message)
            )
        else:
            records.append(parsed)
    if not records and not errors:
        errors.append(LineError(source, 0, None, "file has no questions"))
    return records, errors


def _map_fields(obj, fields: FieldMap):
    """A row of the file -> the JSONL line shape ``parse_line`` expects."""
    if not isinstance(obj, dict):
        return obj
    out = {"question": _plain(obj.get(fields.question))}
    answer = _plain(obj.get(fields.answer))
    if isinstance(answer, str) and GSM8K_MARKER in answer:
        answer = answer.rsplit(GSM8K_MARKER, 1)[1].strip() or answer
    if answer is not None:
        out["answer"] = answer
    trajectory = _plain(obj.get(fields.trajectory))
    if trajectory is not None:
        out["trajectory"] = trajectory
    id_names = (fields.id,) if fields.id else ID_FIELDS
    for name in id_names:
        rid = _plain(obj.get(name))
        if rid is not None:
            out["id"] = rid
            break
    return out


def _plain(value):
    """numpy scalars -> Python values; missing cells (None, NaN) -> None."""
    if value is None:
        return None
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)  # Parquet turns integer columns with gaps into floats: 204.0 -> 204
    return value


# ---------------------------------------------------------------------------- JSONL
def _jsonl_rows(path: Path):
    """(line number, decoded JSON value or LineError) per non-empty line; BOM and CRLF accepted."""
    source = str(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return LineError(source, 0, None, f"file is larger than {MAX_FILE_BYTES >> 20} MiB")
        data = path.read_bytes()
    except OSError as exc:
        return LineError(source, 0, None, f"cannot read file: {exc.strerror}")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.startswith(b"PAR1"):
        return LineError(source, 0, None, "is a Parquet file: give it a .parquet name")
    if b"\x00" in data[:4096]:
        return LineError(source, 0, None, "is binary, not JSONL text")
    rows = []
    for line_no, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE_BYTES:
            rows.append((line_no, LineError(source, line_no, None, f"line is longer than {MAX_LINE_BYTES >> 20} MiB")))
            continue
        try:
            rows.append((line_no, json.loads(raw.decode("utf-8"))))
        except UnicodeDecodeError as exc:
            rows.append((line_no, LineError(source, line_no, None, f"not valid UTF-8 (byte {exc.start})")))
        except json.JSONDecodeError as exc:
            rows.append((line_no, LineError(source, line_no, None, f"invalid JSON: {exc.msg} at column {exc.colno}")))
        except RecursionError:  # e.g. "[[[[..." 100k deep: json.loads raises this, not JSONDecodeError
            rows.append((line_no, LineError(source, line_no, None, "invalid JSON: nested too deeply")))
    return rows


# ---------------------------------------------------------------------------- tables
class TableRows(list):
    """(1-based row number, dict) per row of a table, plus the table's column names."""

    columns: list[str]


def _table_rows(table, source: str):
    if table.num_rows == 0:
        return LineError(source, 0, None, "table has no rows")
    rows = TableRows(enumerate(table.to_pylist(), start=1))
    rows.columns = list(table.column_names)
    return rows


def _parquet_rows(path: Path):
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # OSError, or pyarrow's own types (ArrowInvalid, ...)
        return LineError(str(path), 0, None, f"not a readable Parquet file ({_short(exc)})")
    return _table_rows(table, str(path))


def _read_arrow_file(path: Path):
    """One Arrow IPC file: the stream format ``save_to_disk`` writes, or the random-access one."""
    import pyarrow as pa

    with pa.memory_map(str(path), "r") as source:
        try:
            return pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_file(source).read_all()


def _arrow_file_rows(path: Path):
    try:
        table = _read_arrow_file(path)
    except Exception as exc:
        return LineError(str(path), 0, None, f"not a readable Arrow file ({_short(exc)})")
    return _table_rows(table, str(path))


def _hf_rows(path: Path):
    """A folder from ``Dataset.save_to_disk`` (state.json + data-*.arrow), or a
    ``DatasetDict`` folder with one split (several splits: name the split's folder)."""
    source = str(path)
    if (path / "dataset_dict.json").is_file():
        try:
            splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
        except (OSError, ValueError, KeyError, TypeError):
            return LineError(source, 0, None, "dataset_dict.json is unreadable")
        if len(splits) != 1:
            options = ", ".join(str(path / s) for s in splits)
            return LineError(
                source, 0, None, f"holds several splits ({', '.join(splits)}): pass one split's folder, e.g. {options}"
            )
        return _hf_rows(path / splits[0])
    state_path = path / "state.json"
    if not state_path.is_file():
        return LineError(
            source,
            0,
            None,
            "is a folder but not a Hugging Face dataset saved with save_to_disk (no state.json or dataset_dict.json)",
        )
    try:
        state = json.loads(state_path.read_text())
        files = [path / f["filename"] for f in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError):
        return LineError(source, 0, None, "state.json is unreadable")
    if any(f.parent.resolve() != path.resolve() for f in files):
        return LineError(source, 0, None, "state.json names data files outside the dataset folder")
    import pyarrow as pa

    tables = []
    for f in files:
        try:
            tables.append(_read_arrow_file(f))
        except Exception as exc:
            return LineError(source, 0, None, f"data file {f.name} is unreadable ({_short(exc)})")
    if not tables:
        return LineError(source, 0, None, "dataset has no data files")
    try:
        table = pa.concat_tables(tables)
    except Exception as exc:
        return LineError(source, 0, None, f"data files do not share one schema ({_short(exc)})")
    return _table_rows(table, source)


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]
