"""Content-addressed run cache (DESIGN.md §5).

Layout::

    <root>/runs/<key>/meta.json            schema, model, settings, timings, checksums
                      tokens.parquet       one row per cut point
                      steps.parquet        one row per step (boundary cut = step end)
                      lens.parquet         one row per (boundary, layer)
                      tensors.safetensors  hidden [B, L, d] + proxy z/preact, fp16
    <root>/index.sqlite                    library table (WAL), derived from the run dirs
    (index.sqlite also maps generation requests to the run keys they produced)

A run is written into ``<root>/tmp/`` and renamed into place under a per-key file lock, so
readers never see half a run and concurrent writers of one key produce one entry. Every
file's sha256 is in ``meta.json`` and checked on open; a damaged entry raises
``CacheError`` and can be recomputed without touching any other run.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock

from .errors import CacheError, RunNotFoundError

SCHEMA_VERSION = 1
KEY_PATTERN = re.compile(r"^[0-9a-f]{16,64}$")
RUN_FILES = ("tokens.parquet", "steps.parquet", "lens.parquet", "tensors.safetensors")
INDEX_COLUMNS = (
    "key", "question", "model", "answer", "answer_source", "correct", "n_tokens", "n_steps",
    "final_loss", "initial_loss", "created", "label",
)


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

    def tensor_names(self) -> list[str]:
        from safetensors import safe_open

        with safe_open(self.path / "tensors.safetensors", framework="numpy") as f:
            return list(f.keys())

    def tensor(self, name: str) -> np.ndarray:
        """Load one stored array (e.g. ``hidden``, ``proxy_preact.29``) as float32."""
        from safetensors import safe_open

        with safe_open(self.path / "tensors.safetensors", framework="numpy") as f:
            if name not in f.keys():
                raise KeyError(f"run {self.key} has no tensor '{name}'")
            return f.get_tensor(name).astype(np.float32)

    def hidden_layer(self, layer: int) -> np.ndarray:
        """Residual stream at the probe position after ``layer``, per boundary ``[B, d]``."""
        from safetensors import safe_open

        with safe_open(self.path / "tensors.safetensors", framework="numpy") as f:
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

    # ------------------------------------------------------------------ index
    @contextmanager
    def _db(self):
        con = sqlite3.connect(self.index_path, timeout=30)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA busy_timeout=30000")
            yield con
            con.commit()
        finally:
            con.close()

    def _init_index(self) -> None:
        try:
            with self._db() as con:
                con.execute(
                    "CREATE TABLE IF NOT EXISTS runs (key TEXT PRIMARY KEY, question TEXT, model TEXT, "
                    "answer TEXT, answer_source TEXT, correct INTEGER, n_tokens INTEGER, n_steps INTEGER, "
                    "final_loss REAL, initial_loss REAL, created REAL, label TEXT)"
                )
                con.execute("CREATE TABLE IF NOT EXISTS requests (request TEXT PRIMARY KEY, key TEXT)")
        except sqlite3.Error as exc:
            raise CacheError(f"cache index {self.index_path} is unusable: {exc}") from None

    def _index_row(self, meta: dict) -> tuple:
        summary = meta.get("summary", {})
        return (
            meta["key"], meta["question"], meta["model"]["name"], meta["answer"], meta["answer_source"],
            None if meta.get("correct") is None else int(meta["correct"]), summary.get("n_tokens"),
            summary.get("n_steps"), summary.get("final_loss"), summary.get("initial_loss"),
            meta.get("created"), meta.get("label", ""),
        )

    def _index_put(self, meta: dict) -> None:
        with self._db() as con:
            con.execute(f"INSERT OR REPLACE INTO runs VALUES ({','.join('?' * len(INDEX_COLUMNS))})", self._index_row(meta))

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
            except (OSError, ValueError, KeyError):
                continue  # a damaged entry stays out of the library; open() reports it

    # ------------------------------------------------------------------ runs
    def path(self, key: str) -> Path:
        return self.runs_dir / check_key(key)

    def has(self, key: str) -> bool:
        return (self.path(key) / "meta.json").is_file()

    @contextmanager
    def lock(self, key: str, timeout: float = 3600):
        """Exclusive per-key lock: one process computes a run while others wait for it."""
        with FileLock(str(self.locks_dir / f"{check_key(key)}.lock"), timeout=timeout):
            yield

    def write(self, key: str, meta: dict, tokens: pd.DataFrame, steps: pd.DataFrame, lens: pd.DataFrame,
              tensors: dict[str, np.ndarray]) -> Path:
        """Atomically store a run (temp dir + rename) and index it. Returns its directory."""
        from safetensors.numpy import save_file

        check_key(key)
        final = self.path(key)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=self.tmp_dir))
            os.chmod(tmp, 0o755)  # readable by other users of a shared cache, like any file here
        except OSError as exc:
            raise CacheError(f"cannot write to cache {self.root}: {exc.strerror}") from None
        try:
            tokens.to_parquet(tmp / "tokens.parquet", index=False)
            steps.to_parquet(tmp / "steps.parquet", index=False)
            lens.to_parquet(tmp / "lens.parquet", index=False)
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / "tensors.safetensors"))
            meta = dict(meta, key=key, schema_version=SCHEMA_VERSION, created=meta.get("created", time.time()))
            meta["checksums"] = {name: _sha256(tmp / name) for name in RUN_FILES}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False))
            for f in tmp.iterdir():  # data reaches the disk before the rename publishes it
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            if final.exists():  # a damaged entry being recomputed, or a concurrent writer won
                self._discard(final)
            os.rename(tmp, final)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CacheError(f"cannot write run {key} to {self.root}: {exc.strerror or exc}") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._index_put(meta)
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
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise CacheError(f"run {key}: meta.json is unreadable ({exc})") from None
        if not isinstance(meta, dict) or meta.get("schema_version") != SCHEMA_VERSION:
            found = meta.get("schema_version") if isinstance(meta, dict) else None
            raise CacheError(f"run {key}: schema version {found} is not {SCHEMA_VERSION}; recompute it")
        if verify:
            for name in RUN_FILES:
                expected = meta.get("checksums", {}).get(name)
                if not (path / name).is_file():
                    raise CacheError(f"run {key}: {name} is missing")
                if expected != _sha256(path / name):
                    raise CacheError(f"run {key}: {name} does not match its checksum (damaged)")
        try:
            tokens = pd.read_parquet(path / "tokens.parquet")
            steps = pd.read_parquet(path / "steps.parquet")
            lens = pd.read_parquet(path / "lens.parquet")
        except Exception as exc:
            raise CacheError(f"run {key}: cannot read parquet ({type(exc).__name__})") from None
        return RunData(key, path, meta, tokens, steps, lens)

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

    def cleanup_tmp(self, older_than_s: float = 3600) -> int:
        """Remove temp dirs left by killed writers; returns how many were removed."""
        removed, now = 0, time.time()
        for p in self.tmp_dir.iterdir():
            if now - p.stat().st_mtime > older_than_s:
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
        return removed
