"""Content-addressed run cache (docs/architecture.md §5).

Layout::

    <root>/runs/<key>/meta.json            schema, model, settings, timings, checksums
                      tokens.parquet       one row per cut point
                      steps.parquet        one row per step (boundary cut = step end)
                      lens.parquet         one row per (boundary, layer)
                      tensors.safetensors  hidden [K, L, d] fp16 + proxy z/preact fp32
    <root>/index.sqlite                    library table (WAL), derived from the run dirs
    (index.sqlite also maps generation requests to the run keys they produced)

A run is written into ``<root>/tmp/`` and renamed into place under a per-key file lock, so
readers never see half a run and concurrent writers of one key produce one entry. Every
file's sha256 and size is in ``meta.json`` and checked on open; a damaged entry raises
``CacheError`` naming the file and can be recomputed without touching any other run.

``RAML_TEST_PAUSE_AT=<stage>`` (tests only) makes the process print ``RAML_TEST_PAUSED <stage>``
to stderr and sleep at that stage, so a fault test can SIGKILL it there deterministically:
``write`` (temp files complete, before the rename), ``index`` (after the rename, before the
index row); the CLI adds ``generate`` and ``analyze``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock

from backend.errors import CacheError, RunNotFoundError

SCHEMA_VERSION = 1
KEY_PATTERN = re.compile(r"^[0-9a-f]{16,64}\Z")  # \Z, not $: "$" also matches before a final newline
RUN_FILES = ("tokens.parquet", "steps.parquet", "lens.parquet", "tensors.safetensors")
# meta.json fields the library and the CLI read without checking; an entry lacking one is damaged
REQUIRED_META = {"question": str, "answer": str, "answer_source": str, "model": dict, "summary": dict}
INDEX_COLUMNS = (
    "key",
    "question",
    "model",
    "answer",
    "answer_source",
    "correct",
    "n_tokens",
    "n_steps",
    "final_loss",
    "initial_loss",
    "created",
    "label",
    "parent",  # branches (issue 13): the run this one branched from, and the step it branched at
    "branch_at",
)


_paused: set[str] = set()


def pause_for_tests(stage: str) -> None:
    """Fault-injection hook: sleep at ``stage`` if ``RAML_TEST_PAUSE_AT`` names it (once per process)."""
    if os.environ.get("RAML_TEST_PAUSE_AT") != stage or stage in _paused:
        return
    _paused.add(stage)
    print(f"RAML_TEST_PAUSED {stage}", file=sys.stderr, flush=True)
    time.sleep(float(os.environ.get("RAML_TEST_PAUSE_SECONDS", "3600")))


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "disk full (no space left on device)"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"not writable ({exc.strerror})"
    return exc.strerror or str(exc)


def default_root() -> Path:
    return Path(os.environ.get("RAML_CACHE_DIR", "cache"))


def content_key(payload: dict) -> str:
    """sha256 of a canonical JSON encoding, shortened to 32 hex characters."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def check_key(key: str) -> str:
    """Only the key alphabet is accepted: no paths, no traversal, bounded length."""
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        shown = key if isinstance(key, str) and len(key) <= 80 else f"{str(key)[:80]}..."
        raise RunNotFoundError(f"'{shown}' is not a run key (expected 16-64 lowercase hex characters)")
    return key


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class RunData:
    """One cached run, as the app and CLI read it. Tensors load lazily per name."""

    key: str
    path: Path
    meta: dict
    tokens: pd.DataFrame
    steps: pd.DataFrame
    lens: pd.DataFrame

    @contextmanager
    def _tensors(self):
        """The run's safetensors file; a damaged or vanished file raises ``CacheError``."""
        from safetensors import safe_open

        try:
            with safe_open(self.path / "tensors.safetensors", framework="numpy") as f:
                yield f
        except (KeyError, IndexError):
            raise
        except Exception as exc:
            raise CacheError(f"run {self.key}: tensors.safetensors is unreadable ({type(exc).__name__})") from None

    def tensor_names(self) -> list[str]:
        with self._tensors() as f:
            return list(f.keys())

    def tensor(self, name: str) -> np.ndarray:
        """Load one stored array (e.g. ``hidden``, ``proxy_preact.29``) as float32."""
        with self._tensors() as f:
            if name not in f.keys():
                raise KeyError(f"run {self.key} has no tensor '{name}'")
            return f.get_tensor(name).astype(np.float32)

    def hidden_layer(self, layer: int) -> np.ndarray:
        """Residual stream at the probe position after ``layer``, per boundary ``[B, d]``."""
        with self._tensors() as f:
            return f.get_slice("hidden")[:, layer, :].astype(np.float32)


