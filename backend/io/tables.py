"""Tables: Parquet files and folders of Parquet shards (``pyarrow.dataset``), Arrow IPC files
(stream or file format), Hugging Face ``save_to_disk`` folders (read with pyarrow alone; the
``datasets`` package is not needed) and CSV (every column read as text).

Memory is bounded: only the mapped columns are read, in batches of ``BATCH_ROWS`` rows, one
Parquet row group or Arrow record batch at a time (Arrow files are memory-mapped). A ``Table``
names its columns first, so a mapping that misses the question column is one error, not one
per row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from backend.io.records import LineError

BATCH_ROWS = 256
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
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
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
def parquet_table(path: Path) -> Table | LineError:
    """A Parquet file, or a folder of Parquet shards (searched recursively, in name order)."""
    import pyarrow.dataset as ds

    source = str(path)
    files = (
        sorted(str(f) for f in path.rglob("*") if f.suffix.lower() in PARQUET_SUFFIXES) if path.is_dir() else [source]
    )
    try:
        dataset = ds.dataset(files, format="parquet")
        columns = list(dataset.schema.names)
    except Exception as exc:
        what = "folder of Parquet shards" if path.is_dir() else "Parquet file"
        return LineError(source, 0, None, f"not a readable {what} ({short(exc)})")

    def read(wanted: list[str]) -> Iterator[Row]:
        for fragment in dataset.get_fragments():
            shard = fragment.path if path.is_dir() else source
            try:
                batches = fragment.to_batches(
                    columns=wanted, batch_size=BATCH_ROWS, batch_readahead=0, fragment_readahead=0, use_threads=False
                )
            except Exception as exc:
                yield shard, 0, LineError(shard, 0, None, f"not a readable Parquet file ({short(exc)})")
                continue
            yield from _batch_rows(batches, shard)

    return Table(source, columns, read)


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
            for src, row_no, row in _batch_rows((b.select(wanted) for b in batches), source, rows_before):
                yield src, row_no, row
                if isinstance(row, LineError):
                    return
                rows_before = row_no

    return Table(source, list(schema.names), read)


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
    if any(f.parent.resolve() != path.resolve() for f in files):
        return LineError(source, 0, None, "state.json names data files outside the dataset folder")
    return arrow_files_table(files, source, name_files=True)


# ---------------------------------------------------------------------------- CSV
def csv_table(path: Path) -> Table | LineError:
    """A CSV (or TSV) file with a header row; every column is read as text, so ``007`` stays ``007``."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.dataset as ds

    source = str(path)
    parse = pacsv.ParseOptions(delimiter="\t" if path.suffix.lower() == ".tsv" else ",", newlines_in_values=True)
    try:
        with pacsv.open_csv(str(path), parse_options=parse) as reader:
            names = list(reader.schema.names)
        convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=True)
        dataset = ds.dataset(str(path), format=ds.CsvFileFormat(parse_options=parse, convert_options=convert))
    except Exception as exc:
        return LineError(source, 0, None, f"not a readable CSV file with a header row ({short(exc)})")

    def read(wanted: list[str]) -> Iterator[Row]:
        yield from _batch_rows(dataset.to_batches(columns=wanted, batch_size=BATCH_ROWS, use_threads=False), source)

    return Table(source, names, read)
