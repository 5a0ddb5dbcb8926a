"""tests/benchmarks/gpu_check.py on a machine without CUDA: one "no CUDA" line, exit code 0
(the GPU path itself needs a lent device; issue 23 item 5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_without_cuda_says_so_in_one_line_and_exits_0():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # no CUDA even where a GPU is present
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    assert lines[0].startswith("no CUDA: gpu_check.py needs a CUDA device")
    assert "nothing measured" in lines[0]
