"""Freed tensor memory goes back to the system between the engine's chunks (glibc; a no-op
elsewhere).

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), so after the
first few the engine's tensors of 1-32 MiB (probe chunks' masks and attention, the KV cache's
per-chunk views, LM-head readouts) come from the heap, where interleaved sizes fragment it and
the process keeps what it freed: SmolLM2 at 4,096 tokens held 2.7 GB above its start
(``tests/benchmarks/length_bench.py``, README "Research length"). ``trim`` (``malloc_trim(0)``)
hands the heap's free pages back; the engine calls it after each probe chunk and each LM-head
batch. A fixed threshold (``mallopt``) did the same but mapped every block of 1 MiB or more anew:
the test suite's system CPU doubled with it. ``RAML_MALLOC_DEFAULT=1`` turns ``trim`` off (to
measure against glibc's own behaviour).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim`` (None elsewhere, or with ``RAML_MALLOC_DEFAULT=1``), looked up once."""
    if not sys.platform.startswith("linux") or os.environ.get("RAML_MALLOC_DEFAULT") == "1":
        return None
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl and others: no malloc_trim
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def trim() -> bool:
    """Give the heap's free pages back to the system; True if glibc released any."""
    fn = _malloc_trim()
    return bool(fn(0)) if fn is not None else False
