"""Every reader of question and trace files behind one call (docs/datasets.md):
``iter_questions(path, fields)`` yields records and errors; ``read_questions`` collects them;
``read_questions_bytes`` reads an upload held in memory. The layout comes from the path:

| path | layout |
|---|---|
| ``*.parquet`` / ``*.pq``, or a folder of Parquet shards | ``parquet`` (pyarrow.dataset, mapped columns only, in batches) |
| ``*.arrow`` / ``*.feather`` / ``*.ipc`` | ``arrow`` (stream or file format, memory-mapped) |
| a folder with ``state.json`` or ``dataset_dict.json`` | ``hf`` (``Dataset.save_to_disk``) |
| a folder with ``problem.json`` at or below it | ``thought-anchors`` |
| ``*.csv`` / ``*.tsv`` | ``csv`` (header row, every column as text) |
| anything else | ``jsonl`` (the one JSONL reader) |
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

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
from backend.io.thought_anchors import FolderError, is_thought_anchors, thought_anchors_table
from backend.io.walk import WalkError

LAYOUTS = ("jsonl", "parquet", "arrow", "hf", "thought-anchors", "csv")
UPLOAD_SUFFIXES = ("jsonl", "json", "txt", "parquet", "pq", "arrow", "feather", "csv", "tsv")

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
    return "jsonl"


def is_table(path: str | Path) -> bool:
    """True for the layouts whose records are numbered by row rather than by line."""
    layout = detect_layout(Path(path)) if Path(path).exists() else None
    if layout is None:  # not there yet: judge by the name
        suffix = Path(path).suffix.lower()
        return suffix in (*PARQUET_SUFFIXES, *ARROW_SUFFIXES, *CSV_SUFFIXES)
    return layout not in ("jsonl",) and not isinstance(layout, LineError)


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
    ``reveal`` no error quotes the file's own content (its column names)."""
    path = Path(path)
    found = layout or detect_layout(path)
    if isinstance(found, LineError):
        yield found
        return
    if fields.preset == "thought-anchors" and found != "thought-anchors":
        yield LineError(str(path), 0, None, "preset thought-anchors needs a folder of problem folders (problem.json)")
        return
    if found == "thought-anchors" and fields.preset is None:  # its own column names, under the user's
        named = {name: getattr(fields, name) for name in fields.required}
        fields = replace(PRESETS["thought-anchors"], **named, required=fields.required)
    if found == "jsonl":
        yield from _jsonl_items(path, fields)
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
        for item in map_row(row, columns, fields, source, row_no, table=True):
            yield _as_folder_error(item) if is_folders else item


def _as_folder_error(item: Item) -> Item:
    if isinstance(item, LineError):
        return FolderError(item.source, item.line, item.field, item.message)
    item.where = item.where.rsplit(", row ", 1)[0]  # the problem folder names it
    return item


def _jsonl_items(path: Path, fields: FieldMap) -> Iterator[Item]:
    source = str(path)
    try:
        stream = path.open("rb")
    except OSError as exc:
        yield LineError(source, 0, None, f"cannot read file: {exc.strerror}")
        return
    with stream:
        yield from _jsonl_stream_items(stream, source, fields)


def _jsonl_stream_items(stream, source: str, fields: FieldMap) -> Iterator[Item]:
    columns = resolve_columns(fields, None)
    assert not isinstance(columns, str)
    for line_no, obj in iter_jsonl_rows(stream, source):
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
    if suffix in (*PARQUET_SUFFIXES, *ARROW_SUFFIXES, *CSV_SUFFIXES):
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
    return collect(_jsonl_stream_items(io.BytesIO(data), name, fields), name, limit)


def parse_jsonl_bytes(data: bytes, source: str) -> tuple[list[QuestionRecord], list[LineError]]:
    """Records and errors of JSONL content held in memory, default field names."""
    return read_questions_bytes(data, source)


def read_jsonl(path: str | Path) -> tuple[list[QuestionRecord], list[LineError]]:
    """Records and errors of a JSONL file on disk, default field names."""
    path = Path(path)
    if not path.exists():
        return [], [LineError(str(path), 0, None, "cannot read file: No such file or directory")]
    return read_questions(path, layout="jsonl")
