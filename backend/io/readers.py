"""Every reader of question and trace files behind one call (docs/datasets.md):
``iter_questions(path, fields)`` yields records and errors; ``read_questions`` collects them;
``read_questions_bytes`` reads an upload held in memory. The layout comes from the path:

| path | layout |
|---|---|
| ``*.parquet`` / ``*.pq``, or a folder of Parquet shards | ``parquet`` (pyarrow.dataset, mapped columns only, in batches) |
| ``*.arrow`` / ``*.feather`` / ``*.ipc`` | ``arrow`` (stream or file format, memory-mapped) |
| a folder with ``state.json`` or ``dataset_dict.json`` | ``hf`` (``Dataset.save_to_disk``) |
| a folder with ``problem.json`` at or below it | ``thought-anchors`` (with ``chunk_<k>/solutions.json``: rollouts as branches) |
| ``*.csv`` / ``*.tsv`` | ``csv`` (header row, every column as text) |
| ``*.eval``, or a ``*.json`` Inspect log (an EvalLog object) | ``inspect`` (``backend.io.inspect_logs``) |
| anything else | ``jsonl`` (the one JSONL reader); by its first line an lm-eval ``--log_samples`` file (``lm-eval``) or OpenAI-compatible chat output (``openai-chat``) |

A preset named like a layout (``inspect``, ``lm-eval``, ``openai-chat``) reads the file as that layout.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from backend import readonly
from backend.io import inspect_logs, lm_eval, openai_chat
from backend.io.fields import PRESETS, FieldMap, map_row, resolve_columns
from backend.io.jsonl import iter_jsonl_rows
from backend.io.records import LineError, QuestionRecord
from backend.io.tables import (
    ARROW_SUFFIXES,
    CSV_SUFFIXES,
    PARQUET_SUFFIXES,
    Table,
    arrow_files_table,
    csv_table,
    hf_table,
    parquet_files,
    parquet_table,
)
from backend.io.thought_anchors import (
    FolderError,
    chunk_folders,
    is_thought_anchors,
    mark_base,
    rollout_records,
    thought_anchors_table,
)
from backend.io.walk import WalkError

LAYOUTS = ("jsonl", "parquet", "arrow", "hf", "thought-anchors", "csv", "inspect", "lm-eval", "openai-chat")
LOG_LAYOUTS = ("inspect", "lm-eval", "openai-chat")  # eval-pipeline logs: a preset of that name forces the layout
UPLOAD_SUFFIXES = ("jsonl", "json", "txt", "parquet", "pq", "arrow", "feather", "csv", "tsv", "eval")

Item = QuestionRecord | LineError


def detect_layout(path: Path) -> str | LineError:
    """The layout of ``path`` (see the module table), or why it has none."""
    source = str(path)
    if not path.exists():
        return LineError(source, 0, None, "no such file or folder")
    suffix = path.suffix.lower()
    if path.is_dir():
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            return "hf"
        try:
            if is_thought_anchors(path):
                return "thought-anchors"
            if parquet_files(path):
                return "parquet"
        except WalkError as exc:  # too deep, too many files, a system folder: one line
            return LineError(source, 0, None, str(exc).removeprefix(f"{source}: "))
        return LineError(
            source,
            0,
            None,
            "is a folder but not a Hugging Face dataset saved with save_to_disk (no state.json or dataset_dict.json), "
            "nor a folder of .parquet shards, nor Thought Anchors problem folders (problem.json)",
        )
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in ARROW_SUFFIXES:
        return "arrow"
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in inspect_logs.SUFFIXES:
        return "inspect"
    if suffix == ".json" and _head_is_inspect(path):
        return "inspect"
    return "jsonl"


def _head_is_inspect(path: Path) -> bool:
    try:
        with path.open("rb") as stream:
            return inspect_logs.looks_like_json_log(stream.read(4096))
    except OSError:
        return False


def is_table(path: str | Path) -> bool:
    """True for the layouts whose records are numbered by row rather than by line."""
    layout = detect_layout(Path(path)) if Path(path).exists() else None
    if layout is None:  # not there yet: judge by the name
        suffix = Path(path).suffix.lower()
        return suffix in (*PARQUET_SUFFIXES, *ARROW_SUFFIXES, *CSV_SUFFIXES)
    return layout not in ("jsonl", *LOG_LAYOUTS) and not isinstance(layout, LineError)


def open_table(path: Path, layout: str) -> Table | LineError:
    if layout == "parquet":
        return parquet_table(path)
    if layout == "arrow":
        return arrow_files_table([path], str(path))
    if layout == "hf":
        return hf_table(path)
    if layout == "csv":
        return csv_table(path)
    return thought_anchors_table(path)


def iter_questions(
    path: str | Path, fields: FieldMap = FieldMap(), layout: str | None = None, reveal: bool = True
) -> Iterator[Item]:
    """Records and per-line/per-row errors of ``path``, in file order, read lazily. Without
    ``reveal`` (a path a browser user named on the server) no error quotes the file's own content
    (its column names), and a read-only server refuses at once, before the path is looked at
    (``ReadOnlyError``; ``backend.readonly``)."""
    if not reveal:
        readonly.check("reading files on the server")
    return _iter_questions(Path(path), fields, layout, reveal)


def _iter_questions(path: Path, fields: FieldMap, layout: str | None, reveal: bool) -> Iterator[Item]:
    found = layout or (fields.preset if fields.preset in LOG_LAYOUTS else None) or detect_layout(path)
    if isinstance(found, LineError):
        yield found
        return
    if found in LOG_LAYOUTS:
        yield from _log_items(path, found, fields, reveal)
        return
    if fields.preset == "thought-anchors" and found != "thought-anchors":
        yield LineError(str(path), 0, None, "preset thought-anchors needs a folder of problem folders (problem.json)")
        return
    if found == "thought-anchors" and fields.preset is None:  # its own column names, under the user's
        named = {name: getattr(fields, name) for name in fields.required}
        fields = replace(PRESETS["thought-anchors"], **named, required=fields.required)
    if found == "jsonl":
        yield from _jsonl_items(path, fields, reveal)
        return
    table = open_table(path, found)
    if isinstance(table, LineError):
        yield table
        return
    columns = resolve_columns(fields, table.columns, reveal)
    if isinstance(columns, str):
        yield LineError(table.source, 0, None, columns)
        return
    is_folders = found == "thought-anchors"
    if is_folders:
        columns = replace(columns, id="id")  # the reader names each row by its folder
    for source, row_no, row in table.rows(columns.names()):
        if isinstance(row, LineError):
            yield row
            continue
        items = map_row(row, columns, fields, source, row_no, table=True)
        if is_folders:
            yield from _problem_items([_as_folder_error(i) for i in items], Path(source))
        else:
            yield from items


def _problem_items(items: list[Item], folder: Path) -> Iterator[Item]:
    """A Thought Anchors problem folder: its base record, then its rollouts (when it has any)."""
    base = items[0] if len(items) == 1 and isinstance(items[0], QuestionRecord) else None
    if base is None or not chunk_folders(folder):
        yield from items
        return
    problem = mark_base(base, folder)
    if problem is not None:
        yield problem
        return
    yield base
    yield from rollout_records(folder, base)


def _as_folder_error(item: Item) -> Item:
    if isinstance(item, LineError):
        return FolderError(item.source, item.line, item.field, item.message)
    item.where = item.where.rsplit(", row ", 1)[0]  # the problem folder names it
    return item


def _jsonl_items(path: Path, fields: FieldMap, reveal: bool = True, layout: str | None = None) -> Iterator[Item]:
    source = str(path)
    try:
        stream = path.open("rb")
    except OSError as exc:
        yield LineError(source, 0, None, f"cannot read file: {exc.strerror}")
        return
    with stream:
        yield from _jsonl_stream_items(stream, source, fields, layout, reveal)


def _log_items(path: Path, layout: str, fields: FieldMap, reveal: bool = True) -> Iterator[Item]:
    """An eval-pipeline log; without ``reveal`` no error quotes the log's own messages."""
    if layout == "inspect":
        yield from inspect_logs.iter_log(path, reveal=reveal)
        return
    yield from _jsonl_items(path, fields, reveal, layout)  # lm-eval and OpenAI-style logs are JSONL


