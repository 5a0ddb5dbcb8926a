"""What a user feels when the machine is shared (issue 29): the engine's own time idle and beside a
competitor, every measurement in a fresh process, so that settings read at start-up (the OpenMP
wait policy, torch's thread pool) count as they would for a real job.

Competitor kinds:
- ``project-job``: a second process of this project (imports ``backend`` first, threads chosen like
  any job's), running torch matmuls in a loop;
- ``foreign-torch``: a plain torch process with default OpenMP settings and threads = cores;
- ``burner``: a pure-Python busy loop (one core).

Policies of the measured process: ``project`` (what every entry point of the project does now:
``backend`` imported before torch, threads chosen at the job's start from cores, quota and load)
and ``old`` (threads = cores, default OpenMP wait: torch imported first, nothing set).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
KINDS = ("project-job", "foreign-torch", "burner")
# Settings a fresh process must not inherit from whoever runs the benchmark.
CLEARED = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "RAML_TORCH_THREADS", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")

MATMULS = """
a = torch.randn(768, 768)
print("ready", flush=True)
while True:
    a = torch.tanh(a @ a) * 0.5
"""
COMPETITORS = {
    "project-job": "import backend, torch\n"
    "from backend.engine.threads import configure_torch_threads\n"
    "configure_torch_threads(measure_load=True)\n" + MATMULS,
    "foreign-torch": "import torch\n" + MATMULS,
    "burner": 'print("ready", flush=True)\nwhile True:\n    pass\n',
}


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    return env | {"PYTHONPATH": str(ROOT), "TRANSFORMERS_VERBOSITY": "error"}


def start_competitor(kind: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", COMPETITORS[kind]], cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", f"{kind} did not start"
    time.sleep(1.0)  # let it reach its steady state
    return proc


def measure_fresh(policy: str, bench_args: list[str]) -> dict:
    """One measurement of the engine in a new process (``probe_bench.py --child POLICY``)."""
    cmd = [sys.executable, str(HERE / "probe_bench.py"), "--child", policy, *bench_args]
    done = subprocess.run(cmd, cwd=ROOT, env=clean_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"measurement ({policy}) failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(bench_args: list[str], kinds: tuple[str, ...] = KINDS) -> dict:
    """Old-policy idle, project idle, then the project beside each competitor; the JSON of issue 29."""
    old_idle = measure_fresh("old", bench_args)
    print(json.dumps({"old_policy_idle": old_idle}), flush=True)
    idle = measure_fresh("project", bench_args)
    print(json.dumps({"project_idle": idle}), flush=True)
    per: dict[str, dict] = {}
    for kind in kinds:
        competitor = start_competitor(kind)
        try:
            busy = measure_fresh("project", bench_args)
        finally:
            competitor.kill()
            competitor.wait()
        per[kind] = {
            "engine_idle_s": idle["engine_s"],
            "engine_busy_s": busy["engine_s"],
            "engine_busy_over_idle": round(busy["engine_s"] / idle["engine_s"], 3),
            "busy_threads": busy["torch_threads"],
            "busy_load_seen": busy["load_seen"],
        }
        if "naive_s" in busy:
            per[kind]["busy_speedup_vs_naive"] = busy["speedup_vs_naive"]
        print(json.dumps({kind: per[kind]}), flush=True)
    return {
        "n_tokens": idle["n_tokens"],
        "n_cuts": idle["n_cuts"],
        "policy": {"idle_threads": idle["torch_threads"], "omp_wait_policy": idle["omp_wait_policy"]},
        "old_policy": {"threads": old_idle["torch_threads"], "omp_wait_policy": old_idle["omp_wait_policy"]},
        "per_competitor": per,
        "engine_busy_over_idle": max(v["engine_busy_over_idle"] for v in per.values()),
        "idle_over_old_policy_idle": round(idle["engine_s"] / old_idle["engine_s"], 3),
    }
