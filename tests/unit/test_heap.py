"""Freed tensors go back to the system (``backend.engine.heap``): with glibc's dynamic mmap
threshold, blocks of a few MiB freed between small blocks that stay alive are kept by the process
until ``heap.trim`` hands them back (the engine calls it after each probe chunk and LM-head batch).
Real subprocesses (glibc's state is per process), RSS read from /proc."""

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
freed = rss_mb() - before
released = heap.trim()
print(json.dumps({"held_mb": held, "after_free_mb": freed, "released": released, "after_trim_mb": rss_mb() - before}))
"""


def _run(env_extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "RAML_MALLOC_DEFAULT")}
    env.update(env_extra, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_blocks_kept_by_the_heap_are_handed_back_by_trim():
    r = _run({})
    assert r["held_mb"] > 300, r  # the 384 MiB were really held
    assert r["after_free_mb"] > 300, r  # glibc kept them after the free (this grew the engine's peak)
    assert r["released"] is True and r["after_trim_mb"] < 64, r


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_trim_can_be_turned_off_to_measure_against_glibc():
    r = _run({"RAML_MALLOC_DEFAULT": "1"})
    assert r["released"] is False and r["after_trim_mb"] > 300, r
