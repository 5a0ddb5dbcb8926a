"""Derived data of a run (docs/architecture.md §5): projections, surfaces, landscapes cached as
``.npz`` files in ``<run dir>/derived/`` (or ``<cache>/derived/`` when the run folder is read-only).
Derived files are an optimisation: a missing or unreadable one is recomputed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from backend.errors import WriteError
from backend.store import atomic
from backend.store.schema import DERIVED_DIR

log = logging.getLogger(__name__)


def derived_dir(run, store=None) -> Path | None:
    """Where derived results for ``run`` are cached: ``<run dir>/derived`` (or the store's
    ``derived/`` when the run directory is read-only); None when neither is writable."""
    candidates = [Path(run.path) / DERIVED_DIR]
    if store is not None:
        candidates.append(Path(store.root) / DERIVED_DIR)
    for d in candidates:
        try:
            d.mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK):
                return d
        except OSError:
            continue
    return None


def save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically; raises ``WriteError`` naming the path."""
    atomic.write_npz(path, arrays)


def save_npz_or_warn(path: Path, arrays: dict[str, np.ndarray]) -> bool:
    """``save_npz_atomic``, logging (not raising) a failure: caching is an optimisation and a
    full or read-only cache must still show results. True if written."""
    try:
        save_npz_atomic(path, arrays)
    except WriteError as exc:
        log.warning("derived data not cached: %s", exc)
        return False
    return True


def load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """Arrays of a cached file, or None if it is missing or unreadable (then recomputed)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError):
        return None
