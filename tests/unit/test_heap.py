"""Freed tensors go back to the system (``backend.engine.heap``): with glibc's own dynamic mmap
threshold, blocks of a few MiB freed between small blocks that stay alive are kept by the process;
with the threshold ``import backend`` fixes at 1 MiB they are unmapped. Real subprocesses (the
setting is per process), RSS read from /proc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What the engine does between its probe chunks: a large block freed (glibc then raises its
# threshold to its size), blocks of 8 MiB allocated between small ones that stay, then freed.
_SCRIPT = """
import json
import backend, torch
from backend.engine import heap

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

kept, big = [], []
torch.ones(4 << 20)  # 16 MiB, freed at once
before = rss_mb()
for _ in range(48):
    big.append(torch.ones(2 << 20))  # 8 MiB each, touched
    kept.append(torch.ones(256))  # 1 KiB each, kept
held = rss_mb() - before
del big
print(json.dumps({"set": heap.keep_heap_small(), "held_mb": held, "kept_mb": rss_mb() - before}))
"""


def _run(env_extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "RAML_MALLOC_DEFAULT")}
    env.update(env_extra, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_blocks_are_returned_with_the_fixed_threshold_and_kept_without_it():
    fixed = _run({})
    default = _run({"RAML_MALLOC_DEFAULT": "1"})
    assert fixed["set"] is True and default["set"] is False
    assert fixed["held_mb"] > 300 and default["held_mb"] > 300  # both really held the 384 MiB
    assert fixed["kept_mb"] < 64, fixed  # unmapped on free
    assert default["kept_mb"] > 300, default  # glibc's default keeps them (this is what grew the engine's peak)


def test_the_environment_s_own_threshold_is_left_alone():
    assert _run({"MALLOC_MMAP_THRESHOLD_": "4194304"})["set"] is False