class RunStore:
    """The cache directory: write, open, list, delete runs; keeps the SQLite index in step."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()
        self.runs_dir = self.root / "runs"
        self.tmp_dir = self.root / "tmp"
        self.locks_dir = self.root / "locks"
        self.index_path = self.root / "index.sqlite"
        try:
            for d in (self.runs_dir, self.tmp_dir, self.locks_dir):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"cache directory {self.root} is not writable: {exc.strerror}") from None
        self._init_index()
        try:
            self.cleanup_tmp()
        except OSError:
            pass  # another process is cleaning up too

    # ------------------------------------------------------------------ index
    @contextmanager
    def _db(self):
        """A connection to the index (WAL, 30 s busy wait); SQLite failures become ``CacheError``."""
        try:
            con = sqlite3.connect(self.index_path, timeout=30)
        except sqlite3.Error as exc:
            raise CacheError(f"cache index {self.index_path} is unusable: {exc}") from None
        try:
            con.execute("PRAGMA busy_timeout=30000")
            con.execute("PRAGMA journal_mode=WAL")
            yield con
            con.commit()
        except sqlite3.Error as exc:
            raise CacheError(f"cache index {self.index_path}: {exc}") from None
        finally:
            con.close()

    def _init_index(self) -> None:
        """Create the index tables; an index that is not a database is set aside and rebuilt
        from the run directories (it is derived data: no run is lost)."""
        try:
            self._create_tables()
        except CacheError as exc:
            if "not a database" not in str(exc) and "malformed" not in str(exc):
                raise
            aside = self.index_path.with_name(f"index.sqlite.damaged-{int(time.time())}")
            try:
                os.replace(self.index_path, aside)
                for suffix in ("-wal", "-shm"):
                    Path(f"{self.index_path}{suffix}").unlink(missing_ok=True)
            except OSError:
                raise exc from None
            self._create_tables()
            self.reconcile()

    def _create_tables(self) -> None:
        with self._db() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS runs (key TEXT PRIMARY KEY, question TEXT, model TEXT, "
                "answer TEXT, answer_source TEXT, correct INTEGER, n_tokens INTEGER, n_steps INTEGER, "
                "final_loss REAL, initial_loss REAL, created REAL, label TEXT)"
            )
            con.execute("CREATE TABLE IF NOT EXISTS requests (request TEXT PRIMARY KEY, key TEXT)")
            have = {row[1] for row in con.execute("PRAGMA table_info(runs)")}
            for column, kind in (("parent", "TEXT"), ("branch_at", "INTEGER")):  # indexes from before branches
                if column not in have:
                    con.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")

    def _index_row(self, meta: dict) -> tuple:
        summary = meta.get("summary", {})
        return (
            meta["key"],
            meta["question"],
            meta["model"]["name"],
            meta["answer"],
            meta["answer_source"],
            None if meta.get("correct") is None else int(meta["correct"]),
            summary.get("n_tokens"),
            summary.get("n_steps"),
            summary.get("final_loss"),
            summary.get("initial_loss"),
            meta.get("created"),
            meta.get("label", ""),
            meta.get("parent"),
            meta.get("branch_at"),
        )

    def _index_put(self, meta: dict) -> None:
        with self._db() as con:
            con.execute(
                f"INSERT OR REPLACE INTO runs VALUES ({','.join('?' * len(INDEX_COLUMNS))})", self._index_row(meta)
            )

    def remember_request(self, request_key: str, run_key: str) -> None:
        """Map a generation request (model + question + settings) to the run it produced."""
        with self._db() as con:
            con.execute("INSERT OR REPLACE INTO requests VALUES (?, ?)", (request_key, run_key))

    def run_for_request(self, request_key: str) -> str | None:
        with self._db() as con:
            row = con.execute("SELECT key FROM requests WHERE request = ?", (request_key,)).fetchone()
        if row and self.has(row[0]):
            return row[0]
        return None

    def list_runs(self) -> pd.DataFrame:
        """Library table, newest first; the index is reconciled with the run directories."""
        self.reconcile()
        with self._db() as con:
            df = pd.read_sql_query("SELECT * FROM runs ORDER BY created DESC", con)
        return df

    def reconcile(self) -> None:
        """Make the index agree with the directories (a crash between rename and insert)."""
        on_disk = {p.name for p in self.runs_dir.iterdir() if p.is_dir() and KEY_PATTERN.match(p.name)}
        with self._db() as con:
            indexed = {r[0] for r in con.execute("SELECT key FROM runs")}
            for key in indexed - on_disk:
                con.execute("DELETE FROM runs WHERE key = ?", (key,))
        for key in on_disk - indexed:
            try:
                self._index_put(json.loads((self.runs_dir / key / "meta.json").read_text()))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged entry stays out of the library; open() reports it

    # ------------------------------------------------------------------ runs
    def path(self, key: str) -> Path:
        return self.runs_dir / check_key(key)

    def has(self, key: str) -> bool:
        """A complete entry is there: meta.json readable with the current schema and required
        fields, every file present at its recorded size. Cheap (no hashing); a damaged entry
        counts as absent, so an ordinary rerun recomputes it. Damage that keeps sizes (a bit
        flip, an edited checksum) is caught by ``open``'s checksums and recomputed with force."""
        path = self.path(key)
        try:
            meta = json.loads((path / "meta.json").read_text())
            if not isinstance(meta, dict) or meta.get("schema_version") != SCHEMA_VERSION:
                return False
            if any(not isinstance(meta.get(name), kind) for name, kind in REQUIRED_META.items()):
                return False
            sizes = meta.get("sizes", {})
            for name in RUN_FILES:
                size = (path / name).stat().st_size
                if name in sizes and sizes[name] != size:
                    return False
        except (OSError, ValueError):
            return False
        return True

    @contextmanager
    def lock(self, key: str, timeout: float = 3600):
        """Exclusive per-key lock: one process computes a run while others wait for it."""
        with FileLock(str(self.locks_dir / f"{check_key(key)}.lock"), timeout=timeout):
            yield

    def write(
        self,
        key: str,
        meta: dict,
        tokens: pd.DataFrame,
        steps: pd.DataFrame,
        lens: pd.DataFrame,
        tensors: dict[str, np.ndarray],
    ) -> Path:
        """Atomically store a run (temp dir + rename) and index it. Returns its directory."""
        from safetensors.numpy import save_file

        check_key(key)
        final = self.path(key)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=self.tmp_dir))
            os.chmod(tmp, 0o755)  # readable by other users of a shared cache, like any file here
        except OSError as exc:
            raise CacheError(f"cannot write to cache {self.root}: {_os_reason(exc)}") from None
        trash = None
        try:
            tokens.to_parquet(tmp / "tokens.parquet", index=False)
            steps.to_parquet(tmp / "steps.parquet", index=False)
            lens.to_parquet(tmp / "lens.parquet", index=False)
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / "tensors.safetensors"))
            meta = dict(meta, key=key, schema_version=SCHEMA_VERSION, created=meta.get("created", time.time()))
            meta["checksums"] = {name: _sha256(tmp / name) for name in RUN_FILES}
            meta["sizes"] = {name: (tmp / name).stat().st_size for name in RUN_FILES}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False))
            for f in tmp.iterdir():  # data reaches the disk before the rename publishes it
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            pause_for_tests("write")
            if final.exists():  # a damaged entry being recomputed: move it aside, delete it after
                trash = Path(tempfile.mkdtemp(prefix="trash.", dir=self.tmp_dir))
                os.rename(final, trash / final.name)
            os.rename(tmp, final)
        except (OSError, UnicodeError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if trash is not None and not final.exists():  # put the old entry back
                try:
                    os.rename(trash / final.name, final)
                except OSError:
                    pass
            if isinstance(exc, OSError) and exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and self.has(key):
                self._index_put(meta)  # a writer without the key lock renamed the same content first
                return final
            reason = (
                _os_reason(exc)
                if isinstance(exc, OSError)
                else f"text is not valid unicode ({getattr(exc, 'reason', exc)})"
            )
            raise CacheError(f"cannot write run {key} to {self.root}: {reason}") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
        pause_for_tests("index")
        self._index_put(meta)  # a failure here is repaired by reconcile(): the run dir is complete
        return final

    def _discard(self, path: Path) -> None:
        trash = Path(tempfile.mkdtemp(prefix="trash.", dir=self.tmp_dir))
        os.rename(path, trash / path.name)
        shutil.rmtree(trash, ignore_errors=True)

    def open(self, key: str, verify: bool = True) -> RunData:
        """Read a run; raises ``RunNotFoundError`` or ``CacheError`` naming what is damaged."""
        path = self.path(key)
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            raise RunNotFoundError(f"no run {key} in cache {self.root}")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CacheError(f"run {key}: meta.json is unreadable ({str(exc)[:120]})") from None
        if not isinstance(meta, dict):
            raise CacheError(f"run {key}: meta.json is not a JSON object (damaged)")
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise CacheError(
                f"run {key}: meta.json has schema version {meta.get('schema_version')!r}, "
                f"not {SCHEMA_VERSION} (old or damaged entry); recompute it"
            )
        for field_name, kind in REQUIRED_META.items():
            if not isinstance(meta.get(field_name), kind):
                raise CacheError(
                    f"run {key}: meta.json field '{field_name}' is missing or not a "
                    f"{kind.__name__} (damaged); recompute it"
                )
        if not isinstance(meta["model"].get("name"), str):
            raise CacheError(f"run {key}: meta.json field 'model.name' is missing (damaged); recompute it")
        checksums = meta.get("checksums")
        if verify and not isinstance(checksums, dict):
            raise CacheError(f"run {key}: meta.json has no checksums (damaged); recompute it")
        for name in RUN_FILES:
            if not (path / name).is_file():
                raise CacheError(f"run {key}: {name} is missing; recompute it")
            if verify and isinstance(checksums, dict) and checksums.get(name) != _sha256(path / name):
                raise CacheError(f"run {key}: {name} does not match its checksum (damaged); recompute it")
        frames = {}
        for name in ("tokens", "steps", "lens"):
            try:
                frames[name] = pd.read_parquet(path / f"{name}.parquet")
            except Exception as exc:
                raise CacheError(
                    f"run {key}: {name}.parquet is unreadable ({type(exc).__name__}); recompute it"
                ) from None
        run = RunData(key, path, meta, frames["tokens"], frames["steps"], frames["lens"])
        run.tensor_names()  # reads the safetensors header: a damaged one raises CacheError now
        return run

    def delete(self, key: str) -> bool:
        """Remove a run and its index row; returns False if it was not there."""
        path = self.path(key)
        existed = path.exists()
        if existed:
            with self.lock(key):
                self._discard(path)
        with self._db() as con:
            con.execute("DELETE FROM runs WHERE key = ?", (key,))
            con.execute("DELETE FROM requests WHERE key = ?", (key,))
        return existed

    def children(self, key: str) -> list[str]:
        """Keys of the runs that branched from ``key`` (index column ``parent``), oldest first."""
        with self._db() as con:
            rows = con.execute("SELECT key FROM runs WHERE parent = ? ORDER BY created", (check_key(key),)).fetchall()
        return [r[0] for r in rows]

    def cleanup_tmp(self, older_than_s: float = 3600) -> int:
        """Remove temp dirs left by killed writers; returns how many were removed."""
        removed, now = 0, time.time()
        for p in self.tmp_dir.iterdir():
            try:
                age = now - p.stat().st_mtime
            except FileNotFoundError:
                continue  # removed by another process meanwhile
            if age > older_than_s:
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
        return removed
