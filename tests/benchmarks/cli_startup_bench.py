"""Start-up of the ``raml`` CLI (issue 26): wall time of real subprocesses, median of N, for the
commands that read the cache and for refusals of flags that need no weights.

    python tests/benchmarks/cli_startup_bench.py [--repeat 3] [--baseline /path/to/other/checkout]

Goals: ``--version`` <= 0.5 s; ``ls``, ``show``, ``jobs ls`` <= 1.5 s; a refused flag <= 2 s on
a fresh model cache. A cache with one run of a tiny model is made first (not timed). The refusal
that needs the tokenizer (a question over ``--max-question-tokens``) is timed twice on a fresh
model cache: the first call converts the GGUF's tokenizer and keeps it, the second reads the copy.
``--baseline`` times the same commands with another checkout's code side by side (ratios of one
run are meaningful on a shared machine; absolute times are not).

Last stdout line: JSON {"repeat", "seconds": {command: median}, "goals": {command: goal},
"baseline_seconds": {...} (with --baseline)}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT

GOALS = {
    "--version": 0.5,
    "ls": 1.5,
    "show": 1.5,
    "show --json": 1.5,
    "jobs ls": 1.5,
    "rm (no such run)": 1.5,
    "run --proxy-layers 999 (fresh model cache)": 2.0,
    "run --temperature nan": 2.0,
}
LONG_QUESTION = "How many apples? " * 40


def make_cache(cache: Path) -> str:
    """One run of a tiny Llama (SmolLM2's tokenizer) in ``cache``; its key."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY, build_tiny
    from transformers import AutoTokenizer

    from backend.engine import converted
    from backend.engine.models import resolve
    from backend.pipeline.run import RunRequest, run_question
    from backend.store.runs import RunStore

    copy = converted.tokenizer_dir(resolve("smollm2-135m").fingerprint())
    if copy is None:
        raise SystemExit("needs SmolLM2's converted copy in RAML_MODEL_CACHE (run `make demo` once)")
    tiny = build_tiny("llama", AutoTokenizer.from_pretrained(str(copy)))
    req = RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, model=tiny.name)
    return run_question(req, RunStore(cache), loaded=tiny).key


def timed(repo: Path, argv: list[str], env: dict) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "backend", *argv],
        cwd=repo,
        env=env | {"PYTHONPATH": str(repo)},
        capture_output=True,
        timeout=600,
    )
    return time.perf_counter() - t0, proc.returncode


def measure(repo: Path, cache: Path, key: str, repeat: int, scratch: Path) -> dict[str, float]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    c = ["--cache-dir", str(cache)]
    commands = {
        "--version": ["--version"],
        "ls": [*c, "ls"],
        "show": [*c, "show", key],
        "show --json": [*c, "show", "--json", key],
        "jobs ls": [*c, "jobs", "ls"],
        "rm (no such run)": [*c, "rm", "0" * 32],
        "run --temperature nan": [*c, "run", "--question", "q", "--temperature", "nan"],
    }
    out: dict[str, float] = {}
    for name, argv in commands.items():
        out[name] = statistics.median(timed(repo, argv, env)[0] for _ in range(repeat))

    def fresh_model_cache() -> dict:
        return env | {"RAML_MODEL_CACHE": tempfile.mkdtemp(dir=scratch)}

    refuse = [*c, "run", "--question", "q", "--proxy-layers", "999"]
    out["run --proxy-layers 999 (fresh model cache)"] = statistics.median(
        timed(repo, refuse, fresh_model_cache())[0] for _ in range(repeat)
    )
    too_long = [*c, "run", "--question", LONG_QUESTION, "--max-question-tokens", "8"]
    fresh = fresh_model_cache()
    out["run, question too long: 1st (fresh model cache)"] = timed(repo, too_long, fresh)[0]
    out["run, question too long: 2nd (same model cache)"] = timed(repo, too_long, fresh)[0]
    return {k: round(v, 3) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout timed side by side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        cache = scratch / "cache"
        key = make_cache(cache)
        result: dict = {"repeat": args.repeat, "seconds": measure(ROOT, cache, key, args.repeat, scratch)}
        if args.baseline is not None:
            result["baseline"] = str(args.baseline)
            result["baseline_seconds"] = measure(args.baseline.resolve(), cache, key, args.repeat, scratch)
        result["goals"] = GOALS
        for name, seconds in result["seconds"].items():
            base = result.get("baseline_seconds", {}).get(name)
            goal = GOALS.get(name)
            print(
                f"{name:<50} {seconds:7.2f} s"
                + (f"   (baseline {base:.2f} s)" if base is not None else "")
                + (f"   goal {goal} s" if goal else ""),
                file=sys.stderr,
            )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
