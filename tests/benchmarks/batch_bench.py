"""Questions per minute of ``python -m backend batch`` with the local and the Ray engine.

    python tests/benchmarks/batch_bench.py [--questions 6] [--max-new-tokens 128]
        [--model smollm2-135m] [--engines local,ray]

Each engine gets a fresh cache (nothing cached) and runs the first N questions of
assets/questions/math_logic.jsonl as the CLI does, in a subprocess; the wall time includes
starting Python, loading the model (once per process / per Ray worker) and starting Ray.
The Ray engine starts a local instance with the CPUs this process may use (one worker per CPU,
each torch on one thread); the local engine is one process with torch on all of them.

Last stdout line: one JSON object {"questions", "max_new_tokens", "model", "cpus",
"local_s", "local_qpm", "ray_s", "ray_qpm", "ray_workers", "ray_over_local", "computed"}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = ROOT / "assets" / "questions" / "math_logic.jsonl"


def run_engine(engine: str, questions: Path, args, cache: Path) -> tuple[float, str, str]:
    cmd = [
        sys.executable,
        "-m",
        "backend",
        "--cache-dir",
        str(cache),
        "batch",
        str(questions),
        "--engine",
        engine,
        "--model",
        args.model,
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--quiet",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    return seconds, proc.stdout, proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--engines", default="local,ray")
    args = parser.parse_args()

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    result: dict = {
        "questions": args.questions,
        "max_new_tokens": args.max_new_tokens,
        "model": args.model,
        "cpus": cpus,
        "computed": {},
    }
    with tempfile.TemporaryDirectory(prefix="batch_bench.") as tmp:
        questions = Path(tmp) / "questions.jsonl"
        lines = QUESTIONS.read_text(encoding="utf-8").splitlines()[: args.questions]
        questions.write_text("\n".join(lines) + "\n", encoding="utf-8")
        for engine in args.engines.split(","):
            seconds, stdout, stderr = run_engine(engine, questions, args, Path(tmp) / f"cache-{engine}")
            summary = [line for line in stderr.splitlines() if "computed," in line]
            print(f"{engine}: {seconds:.1f} s · {summary[-1] if summary else 'no summary'}", file=sys.stderr)
            result[f"{engine}_s"] = round(seconds, 2)
            result[f"{engine}_qpm"] = round(args.questions / seconds * 60, 2)
            result["computed"][engine] = summary[-1] if summary else None
    if "ray_s" in result:
        result["ray_workers"] = cpus
    if "ray_s" in result and "local_s" in result:
        result["ray_over_local"] = round(result["local_s"] / result["ray_s"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
