"""Checks shared by the kinds that work on one stored run (one-line ``InputError``s)."""

from __future__ import annotations

import math

from backend.errors import InputError

GRID_MIN, GRID_MAX = 3, 41
SPAN_MAX = 100.0


def check_grid(kind: str, grid: int, span: float) -> None:
    if not GRID_MIN <= grid <= GRID_MAX:
        raise InputError(f"job kind '{kind}': grid {grid} must lie in {GRID_MIN}..{GRID_MAX}")
    if not (math.isfinite(span) and 0 < span <= SPAN_MAX):
        raise InputError(f"job kind '{kind}': span {span} must lie in (0, {SPAN_MAX:g}]")


def short(key: str) -> str:
    return key[:12]