def sniff_rows(rows: Iterator[tuple[int, object]]) -> tuple[str, Iterator[tuple[int, object]]]:
    """The layout of a JSONL stream by its first decoded object (``lm-eval``, ``openai-chat`` or
    ``jsonl``), and the rows again from the start."""
    first = next(rows, None)
    if first is None:
        return "jsonl", iter(())
    obj = first[1]
    layout = "lm-eval" if lm_eval.looks_like(obj) else "openai-chat" if openai_chat.looks_like(obj) else "jsonl"
    return layout, itertools.chain([first], rows)


def _jsonl_stream_items(
    stream, source: str, fields: FieldMap, layout: str | None = None, reveal: bool = True
) -> Iterator[Item]:
    rows = iter_jsonl_rows(stream, source)
    if layout is None:
        layout, rows = sniff_rows(rows)
    if layout == "lm-eval":
        yield from lm_eval.iter_samples(rows, source, fields)
        return
    if layout == "openai-chat":
        yield from openai_chat.iter_lines(rows, source, reveal)
        return
    columns = resolve_columns(fields, None)
    assert not isinstance(columns, str)
    for line_no, obj in rows:
        if isinstance(obj, LineError):
            yield obj
        else:
            yield from map_row(obj, columns, fields, source, line_no, table=False)


