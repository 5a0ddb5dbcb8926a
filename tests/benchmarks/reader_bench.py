"""Peak memory of reading a big Parquet question set (issue 12, "Must show").

Writes a 200k-row Parquet whose trace column totals >= 10 MB plus one row with a 10 MB trace,
and an unmapped 100 MB ``solution`` column the reader must not load; then scans it in fresh
processes and prints each one's peak RSS (VmHWM):

- ``stream``: ``iter_questions`` (mapped columns only, batches), counting records;
- ``collect``: ``read_questions`` (every record kept in memory, as a batch does);
- ``naive``: ``pyarrow.parquet.read_table(...).to_pylist()`` over every column (the old reader).

    python tests/benchmarks/reader_bench.py [--rows 200000] [--big-trace-mb 10]

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--big-trace-mb", type=int, default=10)
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
            out = subprocess.run(
                [sys.executable, __file__, "--scan", str(path), mode],
                cwd=ROOT,
                env=os.environ | {"PYTHONPATH": str(ROOT)},  # this worktree's backend, not an installed one
                capture_output=True,
                text=True,
                check=True,
            )
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            print(mode, results[mode], file=sys.stderr)
    summary = info | {
        "peak_rss_mb": {m: r["peak_rss_mb"] for m, r in results.items()},
        "seconds": {m: r["seconds"] for m, r in results.items()},
        "records": results["stream"]["records"],
        "under_1gb": all(results[m]["peak_rss_mb"] < 1024 for m in ("stream", "collect")),
        "import_baseline_mb": import_baseline_mb(),
        "naive_over_stream": round(results["naive"]["peak_rss_mb"] / results["stream"]["peak_rss_mb"], 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
