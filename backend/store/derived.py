"""The one derived-data cache (docs/architecture.md §5): kind + parameters -> one key -> one file.

Derived data (projections, surfaces, landscapes, the exact update, step importance, dataset
claims) is addressed by a ``schema.DerivedKind`` and a JSON-able ``params`` dict:

* key: ``hashing.content_hash`` of ``{"kind", "version", "run", "params"}`` (canonical sorted
  JSON, ``DERIVED_KEY_LENGTH`` hex characters): ``derived_key``;
* file: ``<run dir>/derived/<kind>-<key><suffix>`` — or ``<cache>/derived/`` when the run folder
  is read-only — and ``<cache>/aggregates/<kind>-<key><suffix>`` for a kind of a set of runs
  (``scope="store"``): ``derived_path``;
* ``save_derived`` writes arrays (``.npz``, no pickles) or one JSON object (``.json``) through the
  one atomic write (``backend.store.atomic``: temp file, fsync, ``os.replace``, fsync of the folder);
* ``load_derived`` reads it back; a missing or unreadable file is None (then recomputed).

Failure policy: caching is an optimisation. A write that fails for any ``OSError`` (disk full,
read-only file system, permissions) logs one warning line and ``save_derived`` returns that
line; the caller still returns (and the page still shows) what it computed. Inside
``collect_warnings()`` the lines are also gathered for the job that is running. A failed write
never touches the file already there (the atomic write replaces it whole or not at all).
A read-only server (``backend.readonly``) writes no derived data at all: ``save_derived`` returns
without writing (and without a warning: nothing failed) and there is no exports folder.
"""

from __future__ import annotations

import contextvars
import io
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from backend import readonly
from backend.errors import WriteError
from backend.store import atomic
from backend.store.hashing import DERIVED_KEY_LENGTH, content_hash
from backend.store.schema import AGGREGATES_DIR, DERIVED_DIR, DIR_MODE, EXPORTS_DIR, DerivedKind

log = logging.getLogger(__name__)

NOT_CACHED = "derived data not cached"  # the start of every warning line of a failed write

_warnings: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("derived_warnings", default=None)


# ---------------------------------------------------------------------------- addressing
def derived_key(kind: DerivedKind, params: dict, run=None) -> str:
    """The one key of derived data: ``content_hash`` of kind, version, the run's key (None for a
    kind of a set of runs) and ``params`` (JSON-able: plain ints, floats, strings, lists, dicts)."""
    payload = {"kind": kind.name, "version": kind.version, "run": None if run is None else run.key, "params": params}
    return content_hash(payload, DERIVED_KEY_LENGTH)


def _folders(store, run, scope: str = "run") -> list[Path]:
    """Where derived data of ``scope`` may live, in order of preference."""
    if scope == "store":
        return [] if store is None else [Path(store.root) / AGGREGATES_DIR]
    if run is None:
        raise ValueError("derived data of a run needs the run")
    shared = [] if store is None else [Path(store.root) / DERIVED_DIR]
    run_dir = Path(run.path)
    if run_dir.is_symlink() or (run_dir / DERIVED_DIR).is_symlink():
        return shared  # never written through a link to somewhere outside the cache
    return [run_dir / DERIVED_DIR] + shared


def derived_paths(store, run, kind: DerivedKind, params: dict) -> list[Path]:
    """Every place the file may be, in order of preference (the run's folder first)."""
    name = kind.file_name(derived_key(kind, params, run if kind.scope == "run" else None))
    return [folder / name for folder in _folders(store, run, kind.scope)]


def derived_path(store, run, kind: DerivedKind, params: dict) -> Path | None:
    """The cached file if there is one, else where ``save_derived`` writes first (None when the
    kind belongs to a set of runs and there is no store)."""
    paths = derived_paths(store, run, kind, params)
    return next((p for p in paths if p.is_file()), paths[0] if paths else None)


def derived_dir(run, store=None) -> Path | None:
    """The run's writable derived-data folder (created): ``<run dir>/derived``, or the cache's
    ``derived/`` when the run folder is read-only; None when neither can be written, or on a
    read-only server."""
    if readonly.is_read_only():
        return None
    for folder in _folders(store, run):
        try:
            _make_folder(folder)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    return None


def exports_dir(run, store=None) -> Path | None:
    """``<derived>/exports/`` of the run (created), for its figure and table files; None if not writable."""
    base = derived_dir(run, store)
    if base is None:
        return None
    try:
        (base / EXPORTS_DIR).mkdir(exist_ok=True)
    except OSError:
        return None
    return base / EXPORTS_DIR