def collect(
    items: Iterator[Item], source: str, limit: int | None = None
) -> tuple[list[QuestionRecord], list[LineError]]:
    """Records and errors of ``items``; with ``limit``, stop after that many records (errors
    after the last kept record are not reported: they belong to rows that were not read)."""
    records: list[QuestionRecord] = []
    errors: list[LineError] = []
    for item in items:
        if isinstance(item, QuestionRecord):
            if limit is not None and len(records) >= limit:
                break
            records.append(item)
        else:
            if limit is not None and len(records) >= limit:
                break
            errors.append(item)
    if not records and not errors:
        errors.append(LineError(source, 0, None, "file has no questions"))
    return records, errors


def read_questions(
    path: str | Path,
    fields: FieldMap = FieldMap(),
    layout: str | None = None,
    limit: int | None = None,
    reveal: bool = True,
) -> tuple[list[QuestionRecord], list[LineError]]:
    """Records and per-line/per-row errors of any supported file or folder."""
    return collect(iter_questions(path, fields, layout, reveal), str(path), limit)


def read_questions_bytes(
    data: bytes, name: str, fields: FieldMap = FieldMap(), limit: int | None = None
) -> tuple[list[QuestionRecord], list[LineError]]:
    """An upload held in memory: JSONL is parsed from memory; a table goes through a temporary
    file (pyarrow reads files), and errors still name the upload."""
    import io

    suffix = Path(name).suffix.lower()
    through_file = suffix in (*PARQUET_SUFFIXES, *ARROW_SUFFIXES, *CSV_SUFFIXES, *inspect_logs.SUFFIXES)
    if through_file or (suffix == ".json" and inspect_logs.looks_like_json_log(data[:4096])):
        with tempfile.TemporaryDirectory(prefix="raml-upload-") as folder:
            path = Path(folder) / f"upload{suffix}"
            path.write_bytes(data)
            records, errors = read_questions(path, fields, limit=limit)
        for e in errors:  # the server's temporary path is never shown: the upload's own name is
            e.source = e.source.replace(str(path), name).replace(folder, "<upload>")
            e.message = e.message.replace(str(path), name).replace(folder, "<upload>")
        for r in records:
            r.where = r.where.replace(str(path), name)
        return records, errors
    layout = fields.preset if fields.preset in ("lm-eval", "openai-chat") else None
    return collect(_jsonl_stream_items(io.BytesIO(data), name, fields, layout), name, limit)


def parse_jsonl_bytes(data: bytes, source: str) -> tuple[list[QuestionRecord], list[LineError]]:
    """Records and errors of JSONL content held in memory, default field names."""
    return read_questions_bytes(data, source)


def read_jsonl(path: str | Path) -> tuple[list[QuestionRecord], list[LineError]]:
    """Records and errors of a JSONL file on disk, default field names."""
    path = Path(path)
    if not path.exists():
        return [], [LineError(str(path), 0, None, "cannot read file: No such file or directory")]
    return read_questions(path, layout="jsonl")
