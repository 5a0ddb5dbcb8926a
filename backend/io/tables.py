"""Tables: Parquet files and folders of Parquet shards (``pyarrow.dataset``), Arrow IPC files
(stream or file format), Hugging Face ``save_to_disk`` folders (read with pyarrow alone; the
``datasets`` package is not needed) and CSV (every column read as text).

Memory is bounded by bytes, not rows: only the mapped columns are read. Parquet sizes are
checked from the file's metadata (each column chunk's uncompressed size) *before* a row group
is decompressed: a row group whose rows average more than ``MAX_ROW_BYTES`` (a decompression
bomb: 33 KB on disk, 1 GiB in memory) is refused in one line, and the others are read in
batches of at most ``READ_BUDGET`` bytes (``BATCH_ROWS`` rows at most). Arrow files are
memory-mapped, and a cell over ``MAX_CELL_BYTES`` is refused from its offsets before it is
copied into Python. A ``Table`` names its columns first, so a mapping that misses the question
column is one error, not one per row.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from backend.io.records import MAX_CELL_BYTES, LineError, RowError
from backend.io.walk import WalkError, files_below

BATCH_ROWS = 256
READ_BUDGET = 64 << 20  # bytes of mapped columns decoded at a time (one batch)
MAX_ROW_BYTES = 2 * MAX_CELL_BYTES  # a row group averaging more per row holds an over-long cell
PARQUET_SUFFIXES = (".parquet", ".pq")
ARROW_SUFFIXES = (".arrow", ".feather", ".ipc")
CSV_SUFFIXES = (".csv", ".tsv")

# (source named in errors, 1-based row within that source, the row's mapped columns or a LineError)
Row = tuple[str, int, "dict | LineError"]


@dataclass
class Table:
    """A tabular source: its column names, and its rows restricted to some columns."""

    source: str
    columns: list[str]
    read: Callable[[list[str]], Iterator[Row]]

    def rows(self, columns: list[str]) -> Iterator[Row]:
        """Rows with only ``columns``; a table without rows is one error."""
        empty = True
        for row in self.read(columns):
            empty = False
            yield row
        if empty:
            yield self.source, 0, LineError(self.source, 0, None, "table has no rows")


def short(exc: BaseException) -> str:
    """The first line of a reader's exception, without the file content some of them echo
    (pyarrow's CSV errors end with the offending row)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if text.startswith("CSV parse error"):
        text = text.split(":", 2)[0] + ": " + text.split(":", 2)[1].strip() if text.count(":") >= 2 else text
    return text[:160]


def _batch_rows(batches, source: str, start: int = 0) -> Iterator[Row]:
    """Rows of an iterator of record batches; a read failure midway is one error, then stop."""
    row_no = start
    try:
        for batch in batches:
            for row in batch.to_pylist():
                row_no += 1
                yield source, row_no, row
    except Exception as exc:  # pyarrow's own types (ArrowInvalid, OSError, ...)
        yield source, row_no + 1, LineError(source, row_no + 1, None, f"unreadable from here on ({short(exc)})")


# ---------------------------------------------------------------------------- Parquet
def parquet_files(path: Path) -> list[Path]:
    """A Parquet file itself, or the shards below a folder (bounded walk, name order)."""
    if not path.is_dir():
        return [path]
    return files_below(path, lambda name: Path(name).suffix.lower() in PARQUET_SUFFIXES)


def parquet_table(path: Path) -> Table | LineError:
    """A Parquet file, or a folder of Parquet shards (searched recursively, in name order)."""
    import pyarrow.parquet as pq

    source = str(path)
    what = "folder of Parquet shards" if path.is_dir() else "Parquet file"
    try:
        files = parquet_files(path)
        if not files:
            return LineError(source, 0, None, "folder has no .parquet shards")
        with pq.ParquetFile(files[0]) as first:
            columns = list(first.schema_arrow.names)
    except WalkError as exc:
        return LineError(source, 0, None, str(exc).removeprefix(f"{source}: "))
    except Exception as exc:
        return LineError(source, 0, None, f"not a readable {what} ({short(exc)})")

    def read(wanted: list[str]) -> Iterator[Row]:
        for f in files:
            shard = str(f) if path.is_dir() else source
            try:
                parquet = pq.ParquetFile(f, pre_buffer=False, buffer_size=1 << 20)
            except Exception as exc:
                yield shard, 0, LineError(shard, 0, None, f"not a readable Parquet file ({short(exc)})")
                continue
            with parquet:
                yield from _parquet_rows(parquet, wanted, shard)

    return Table(source, columns, read)


def column_bytes(metadata, group: int, wanted: list[str]) -> dict[str, int]:
    """Uncompressed bytes of each wanted top-level column in row group ``group``, from the file's
    metadata alone (nested columns: the sum of their leaf chunks)."""
    row_group = metadata.row_group(group)
    sizes = dict.fromkeys(wanted, 0)
    for i in range(row_group.num_columns):
        chunk = row_group.column(i)
        top = chunk.path_in_schema.split(".", 1)[0]
        if top in sizes:
            sizes[top] += max(0, int(chunk.total_uncompressed_size))
    return sizes


def _parquet_rows(parquet, wanted: list[str], source: str) -> Iterator[Row]:
    """Rows of one Parquet file, row group by row group, each checked from the metadata first."""
    metadata = parquet.metadata
    row_no = 0
    for group in range(metadata.num_row_groups):
        n_rows = metadata.row_group(group).num_rows
        if n_rows <= 0:
            continue
        sizes = column_bytes(metadata, group, wanted)
        widest = max(sizes, key=lambda c: sizes[c]) if sizes else None
        per_row = sum(sizes.values()) / n_rows
        if widest is not None and (per_row > MAX_ROW_BYTES or (n_rows == 1 and sizes[widest] > MAX_CELL_BYTES)):
            first, last = row_no + 1, row_no + n_rows
            rows = f"row {first}" if n_rows == 1 else f"rows {first}-{last}"
            message = (
                f"{rows} not read: column {widest!r} holds {sizes[widest] / n_rows / (1 << 20):,.0f} MiB per row "
                f"uncompressed (from the file's metadata), a cell may hold {MAX_CELL_BYTES >> 20} MiB"
            )
            yield source, first, RowError(source, first, widest, message)
            row_no = last
            continue
        batch_rows = int(max(1, min(BATCH_ROWS, READ_BUDGET // max(1.0, per_row))))
        batches = parquet.iter_batches(batch_size=batch_rows, row_groups=[group], columns=wanted, use_threads=False)
        for item in _batch_rows(batches, source, row_no):
            yield item
            if isinstance(item[2], LineError):
                return
        row_no += n_rows


# ---------------------------------------------------------------------------- Arrow
def _open_arrow(path: Path):
    """(schema, batches) of one Arrow IPC file, memory-mapped: the stream format that
    ``save_to_disk`` writes, or the random-access file format."""
    import pyarrow as pa

    source = pa.memory_map(str(path), "r")
    try:
        reader = pa.ipc.open_stream(source)
        return reader.schema, iter(reader)
    except pa.ArrowInvalid:
        source.seek(0)
        file_reader = pa.ipc.open_file(source)
        return file_reader.schema, (file_reader.get_batch(i) for i in range(file_reader.num_record_batches))


def arrow_files_table(files: list[Path], source: str, name_files: bool = False) -> Table | LineError:
    """One table over Arrow files sharing one schema (row numbers run on across files)."""
    opened = []
    for f in files:
        try:
            opened.append(_open_arrow(f))
        except Exception as exc:
            what = f"data file {f.name} is unreadable" if name_files else "not a readable Arrow file"
            return LineError(source, 0, None, f"{what} ({short(exc)})")
    if not opened:
        return LineError(source, 0, None, "dataset has no data files")
    schema = opened[0][0]
    if any(s.names != schema.names for s, _ in opened[1:]):
        return LineError(source, 0, None, "data files do not share one schema")

    def read(wanted: list[str]) -> Iterator[Row]:
        rows_before = 0
        for _, batches in opened:
            for src, row_no, row in _arrow_rows((b.select(wanted) for b in batches), source, rows_before):
                yield src, row_no, row
                if isinstance(row, LineError) and not isinstance(row, RowError):  # unreadable from here on
                    return
                rows_before = row_no

    return Table(source, list(schema.names), read)


def oversized_rows(batch) -> dict[int, str]:
    """Row index -> the first column whose cell is over ``MAX_CELL_BYTES``, read from the
    batch's offsets (strings, binaries and lists of them) without copying a cell."""
    import pyarrow as pa
    import pyarrow.compute as pc

    found: dict[int, str] = {}
    for name, column in zip(batch.schema.names, batch.columns):
        kind = column.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            values = pc.list_flatten(column)
            parents = pc.list_parent_indices(column)
        else:
            values, parents = column, None
        if not (
            pa.types.is_string(values.type)
            or pa.types.is_large_string(values.type)
            or pa.types.is_binary(values.type)
            or pa.types.is_large_binary(values.type)
        ):
            continue
        over = pc.indices_nonzero(pc.greater(pc.fill_null(pc.binary_length(values), 0), MAX_CELL_BYTES)).to_pylist()
        for i in over:
            found.setdefault(int(parents[i].as_py()) if parents is not None else i, name)
    return found


def _arrow_rows(batches, source: str, start: int = 0) -> Iterator[Row]:
    """Rows of Arrow record batches; an over-long cell is one error for its row, found before
    the batch is copied into Python objects."""

    row_no = start
    try:
        for batch in batches:
            over = oversized_rows(batch)
            if not over:
                rows = batch.to_pylist()
            else:  # zero-copy slices around the over-long rows (a filter would preallocate by ratio)
                rows = [None if i in over else batch.slice(i, 1).to_pylist()[0] for i in range(batch.num_rows)]
            for i, row in enumerate(rows):
                row_no += 1
                if row is None:
                    message = f"is longer than {MAX_CELL_BYTES >> 20} MiB"
                    yield source, row_no, RowError(source, row_no, over[i], message)
                else:
                    yield source, row_no, row
    except Exception as exc:  # pyarrow's own types (ArrowInvalid, OSError, ...)
        yield source, row_no + 1, LineError(source, row_no + 1, None, f"unreadable from here on ({short(exc)})")


def hf_table(path: Path) -> Table | LineError:
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
        return hf_table(path / splits[0])
    try:
        state = json.loads((path / "state.json").read_text())
        files = [path / f["filename"] for f in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError):
        return LineError(source, 0, None, "state.json is unreadable")
    if any(f.resolve().parent != path.resolve() for f in files):  # a symlinked data file counts where it points
        return LineError(source, 0, None, "state.json names data files outside the dataset folder")
    return arrow_files_table(files, source, name_files=True)


# ---------------------------------------------------------------------------- CSV
def csv_table(path: Path) -> Table | LineError:
    """A CSV (or TSV) file with a header row; every cell is read as text, so ``007`` stays ``007``.
    Streamed row by row with Python's ``csv`` module (a cell is bounded by ``MAX_CELL_BYTES``
    while it is read); a malformed row (more or fewer fields than the header) is one error naming
    its row, never quoting it, and the other rows still load. An empty cell is a missing value."""
    source = str(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with _csv_rows(path, delimiter) as rows:
            names = next(rows)
    except StopIteration:
        return LineError(source, 0, None, "not a readable CSV file with a header row (the file is empty)")
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return LineError(source, 0, None, f"not a readable CSV file with a header row ({_csv_problem(exc)})")
    if len(set(names)) != len(names) or not all(n.strip() for n in names):
        return LineError(source, 0, None, "not a readable CSV file with a header row (empty or repeated column names)")

    def read(wanted: list[str]) -> Iterator[Row]:
        index = [names.index(w) for w in wanted]
        row_no = 0
        try:
            with _csv_rows(path, delimiter) as rows:
                next(rows)
                while True:
                    try:
                        cells = next(rows)
                    except StopIteration:
                        return
                    except csv.Error as exc:  # a cell over the bound: this row only
                        row_no += 1
                        yield source, row_no, RowError(source, row_no, None, _csv_problem(exc))
                        continue
                    row_no += 1
                    if len(cells) != len(names):
                        message = f"has {len(cells)} fields where the header has {len(names)}"
                        yield source, row_no, RowError(source, row_no, None, message)
                        continue
                    yield source, row_no, {w: (cells[i] if cells[i] != "" else None) for w, i in zip(wanted, index)}
        except (OSError, UnicodeDecodeError) as exc:
            yield (
                source,
                row_no + 1,
                LineError(source, row_no + 1, None, f"unreadable from here on ({_csv_problem(exc)})"),
            )

    return Table(source, names, read)


def _csv_problem(exc: BaseException) -> str:
    """Why a CSV is unreadable, without any of its content."""
    if isinstance(exc, UnicodeDecodeError):
        return "not valid UTF-8"
    if isinstance(exc, csv.Error) and "field larger than field limit" in str(exc):
        return f"a cell is longer than {MAX_CELL_BYTES >> 20} MiB"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc).split(":", 1)[0][:120]


@contextmanager
def _csv_rows(path: Path, delimiter: str):
    """A ``csv.reader`` over ``path`` (UTF-8, BOM accepted), each cell at most ``MAX_CELL_BYTES``."""
    previous = csv.field_size_limit()
    csv.field_size_limit(MAX_CELL_BYTES)
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            yield csv.reader(fh, delimiter=delimiter, strict=False)
    finally:
        csv.field_size_limit(previous)
