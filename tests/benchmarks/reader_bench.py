"""Peak memory of reading a big Parquet question set (issue 12, "Must show").

Writes a 200k-row Parquet whose trace column totals >= 10 MB plus one row with a 10 MB trace,
and an unmapped 100 MB ``solution`` column the reader must not load; then scans it in fresh
processes and prints each one's peak RSS (VmHWM):

- ``stream``: ``iter_questions`` (mapped columns only, batches), counting records;
- ``collect``: ``read_questions`` (every record kept in memory, as a batch does);
- ``naive``: ``pyarrow.parquet.read_table(...).to_pylist()`` over every column (the old reader).

    python tests/benchmarks/reader_bench.py [--rows 200000] [--big-trace-mb 10] [--logs 10000]

Then (issue 21) the eval-pipeline logs: an Inspect ``.eval`` archive (zstd members shaped like
tests/fixtures/eval_logs/gsm8k_reasoning.eval, which inspect_ai wrote) and an lm-eval
``--log_samples`` file of ``--logs`` samples (~4 KB of reasoning each), each read with ``stream``
and ``collect``; ``*_over_parquet_stream`` divides their peak RSS by the Parquet ``stream`` figure
measured in the same run (target: ``stream`` within 1.5x).

The last line is JSON. Target: ``stream`` and ``collect`` under 1 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, rows: int, big_trace_mb: int) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    step = "Add the numbers, then check the sum again. "  # 44 bytes; two per row: 88 bytes
    traces = [step + f"Row {i}: {i} + 1 = {i + 1}." for i in range(rows)]
    traces[rows // 2] = ("Wait, let me check that again. " * (big_trace_mb * (1 << 20) // 31 + 1))[: big_trace_mb << 20]
    table = pa.table(
        {
            "question": [f"What is {i} + 1?" for i in range(rows)],
            "answer": [str(i + 1) for i in range(rows)],
            "trajectory": traces,
            "solution": pa.array(["x" * 500] * rows),  # not mapped: must not be read
        }
    )
    pq.write_table(table, path, row_group_size=16_384)
    trace_bytes = sum(len(t) for t in traces)
    return {
        "rows": rows,
        "trace_column_mb": round(trace_bytes / 2**20, 1),
        "file_mb": round(path.stat().st_size / 2**20, 1),
    }


FIXTURES = ROOT / "tests" / "fixtures" / "eval_logs"
REASONING = "Let me think about the clips again. Wait, 48 / 2 = 24, and 48 + 24 = 72. "  # 74 bytes


def write_inspect(path: Path, n: int) -> dict:
    """An .eval archive of ``n`` samples (zstd members, as inspect_ai writes them)."""
    import zipfile

    import zstandard

    sys.path.insert(0, str(ROOT))
    from backend.io.zipped import open_zip, read_member

    with open_zip(FIXTURES / "gsm8k_reasoning.eval") as z:
        header = json.loads(read_member(z, "header.json"))
        template = json.loads(read_member(z, "samples/1_epoch_1.json"))
    zstd = zstandard.ZstdCompressor()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        header["eval"]["dataset"].update(samples=n, sample_ids=list(range(n)))
        header["eval"]["config"]["epochs"] = 1
        out.writestr("header.json", json.dumps(header))
        for i in range(n):
            sample = json.loads(json.dumps(template))
            sample["id"], sample["epoch"] = i, 1
            reasoning = REASONING * 55 + f"Sample {i}."
            for message in [sample["output"]["choices"][0]["message"], sample["messages"][-1]]:
                message["content"][0]["reasoning"] = reasoning
            data = json.dumps(sample).encode()
            info = zipfile.ZipInfo(f"samples/{i}_epoch_1.json")
            out.writestr(info, data)  # stored; recompressed as zstd below
        out.writestr("summaries.json", "[]")
    _recompress_zstd(path, zstd)
    return {"samples": n, "file_mb": round(path.stat().st_size / 2**20, 1)}


def _recompress_zstd(path: Path, zstd) -> None:
    """Rewrite every member of ``path`` with Zstandard (method 93), as Inspect's writer does on
    Python < 3.14 (zipfile_zstd): local headers and the central directory by hand."""
    import struct
    import zipfile
    import zlib

    with zipfile.ZipFile(path) as z:
        members = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    central, offset = [], 0
    with path.open("wb") as f:
        for name, data in members:
            packed, crc, raw = zstd.compress(data), zlib.crc32(data), name.encode()
            f.write(
                struct.pack("<4s5H3L2H", b"PK\x03\x04", 63, 0, 93, 0, 0x21, crc, len(packed), len(data), len(raw), 0)
            )
            f.write(raw + packed)
            central.append(
                struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 63, 63, 0, 93, 0, 0x21, crc, len(packed), len(data),
                            len(raw), 0, 0, 0, 0, 0, offset) + raw
            )  # fmt: skip
            offset += 30 + len(raw) + len(packed)
        directory = b"".join(central)
        f.write(directory)
        f.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central), len(directory), offset, 0))


def write_lm_eval(path: Path, n: int) -> dict:
    """A ``--log_samples`` file of ``n`` lines shaped like the fixture lm-eval's logger wrote."""
    template = json.loads((FIXTURES / "samples_gsm8k_2026-12-03T08-40-12.345678.jsonl").read_text().splitlines()[0])
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            template["doc_id"] = i
            template["resps"] = [[f"<think>\n{REASONING * 55}Sample {i}.\n</think>\n\nThe answer is 72."]]
            f.write(json.dumps(template) + "\n")
    return {"samples": n, "file_mb": round(path.stat().st_size / 2**20, 1)}


