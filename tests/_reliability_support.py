"""Helpers for the reliability tests (issue 7): a tiny model saved to disk so that real
``python -m backend`` subprocesses load it in about a second, CLI runners, and a summary of
what a cache directory holds (run dirs, index rows, temp dirs) to check they agree.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_saved: dict[tuple, Path] = {}


def save_tiny_model(directory: Path, tokenizer, *, max_positions: int = 2048, seed: int = 0) -> Path:
    """Write a tiny random Llama (4 layers, d=64) + SmolLM2's tokenizer as safetensors files."""
    from conftest import build_tiny

    key = (str(directory), max_positions, seed)
    if key in _saved:
        return _saved[key]
    loaded = build_tiny("llama", tokenizer, seed=seed)
    loaded.model.config.max_position_embeddings = max_positions
    directory.mkdir(parents=True, exist_ok=True)
    loaded.model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    _saved[key] = directory
    return directory


def cli_env(**extra: str) -> dict:
    """Environment for CLI subprocesses: offline, quiet, one thread each (2 shared cores)."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    env.pop("RAML_TEST_PAUSE_AT", None)
    env.update(extra)
    return env


def cli_command(cache_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "backend", "--cache-dir", str(cache_dir), *map(str, args)]


def run_cli(cache_dir: Path, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run ``python -m backend`` to completion; returns the finished process (text output)."""
    return subprocess.run(
        cli_command(cache_dir, *args), cwd=ROOT, env=cli_env(**env), capture_output=True, text=True, timeout=timeout
    )


def start_cli(cache_dir: Path, *args: str, **env: str) -> subprocess.Popen:
    """Start ``python -m backend`` in the background, stderr piped (for pause markers)."""
    return subprocess.Popen(
        cli_command(cache_dir, *args),
        cwd=ROOT,
        env=cli_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen, marker: str, timeout: float = 240) -> list[str]:
    """Read ``proc``'s stderr until a line containing ``marker``; returns the lines read.

    Fails (with what was read) if the process exits first or the deadline passes.
    """
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                raise AssertionError(f"process exited ({proc.returncode}) before {marker!r}: {''.join(lines)}")
            continue
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"no {marker!r} within {timeout} s: {''.join(lines)}")


def cache_state(root: Path) -> dict:
    """What a cache directory holds: run dirs, index rows, request rows, temp entries."""
    root = Path(root)
    runs = {p.name for p in (root / "runs").iterdir()} if (root / "runs").is_dir() else set()
    tmp = sorted(p.name for p in (root / "tmp").iterdir()) if (root / "tmp").is_dir() else []
    indexed, requests = set(), set()
    if (root / "index.sqlite").exists():
        con = sqlite3.connect(root / "index.sqlite")
        try:
            indexed = {r[0] for r in con.execute("SELECT key FROM runs")}
            requests = {r[0] for r in con.execute("SELECT key FROM requests")}
        finally:
            con.close()
    return {"runs": runs, "indexed": indexed, "requests": requests, "tmp": tmp}


def assert_empty_cache(root: Path) -> None:
    """Nothing was stored: no run dir, no index row, no request row, no temp dir left."""
    state = cache_state(root)
    assert state == {"runs": set(), "indexed": set(), "requests": set(), "tmp": []}, state


def one_error_line(stderr: str) -> str:
    """The single non-empty stderr line of a failed CLI call (no traceback)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{stderr}"
    assert lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


# ----------------------------------------------------------------------------- concurrent runs
def _concurrent_worker(cache_dir: str, model_dir: str, index: int, barrier, results) -> None:
    """One of N processes: load the tiny model, wait for the others, run one question."""
    import torch

    torch.set_num_threads(1)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from backend.engine.models import load_model
    from backend.pipeline.run import RunRequest, run_question
    from backend.store.runs import RunStore

    load_model(model_dir)
    question = f"Question number {index}: how many apples are left?"
    trajectory = f"Start with {index + 10} apples. Eat {index}. So {index + 10} - {index} = 10. Wait, yes."
    barrier.wait(timeout=300)  # every process reaches the cache at about the same moment
    try:
        outcome = run_question(
            RunRequest(question=question, answer="10", trajectory=trajectory, model=model_dir), RunStore(cache_dir)
        )
        results.put((index, outcome.key, None))
    except BaseException as exc:  # reported to the test, which fails with it
        results.put((index, None, f"{type(exc).__name__}: {exc}"))


def concurrent_runs_main(cache_dir: str, model_dir: str, n: int) -> None:
    """Fork ``n`` processes that each run a different question into one cache at once, while
    this process keeps listing and opening runs like the app's library page does. Prints a
    JSON report: keys, errors, and how many reads succeeded or failed meanwhile.

    torch and the backend are imported once here, before forking (no threads started yet).
    """
    import json
    import multiprocessing as mp

    import backend.pipeline.run  # noqa: F401  (import torch + transformers once, shared by the forks)
    from backend.store.runs import RunStore

    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_concurrent_worker, args=(cache_dir, model_dir, i, barrier, results)) for i in range(n)]
    for p in procs:
        p.start()
    reader, reads, read_errors = RunStore(cache_dir), 0, []
    while any(p.is_alive() for p in procs):
        try:
            for key in reader.list_runs()["key"]:
                reader.open(key)  # every listed run must be complete
                reads += 1
        except Exception as exc:
            read_errors.append(f"{type(exc).__name__}: {exc}")
        time.sleep(0.25)
    for p in procs:
        p.join()
    outcomes = [results.get(timeout=10) for _ in range(n)]
    print(
        json.dumps(
            {
                "outcomes": sorted(outcomes),
                "exitcodes": [p.exitcode for p in procs],
                "reads": reads,
                "read_errors": read_errors,
            }
        )
    )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if sys.argv[1] == "concurrent":
        concurrent_runs_main(sys.argv[2], sys.argv[3], int(sys.argv[4]))
