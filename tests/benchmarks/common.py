"""Shared helpers for the benchmark scripts: repo on sys.path, a synthetic trajectory of
exactly N tokens, medians, peak memory."""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REASONING = (
    "Maya starts with 5 apples. Two bags of 4 apples each add 8 more, so she has 13. "
    "Wait, let me check that: 5 + 8 = 13, yes.\n"
    "She gives 6 to her friend, leaving 7. Then she eats 1, so 7 - 1 = 6. "
    "However, I should verify the bags: 2 * 4 = 8. Hmm, that is right. "
)


def trajectory_ids(tokenizer, n_tokens: int) -> list[int]:
    """Token ids of a reasoning-like text, repeated and cut to exactly ``n_tokens``."""
    ids: list[int] = []
    while len(ids) < n_tokens:
        ids += tokenizer(REASONING, add_special_tokens=False)["input_ids"]
    return ids[:n_tokens]


def median_time(fn, repeats: int) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls (after the caller's warm-up) and the last result."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