def peak_rss_mb() -> float:
    """This process's peak resident memory since its exec (VmHWM). ``ru_maxrss`` is not used: it
    keeps the parent's size from before the fork, and the parent here holds the whole table."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def scan(path: str, mode: str) -> None:
    """Run in a child process: read the file one way, print records, trace chars and peak RSS."""
    t0 = time.perf_counter()
    if mode == "naive":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        n, chars = len(rows), sum(len(r["trajectory"]) for r in rows)
    else:
        from backend.io.readers import iter_questions, read_questions

        if mode == "stream":
            n = chars = 0
            for item in iter_questions(path):
                n += 1
                chars += len(getattr(item, "trajectory", "") or "")
        else:
            records, errors = read_questions(path)
            assert not errors, errors[:3]
            n, chars = len(records), sum(len(r.trajectory or "") for r in records)
    peak_mb = peak_rss_mb()
    print(
        json.dumps(
            {
                "records": n,
                "trace_chars": chars,
                "peak_rss_mb": round(peak_mb, 1),
                "seconds": round(time.perf_counter() - t0, 2),
            }
        )
    )


def import_baseline_mb() -> float:
    """Peak RSS of a process that only imports the readers and pyarrow.dataset (no data read)."""
    code = "import backend.io.readers, pyarrow.dataset, pyarrow.parquet, sys; sys.path.insert(0, %r); " % str(
        Path(__file__).parent
    )
    code += "from reader_bench import peak_rss_mb; print(peak_rss_mb())"
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return round(float(out.stdout.strip()), 1)


def _scan_child(path: Path, mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--scan", str(path), mode],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},  # this worktree's backend, not an installed one
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--big-trace-mb", type=int, default=10)
    parser.add_argument("--logs", type=int, default=10_000, help="samples of each eval-pipeline log")
    parser.add_argument("--scan", nargs=2, metavar=("PATH", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scan:
        scan(*args.scan)
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.parquet"
        info = write(path, args.rows, args.big_trace_mb)
        results = {}
        for mode in ("stream", "collect", "naive"):
            results[mode] = _scan_child(path, mode)
            print(mode, results[mode], file=sys.stderr)
        logs = {}
        for name, writer, file_name in (
            ("inspect", write_inspect, "gsm8k.eval"),
            ("lm_eval", write_lm_eval, "samples_gsm8k_2026-12-03T08-40-12.345678.jsonl"),
        ):
            log_path = Path(folder) / file_name
            logs[name] = writer(log_path, args.logs)
            for mode in ("stream", "collect"):
                logs[name][mode] = _scan_child(log_path, mode)
                print(name, mode, logs[name][mode], file=sys.stderr)
            log_path.unlink()
    summary = info | {
        "peak_rss_mb": {m: r["peak_rss_mb"] for m, r in results.items()},
        "seconds": {m: r["seconds"] for m, r in results.items()},
        "records": results["stream"]["records"],
        "under_1gb": all(results[m]["peak_rss_mb"] < 1024 for m in ("stream", "collect")),
        "import_baseline_mb": import_baseline_mb(),
        "naive_over_stream": round(results["naive"]["peak_rss_mb"] / results["stream"]["peak_rss_mb"], 2),
        "logs": logs,
    }
    for name, log in logs.items():
        for mode in ("stream", "collect"):
            ratio = log[mode]["peak_rss_mb"] / results["stream"]["peak_rss_mb"]
            summary[f"{name}_{mode}_over_parquet_stream"] = round(ratio, 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
