"""Freed tensor memory goes back to the system (glibc's malloc; a no-op elsewhere).

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), so after the
first few the engine's tensors of 1-32 MiB (probe chunks' masks and attention, the KV cache's
per-chunk views, LM-head readouts) come from the heap, where interleaved sizes fragment it and
the process keeps what it freed: SmolLM2 at 4,096 tokens held 2.67 GB above its start against
0.44 GB with a fixed threshold (``tests/benchmarks/length_bench.py``, README "Research length").
A fixed threshold of 1 MiB (``mallopt(M_MMAP_THRESHOLD)``, which also turns the raising off)
gives every block of 1 MiB or more its own mapping, returned when it is freed. Set once per
process, at ``import backend``; ``MALLOC_MMAP_THRESHOLD_`` in the environment takes precedence, and
``RAML_MALLOC_DEFAULT=1`` leaves glibc's own behaviour (to measure against it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MMAP_THRESHOLD_BYTES = 1 << 20
_state: dict[str, bool] = {}


def keep_heap_small(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes; False where there is no glibc ``mallopt``
    or the environment sets the threshold itself."""
    if "set" in _state:
        return _state["set"]
    ok = False
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ and os.environ.get("RAML_MALLOC_DEFAULT") != "1":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            ok = bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))
        except (OSError, AttributeError):  # musl, macOS, Windows: their allocators differ
            ok = False
    _state["set"] = ok
    return ok