def derived_stamp(run, store=None) -> str:
    """Changes whenever derived data of ``run`` is written, replaced or removed (names, sizes and
    mtimes of its derived folders: the run's own and the cache's shared one). A page cache keys on
    it beside the run's stamp, which derived files never change."""
    parts = []
    for folder in _folders(store, run):
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat()
            except OSError:
                continue
            if entry.is_file():
                parts.append(f"{entry.name}:{info.st_size}:{info.st_mtime_ns}")
    return content_hash(parts, DERIVED_KEY_LENGTH) if parts else ""


# ---------------------------------------------------------------------------- load
def load_npz(path: Path, members: tuple[str, ...] | None = None) -> dict[str, np.ndarray] | None:
    """Arrays of a cached ``.npz`` (only ``members`` when given), or None if it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            names = f.files if members is None else [m for m in members if m in f.files]
            return {k: f[k] for k in names}
    except (OSError, ValueError, EOFError, KeyError):
        return None


def _load_json(path: Path) -> dict | None:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def load_derived(
    store, run, kind: DerivedKind, params: dict, *, members: tuple[str, ...] | None = None
) -> dict[str, Any] | None:
    """The cached data (arrays by name for ``.npz``, only ``members`` when given; the object for
    ``.json``), or None when it was never computed or its file is unreadable (then recomputed)."""
    for path in derived_paths(store, run, kind, params):
        if path.is_file():
            data = load_npz(path, members) if kind.suffix == ".npz" else _load_json(path)
            if data is not None:
                return data
    return None


# ---------------------------------------------------------------------------- save
def _encode(suffix: str, data: dict) -> bytes:
    if suffix == ".npz":
        buffer = io.BytesIO()
        np.savez(buffer, **data)
        return buffer.getvalue()
    if suffix == ".json":
        return json.dumps(data, ensure_ascii=False).encode("utf-8")
    raise ValueError(f"unknown derived-data suffix {suffix!r}")


def _try_write(path: Path, payload: bytes, *, make_folder: bool = False) -> str | None:
    """None when ``payload`` replaced ``path`` atomically, else why not (one line)."""
    try:
        if make_folder:
            _make_folder(path.parent)
        atomic.write_bytes(path, payload)
    except WriteError as exc:  # the atomic write's own one-line error naming the path
        return str(exc)
    except OSError as exc:  # creating the folder
        return f"cannot write {path}: {atomic.os_reason(exc)}"
    return None


def _make_folder(folder: Path) -> None:
    """``folder`` (and parents), readable by the other users of a shared cache like its files
    (0755 whatever the umask: a 0700 ``derived/`` hid 0644 files)."""
    if folder.is_dir():
        return
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, DIR_MODE)


def _warn(reason: str) -> str:
    message = f"{NOT_CACHED}: {reason}"
    log.warning("%s", message)
    collected = _warnings.get()
    if collected is not None:
        collected.append(message)
    return message


def save_derived(store, run, kind: DerivedKind, params: dict, data: dict) -> str | None:
    """Cache ``data`` (arrays for ``.npz``, a JSON-able dict for ``.json``) under kind + params.

    Tries the run's folder, then the cache's ``derived/``. Returns None when written, else the
    one warning line naming each file tried and why it failed (logged, and collected inside
    ``collect_warnings``): the caller goes on with what it computed. Never raises for a file-system failure; never damages a cached file.
    On a read-only server nothing is written and None is returned (``backend.readonly``).
    """
    if readonly.is_read_only():
        log.debug("derived data not cached: this server is read-only")
        return None
    paths = derived_paths(store, run, kind, params)
    if not paths:
        return _warn(f"{kind.name} has no cache folder to be written to")
    payload = _encode(kind.suffix, data)
    reasons = []
    for path in paths:
        reason = _try_write(path, payload, make_folder=True)
        if reason is None:
            return None
        reasons.append(reason)
    return _warn("; ".join(reasons))


def save_npz_or_warn(path: Path, arrays: dict[str, np.ndarray]) -> bool:
    """Write ``arrays`` to ``path`` atomically, logging (not raising) a failure. True if written
    (False, silently, on a read-only server)."""
    if readonly.is_read_only():
        return False
    reason = _try_write(path, _encode(".npz", arrays))
    if reason is not None:
        _warn(reason)
    return reason is None


@contextmanager
def collect_warnings() -> Iterator[list[str]]:
    """Gather the warning lines of the derived writes that fail inside the block (for a job to report)."""
    collected: list[str] = []
    token = _warnings.set(collected)
    try:
        yield collected
    finally:
        _warnings.reset(token)
