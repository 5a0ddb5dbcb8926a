"""Issue 27 item 2: decompression bombs are refused from sizes known before inflating, and the
read's peak memory stays bounded. Each bomb is built inside the test (a few KB on disk, ~1 GiB
inflated) and read in a subprocess under ``RLIMIT_AS``: reading the bomb whole would raise
MemoryError there, a bounded read finishes with the refusal."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
HUGE = 512 << 20  # 512 MiB of one repeated byte
HEADROOM = 256 << 20  # address space the reader may add over its imports (one inflated copy does not fit)


def _bounded(code: str, headroom: int = HEADROOM) -> dict:
    """Run ``code`` (which prints one JSON line) with the address space capped at what the
    interpreter and pyarrow take once imported, plus ``HEADROOM``."""
    script = textwrap.dedent(
        f"""
        import json, resource, sys
        sys.path.insert(0, {str(ROOT)!r})
        import pyarrow, pyarrow.parquet, pyarrow.compute  # imported before the cap
        from backend.io.readers import read_questions
        from backend.io import zipped, jsonl
        def vm():
            for line in open("/proc/self/status"):
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) << 10
        cap = vm() + {headroom}
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        """
    ) + textwrap.dedent(code)
    env = {
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "ARROW_DEFAULT_MEMORY_POOL": "system",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _parquet_bomb(path: Path) -> Path:
    """Two good rows, then one row group whose single cell is 1 GiB of 'a' (zstd: a few KB)."""
    good = pa.table({"question": ["What is 2+2?", "What is 3+3?"], "answer": ["4", "6"]})
    with pq.ParquetWriter(
        path, pa.schema([("question", pa.large_string()), ("answer", pa.large_string())]), compression="zstd"
    ) as w:
        w.write_table(good.cast(w.schema))
        data = pa.py_buffer(b"a" * HUGE)  # one copy in this process, no Python str of it
        offsets = pa.py_buffer(pa.array([0, HUGE], type=pa.int64()).buffers()[1])
        big = pa.LargeStringArray.from_buffers(1, offsets, data)
        del data
        w.write_table(pa.table({"question": big, "answer": pa.array(["1"], type=pa.large_string())}))
        del big
        w.write_table(pa.table({"question": ["What is 4+4?"], "answer": ["8"]}).cast(w.schema))
    return path


def test_parquet_bomb_is_refused_from_metadata_and_the_read_stays_bounded(tmp_path):
    path = _parquet_bomb(tmp_path / "bomb.parquet")
    assert path.stat().st_size < 1 << 20
    out = _bounded(
        f"""
        rows, errors = read_questions({str(path)!r})
        print(json.dumps({{"rows": [r.question for r in rows], "errors": [str(e) for e in errors]}}))
        """
    )
    assert out["rows"] == ["What is 2+2?", "What is 3+3?", "What is 4+4?"]  # the good rows on both sides still load
    assert len(out["errors"]) == 1 and "row 3 not read" in out["errors"][0] and "metadata" in out["errors"][0]


def test_arrow_cell_over_the_bound_is_refused_from_offsets_before_it_is_copied(tmp_path):
    """A memory-mapped Arrow file with one 512 MiB cell: the mapping itself takes address space,
    so the cap is the file's size plus 256 MiB: a Python copy of the cell does not fit."""
    path = tmp_path / "big.arrow"
    data = pa.py_buffer(b"x" * HUGE)
    offsets = pa.py_buffer(pa.array([0, 2, 2 + HUGE, 4 + HUGE], type=pa.int64()).buffers()[1])
    body = pa.py_buffer(b"q1" + b"x" * HUGE + b"q3")
    del data
    cells = pa.LargeStringArray.from_buffers(3, offsets, body)
    with pa.ipc.new_file(str(path), pa.schema([("question", pa.large_string())])) as w:
        w.write_table(pa.table({"question": cells}))
    del cells, body
    out = _bounded(
        f"""
        rows, errors = read_questions({str(path)!r})
        print(json.dumps({{"rows": [r.question for r in rows], "errors": [str(e) for e in errors]}}))
        """,
        headroom=path.stat().st_size + HEADROOM,
    )
    assert out["rows"] == ["q1", "q3"], out
    assert len(out["errors"]) == 1 and "row 2" in out["errors"][0] and "longer than 32 MiB" in out["errors"][0]


def test_zip_bomb_member_is_refused_while_inflating_even_when_its_header_lies(tmp_path):
    path = tmp_path / "bomb.eval"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("header.json", json.dumps({"eval": "x"}))
        with z.open("samples/1.json", "w", force_zip64=True) as member:
            block = b"0" * (16 << 20)  # 1 GiB inflated, about 1 MB deflated
            for _ in range((1 << 30) // len(block)):
                member.write(block)
    data = bytearray(path.read_bytes())  # make the central directory claim the member is 100 bytes
    name = b"samples/1.json"
    central = data.rfind(b"PK\x01\x02" + b"\x00" * 0, 0)
    at = data.find(b"PK\x01\x02")
    while at != -1:
        n_len = int.from_bytes(data[at + 28 : at + 30], "little")
        if data[at + 46 : at + 46 + n_len] == name:
            data[at + 24 : at + 28] = (100).to_bytes(4, "little")  # uncompressed size in the directory
        at = data.find(b"PK\x01\x02", at + 4)
    del central
    liar = tmp_path / "liar.eval"
    liar.write_bytes(bytes(data))
    assert path.stat().st_size < 4 << 20
    out = _bounded(
        f"""
        result = {{}}
        for label, p in (("honest", {str(path)!r}), ("liar", {str(liar)!r})):
            z = zipped.open_zip(p)
            assert json.loads(zipped.read_member(z, "header.json")) == {{"eval": "x"}}
            try:
                zipped.read_member(z, "samples/1.json", max_bytes=16 << 20)
                result[label] = "read"
            except zipped.ZipMemberError as exc:
                result[label] = str(exc)
        try:
            list(zipped.iter_member_lines(zipped.open_zip({str(path)!r}), "samples/1.json", 1 << 20))
        except zipped.ZipMemberError as exc:
            result["lines"] = str(exc)
        print(json.dumps(result))
        """
    )
    assert "more than 16 MiB" in out["honest"] and "inflated" in out["honest"]  # from the directory
    assert "inflates to more than 16 MiB" in out["liar"] or "unreadable" in out["liar"]  # counted while reading
    assert "line 1 is longer than 1 MiB" in out["lines"]


def test_jsonl_line_is_bounded_while_reading_not_after(tmp_path):
    out = _bounded(
        """
        import io
        class Endless(io.RawIOBase):  # 2 GiB without a line break, produced on demand
            left = 2 << 30
            def readable(self): return True
            def readinto(self, b):
                n = min(len(b), self.left); b[:n] = b"a" * n; self.left -= n; return n
        stream = io.BufferedReader(Endless())
        items = list(jsonl.iter_jsonl_rows(stream, "endless.jsonl"))
        print(json.dumps([str(e) for _, e in items]))
        """
    )
    assert out == ["endless.jsonl:1: line is longer than 1 MiB"]
