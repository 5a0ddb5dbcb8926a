"""Content-addressed run cache (docs/architecture.md §5).

Layout::

    <root>/runs/<key>/meta.json            schema, model, settings, timings, checksums
                      tokens.parquet       one row per cut point
                      steps.parquet        one row per step (boundary cut = step end)
                      lens.parquet         one row per (boundary, layer)
                      tensors.safetensors  hidden [K, L, d] fp16 + proxy z/preact fp32
    <root>/index.sqlite                    library table (WAL; DELETE with RAML_CACHE_NETWORK_FS=1),
                                           derived from the run dirs; written by the driver only
    <root>/locks/<key>.lock                per-key writer lock (removed with the run)
    (index.sqlite also maps generation requests to the run keys they produced)

Every name above is defined in ``backend.store.schema``; files are written through
``backend.store.atomic`` (mode 0644) and keys come from ``backend.store.hashing``.

A run is written into ``<root>/tmp/`` and renamed into place under a per-key file lock, so
readers never see half a run and concurrent writers of one key produce one entry. Every
file's sha256 and size is in ``meta.json`` and checked on open; a damaged entry raises
``CacheError`` naming the file and can be recomputed without touching any other run.

``RAML_TEST_PAUSE_AT=<stage>`` (tests only) makes the process print ``RAML_TEST_PAUSED <stage>``
to stderr and sleep at that stage, so a fault test can SIGKILL it there deterministically:
``write`` (temp files complete, before the rename), ``index`` (after the rename, before the
index row); the CLI adds ``generate`` and ``analyze``. With ``RAML_TEST_PAUSE_UNTIL=<path>`` the
pause ends as soon as that file exists (a test releases it when it has seen what it needs).
"""

from __future__ import annotations

import errno
import json
import logging
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

from backend import readonly
from backend.errors import CacheError, RunNotFoundError
from backend.store import atomic, schema
from backend.store.atomic import os_reason as _os_reason
from backend.store.hashing import RUN_KEY_LENGTH, content_hash, file_sha256
from backend.store.keys import match_key, normalize_prefix
from backend.store.schema import (
    INDEX_COLUMNS,
    KEY_PATTERN,
    REQUIRED_META,
    RUN_FILES,
    SCHEMA_VERSION,
    Meta,
    ModelMeta,
    SummaryMeta,
)

log = logging.getLogger(__name__)

NETWORK_FS_ENV = "RAML_CACHE_NETWORK_FS"  # "1": SQLite journal_mode=DELETE (WAL is unsafe on NFS/SMB)

_paused: set[str] = set()


def pause_for_tests(stage: str) -> None:
    """Fault-injection hook: sleep at ``stage`` if ``RAML_TEST_PAUSE_AT`` names it (once per process)."""
    if os.environ.get("RAML_TEST_PAUSE_AT") != stage or stage in _paused:
        return
    _paused.add(stage)
    print(f"RAML_TEST_PAUSED {stage}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + float(os.environ.get("RAML_TEST_PAUSE_SECONDS", "3600"))
    release = os.environ.get("RAML_TEST_PAUSE_UNTIL")
    while time.monotonic() < deadline and not (release and os.path.exists(release)):
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def default_root() -> Path:
    return Path(os.environ.get("RAML_CACHE_DIR", "cache"))


def content_key(payload: dict) -> str:
    """A run or request key: ``backend.store.hashing.content_hash`` at 32 hex characters."""
    return content_hash(payload, RUN_KEY_LENGTH)


def check_key(key: str) -> str:
    """Only the key alphabet is accepted: no paths, no traversal, bounded length."""
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        shown = key if isinstance(key, str) and len(key) <= 80 else f"{str(key)[:80]}..."
        raise RunNotFoundError(f"'{shown}' is not a run key (expected 16-64 lowercase hex characters)")
    return key


def _sha256(path: Path) -> str:
    return file_sha256(path)


def network_fs_default() -> bool:
    """Whether ``RAML_CACHE_NETWORK_FS`` asks for a network-filesystem-safe index."""
    return os.environ.get(NETWORK_FS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class RunSummary:
    """``meta.json`` → ``summary``: trajectory tokens n, steps K − 1, scored cut points C, L̂ at c = 0 and c = n."""

    n_tokens: int
    n_steps: int
    n_cuts: int | None
    initial_loss: float
    final_loss: float


class MetaView:
    """Typed accessors over a run's raw ``meta.json`` (``self.meta``): the only readers of meta
    field names outside ``backend.store``. Mixed into ``RunData`` and ``RunMeta``."""

    key: str
    meta: dict

    @property
    def question(self) -> str:
        return str(self.meta[Meta.QUESTION])

    @property
    def answer(self) -> str:
        return str(self.meta[Meta.ANSWER])

    @property
    def answer_source(self) -> str:
        """``reference`` (given) or ``self`` (the model's own final answer)."""
        return str(self.meta.get(Meta.ANSWER_SOURCE, ""))

    @property
    def predicted_answer(self) -> str | None:
        return self.meta.get(Meta.PREDICTED_ANSWER)

    @property
    def correct(self) -> bool | None:
        """Model's answer vs the reference; None when there is no reference."""
        value = self.meta.get(Meta.CORRECT)
        return None if value is None else bool(value)

    @property
    def label(self) -> str:
        return str(self.meta.get(Meta.LABEL) or "")

    @property
    def created(self) -> float | None:
        return self.meta.get(Meta.CREATED)

    @property
    def model_name(self) -> str:
        return str(self.meta[Meta.MODEL][ModelMeta.NAME])

    @property
    def model_fingerprint(self) -> str | None:
        return self.meta[Meta.MODEL].get(ModelMeta.FINGERPRINT)

    @property
    def n_layers(self) -> int:
        """L, decoder layers of the model."""
        return int(self.meta[Meta.MODEL][ModelMeta.N_LAYERS])

    @property
    def d_model(self) -> int | None:
        """d, hidden size (None when not recorded)."""
        value = self.meta[Meta.MODEL].get(ModelMeta.D_MODEL)
        return None if value is None else int(value)

    @property
    def summary(self) -> RunSummary:
        s = self.meta[Meta.SUMMARY]
        return RunSummary(
            n_tokens=int(s[SummaryMeta.N_TOKENS]),
            n_steps=int(s[SummaryMeta.N_STEPS]),
            n_cuts=None if s.get(SummaryMeta.N_CUTS) is None else int(s[SummaryMeta.N_CUTS]),
            initial_loss=float(s[SummaryMeta.INITIAL_LOSS]),
            final_loss=float(s[SummaryMeta.FINAL_LOSS]),
        )

    @property
    def n_tokens(self) -> int:
        """n, trajectory tokens."""
        return int(self.meta[Meta.SUMMARY][SummaryMeta.N_TOKENS])

    @property
    def prompt(self) -> str:
        return str(self.meta[Meta.PROMPT])

    @property
    def template(self) -> str:
        return str(self.meta[Meta.TEMPLATE])

    @property
    def answer_ids(self) -> list[int] | None:
        ids = self.meta.get(Meta.ANSWER_IDS)
        return None if not ids else [int(i) for i in ids]

    @property
    def trajectory(self) -> str:
        return str(self.meta.get(Meta.TRAJECTORY, ""))

    @property
    def first_answer_cut(self) -> int | None:
        return self.meta.get(Meta.FIRST_ANSWER_CUT)

    @property
    def settings(self) -> dict:
        """How the run was made: template, segmentation, cuts, generation settings, proxy layers."""
        return {
            "template": self.meta.get(Meta.TEMPLATE),
            "segmentation": self.meta.get(Meta.SEGMENTATION, ""),
            "cuts": self.meta.get(Meta.CUTS),
            "generation": dict(self.meta.get(Meta.GENERATION) or {}),
            "proxy_layers": self.proxy_layers,
            "analysis_version": self.meta.get(Meta.ANALYSIS_VERSION),
        }

    @property
    def segmentation(self) -> str:
        return str(self.meta.get(Meta.SEGMENTATION, ""))

    @property
    def generation(self) -> dict:
        """Generation settings (max_new_tokens, temperature, top_p, seed); for imported traces unused."""
        return dict(self.meta.get(Meta.GENERATION) or {})

    @property
    def trajectory_source(self) -> str:
        """``generated`` (by the scorer model), ``imported`` or ``remote`` (an OpenAI-compatible server)."""
        return str(self.meta.get(Meta.TRAJECTORY_SOURCE, ""))

    @property
    def generator(self) -> dict:
        return dict(self.meta.get(Meta.GENERATOR) or {})

    @property
    def grader(self) -> str | None:
        value = self.meta.get(Meta.GRADER)
        return None if value is None else str(value)

    @property
    def think_format(self) -> bool:
        return bool(self.meta.get(Meta.THINK_FORMAT))

    @property
    def cuts(self) -> str:
        return str(self.meta.get(Meta.CUTS, "all"))

    @property
    def parent(self) -> str | None:
        """A branch: the run it branched from (None for an ordinary run)."""
        value = self.meta.get(Meta.PARENT)
        return None if value is None else str(value)

    @property
    def branch_at(self) -> int | None:
        """A branch: the step (1..S, docs/architecture.md §3) it resampled or replaced."""
        return branch_step(self.meta)

    @property
    def origin(self) -> dict:
        """An imported record: what its file says beyond the trace (an eval log's sample id, epoch
        and scores; lm-eval's doc id and metrics; a rollout's chunk); empty otherwise."""
        return dict(self.meta.get(Meta.ORIGIN) or {})

    @property
    def cut_policy(self) -> dict:
        """How the cuts were chosen (backend.pipeline.cut_policy): requested, chosen, stride,
        budget and the estimate; empty for a run made before the policy."""
        return dict(self.meta.get(Meta.CUT_POLICY) or {})

    @property
    def branch(self) -> dict:
        """A branch: how it was made (kind, generation settings); empty for an ordinary run."""
        return dict(self.meta.get(Meta.BRANCH) or {})

    @property
    def timings(self) -> dict[str, float]:
        return dict(self.meta.get(Meta.TIMINGS) or {})

    @property
    def reflections(self) -> list[dict]:
        """Reflection words: ``{"word", "cut_before", "cut_after", ...}`` per mark."""
        return list(self.meta.get(Meta.REFLECTIONS) or [])

    @property
    def warnings(self) -> list[str]:
        return list(self.meta.get(Meta.WARNINGS) or [])

    @property
    def proxy_layers(self) -> list[int]:
        """Layers whose proxy tensors the run stores: ``meta.json`` → ``proxy_layers``; a run
        written without that field (hand-made, or older) falls back to the layers that have
        both proxy tensors in ``tensors.safetensors``."""
        stored = self.meta.get(Meta.PROXY_LAYERS)
        if stored is not None:
            return sorted(int(i) for i in stored)
        names = self.tensor_names() if isinstance(self, RunData) else []
        both = set(schema.layers_of(names, schema.PROXY_INPUT)) & set(schema.layers_of(names, schema.PROXY_PREACT))
        return sorted(both)

    def layers_available(self, space: str) -> list[int]:
        """Layers a space can show: ``hidden`` every layer 0..L−1, ``proxy`` the stored proxy layers."""
        if space == "hidden":
            return list(range(self.n_layers))
        if space == "proxy":
            return self.proxy_layers
        raise ValueError(f"unknown space {space!r}")


@dataclass
class RunMeta(MetaView):
    """A run's meta.json alone (cheap reads over many runs: ``RunStore.read_tokens``)."""

    key: str
    meta: dict


def branch_step(meta: dict) -> int | None:
    """The step a branch was made at, numbered 1..S (issue 25). Branches written before the
    numbering was recorded (``branch.step_base`` absent) counted steps from 0: shifted by one."""
    value = meta.get(Meta.BRANCH_AT)
    if value is None:
        return None
    base = (meta.get(Meta.BRANCH) or {}).get("step_base", 0)
    return int(value) + (1 - int(base))


@dataclass
class RunData(MetaView):
    """One cached run, as the app and CLI read it. Tensors load lazily per name.

    ``meta`` is the raw ``meta.json`` (for tests and debugging); code reads it through the typed
    properties of ``MetaView``.
    """

    key: str
    path: Path
    meta: dict
    tokens: pd.DataFrame
    steps: pd.DataFrame
    lens: pd.DataFrame

    # ------------------------------------------------------------------ tensors
    @contextmanager
    def _tensors(self):
        """The run's safetensors file; a damaged or vanished file raises ``CacheError``."""
        from safetensors import safe_open

        try:
            with safe_open(self.path / schema.TENSORS_FILE, framework="numpy") as f:
                yield f
        except (KeyError, IndexError):
            raise
        except Exception as exc:
            raise CacheError(f"run {self.key}: {schema.TENSORS_FILE} is unreadable ({type(exc).__name__})") from None

    def tensor_names(self) -> list[str]:
        with self._tensors() as f:
            return list(f.keys())

    def tensor(self, name: str) -> np.ndarray:
        """Load one stored array by its schema name (``schema.tensor_name``) as float32."""
        with self._tensors() as f:
            if name not in f.keys():
                raise KeyError(f"run {self.key} has no tensor '{name}'")
            return f.get_tensor(name).astype(np.float32)

    def hidden_layer(self, layer: int) -> np.ndarray:
        """Residual stream at the probe position after ``layer``, per boundary ``[K, d]``."""
        with self._tensors() as f:
            return f.get_slice(schema.HIDDEN)[:, layer, :].astype(np.float32)

    def proxy_input(self, layer: int) -> np.ndarray:
        """MLP input z_c at the probe position, per boundary ``[K, d]`` float32."""
        return self.tensor(schema.tensor_name(schema.PROXY_INPUT, layer))

    def proxy_preact(self, layer: int) -> np.ndarray:
        """MLP input projections W z_c at the probe position, per boundary ``[K, F]`` float32."""
        return self.tensor(schema.tensor_name(schema.PROXY_PREACT, layer))

    def boundary_cuts(self) -> np.ndarray:
        """Cut point of each boundary ``[K]`` int64."""
        return self.tensor(schema.BOUNDARY_CUTS).astype(np.int64)


def _truncated(path: Path) -> str:
    """A cut-short run file, seen from its ends alone ('' when whole): a Parquet file ends in
    ``PAR1``; a safetensors file is at least its header long. A few bytes read per file, so
    ``ls`` never says "ok" for a run whose files were truncated (checksums: ``open``)."""
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if path.suffix == ".parquet":
                if size < 12:
                    return "is truncated"
                head = fh.read(4)
                fh.seek(size - 4)
                return "" if head == b"PAR1" and fh.read(4) == b"PAR1" else "is truncated"
            if path.suffix == ".safetensors":  # its header says where the last tensor ends
                n = int.from_bytes(fh.read(8), "little")
                if size < 8 or not 0 < n <= min(size - 8, 16 << 20):
                    return "is truncated"
                header = json.loads(fh.read(n))
                end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
                return "" if 8 + n + end == size else "is truncated"
    except (ValueError, KeyError, TypeError, IndexError):
        return "is truncated"
    except OSError as exc:
        return f"is unreadable ({_os_reason(exc)})"
    return ""


FULL_BELOW_BYTES = 64 << 10  # a file system with less free space than this is full for SQLite


def sqlite_reason(exc: BaseException, folder: Path) -> str:
    """SQLite's error, naming a full disk as such: on a 100% full disk SQLite says only "disk
    I/O error" (it cannot create its journal or shared-memory file)."""
    text = str(exc)
    if "disk I/O error" in text or "disk is full" in text or "unable to open database" in text:
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return text
        if free < FULL_BELOW_BYTES:
            return f"disk full (no space left on device; SQLite said: {text})"
    return text


def save_tensors(save_file, tensors: dict, path: Path) -> None:
    """``safetensors``' ``save_file``, its own ``SafetensorError`` (a full disk is "os error 28")
    turned into the ``OSError`` it wraps, so the store's one failure path reports it."""
    try:
        save_file(tensors, str(path))
    except OSError:
        raise
    except Exception as exc:
        if type(exc).__name__ != "SafetensorError":
            raise
        text = str(exc)
        code = re.search(r"os error (\d+)|code: (\d+)", text)
        number = int(next(g for g in code.groups() if g)) if code else errno.EIO
        raise OSError(number, os.strerror(number)) from None


class RunStore:
    """The cache directory: write, open, list, delete runs; keeps the SQLite index in step.

    ``indexing=False`` (a batch worker): runs are written without touching the index at all;
    the driver indexes them afterwards with ``index_runs``. ``network_fs=True`` (default from
    ``RAML_CACHE_NETWORK_FS=1``): the index uses ``journal_mode=DELETE``, because SQLite's WAL
    mode needs shared memory that network filesystems (NFS, SMB) do not provide.
    """

    def __init__(self, root: str | Path | None = None, *, indexing: bool = True, network_fs: bool | None = None):
        self.root = Path(root) if root is not None else default_root()
        self.runs_dir = self.root / schema.RUNS_DIR
        self.tmp_dir = self.root / schema.TMP_DIR
        self.locks_dir = self.root / schema.LOCKS_DIR
        self.index_path = self.root / schema.INDEX_FILE
        self.indexing = indexing
        self.network_fs = network_fs_default() if network_fs is None else bool(network_fs)
        try:
            for d in (self.runs_dir, self.tmp_dir, self.locks_dir):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"cache directory {self.root} is not writable: {exc.strerror}") from None
        if self.indexing:
            self._init_index()
        if readonly.is_read_only():
            return  # a read-only server removes nothing, not even a killed writer's temp folder
        try:
            self.cleanup_tmp()
        except OSError:
            pass  # another process is cleaning up too

    # ------------------------------------------------------------------ index
    @property
    def journal_mode(self) -> str:
        return "DELETE" if self.network_fs else "WAL"

    @contextmanager
    def _db(self):
        """A connection to the index (WAL or DELETE journal, 30 s busy wait); SQLite failures become ``CacheError``."""
        try:
            con = sqlite3.connect(self.index_path, timeout=30)
        except sqlite3.Error as exc:
            raise CacheError(f"cache index {self.index_path} is unusable: {sqlite_reason(exc, self.root)}") from None
        try:
            con.execute("PRAGMA busy_timeout=30000")
            con.execute(f"PRAGMA journal_mode={self.journal_mode}")
            yield con
            con.commit()
        except sqlite3.Error as exc:
            raise CacheError(f"cache index {self.index_path}: {sqlite_reason(exc, self.root)}") from None
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
            aside = self.index_path.with_name(f"{schema.INDEX_FILE}.damaged-{int(time.time())}")
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
                "final_loss REAL, initial_loss REAL, created REAL, label TEXT, predicted_answer TEXT, grader TEXT)"
            )
            present = {row[1] for row in con.execute("PRAGMA table_info(runs)")}
            for column in ("predicted_answer", "grader"):  # indexes written before grading was recorded
                if column not in present:
                    con.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")
            con.execute("CREATE TABLE IF NOT EXISTS requests (request TEXT PRIMARY KEY, key TEXT)")
            have = {row[1] for row in con.execute("PRAGMA table_info(runs)")}
            for column, kind in (("parent", "TEXT"), ("branch_at", "INTEGER")):  # indexes from before branches
                if column not in have:
                    con.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")

    def _index_row(self, meta: dict) -> tuple:
        summary = meta.get(Meta.SUMMARY, {})
        return (
            meta[Meta.KEY],
            meta[Meta.QUESTION],
            meta[Meta.MODEL][ModelMeta.NAME],
            meta[Meta.ANSWER],
            meta[Meta.ANSWER_SOURCE],
            None if meta.get(Meta.CORRECT) is None else int(meta[Meta.CORRECT]),
            summary.get(SummaryMeta.N_TOKENS),
            summary.get(SummaryMeta.N_STEPS),
            summary.get(SummaryMeta.FINAL_LOSS),
            summary.get(SummaryMeta.INITIAL_LOSS),
            meta.get(Meta.CREATED),
            meta.get(Meta.LABEL, ""),
            meta.get(Meta.PREDICTED_ANSWER),
            meta.get(Meta.GRADER),
            meta.get(Meta.PARENT),
            branch_step(meta),
        )

    def _index_put(self, meta: dict) -> None:
        if not self.indexing:
            return
        with self._db() as con:
            con.execute(
                f"INSERT OR REPLACE INTO runs VALUES ({','.join('?' * len(INDEX_COLUMNS))})", self._index_row(meta)
            )

    def _require_indexing(self, what: str) -> None:
        if not self.indexing:
            raise CacheError(f"cache {self.root}: {what} needs the index, and this store was opened without it")

    def index_runs(self, keys) -> list[str]:
        """Index the complete runs among ``keys`` (written with ``indexing=False`` by workers);
        returns the keys indexed. Damaged or absent entries stay out (``list_runs`` reports them)."""
        self._require_indexing("index_runs")
        done = []
        for key in keys:
            meta, cause = self._read_meta_for_index(check_key(key))
            if meta is not None and not cause:
                self._index_put(meta)
                done.append(key)
        return done

    def remember_request(self, request_key: str, run_key: str) -> None:
        """Map a generation request (model + question + settings) to the run it produced
        (a store without the index leaves this to the driver)."""
        if not self.indexing:
            return
        with self._db() as con:
            con.execute("INSERT OR REPLACE INTO requests VALUES (?, ?)", (request_key, run_key))

    def run_for_request(self, request_key: str) -> str | None:
        if not self.indexing:
            return None  # a worker: the driver looked this up before sending the request
        with self._db() as con:
            row = con.execute("SELECT key FROM requests WHERE request = ?", (request_key,)).fetchone()
        if row and self.has(row[0]):
            return row[0]
        return None

    def list_runs(self) -> pd.DataFrame:
        """Library table, newest first: the index columns plus ``status`` (``ok`` or ``damaged``)
        and ``cause`` (one line, empty when ok). The index is reconciled with the run
        directories; a damaged entry is listed as damaged, never as healthy (cheap checks: meta
        readable with its own key, every file present; checksums are verified by ``open``)."""
        self._require_indexing("list_runs")
        damaged = self.reconcile()
        with self._db() as con:
            df = pd.read_sql_query("SELECT * FROM runs ORDER BY created DESC", con)
        causes = [self._cheap_damage(k) for k in df["key"]]
        df[schema.STATUS_COLUMNS[0]] = [schema.STATUS_DAMAGED if c else schema.STATUS_OK for c in causes]
        df[schema.STATUS_COLUMNS[1]] = causes
        if damaged:
            extra = pd.DataFrame(
                [
                    {
                        "key": k,
                        "question": "",
                        "model": "",
                        "answer": "",
                        "answer_source": "",
                        "label": "",
                        "created": created,
                        "status": schema.STATUS_DAMAGED,
                        "cause": cause,
                    }
                    for k, (cause, created) in damaged.items()
                ]
            )
            df = pd.concat([df, extra], ignore_index=True) if not df.empty else extra.reindex(columns=df.columns)
            df = df.sort_values("created", ascending=False, na_position="last", ignore_index=True)
        return df

    def newest_healthy_run(self, label: str | None = None, max_tries: int = 20) -> str | None:
        """The newest run that opens (checksums verified), preferring one labelled ``label``
        (e.g. ``demo``); None if no run opens. Damaged runs are skipped, not raised."""
        runs = self.list_runs()
        runs = runs[runs["status"] == schema.STATUS_OK]
        if label is not None:
            labelled = runs["label"].fillna("") == label
            runs = pd.concat([runs[labelled], runs[~labelled]])
        for key in runs["key"].tolist()[:max_tries]:
            try:
                self.open(key)
            except CacheError as exc:
                log.warning("skipping damaged run: %s", exc)
                continue
            return str(key)
        return None

    def _cheap_damage(self, key: str) -> str:
        """Damage visible without reading files: '' when meta.json and every run file are there."""
        try:
            present = set(os.listdir(self.runs_dir / key))  # one call per run, not one per file
        except OSError:
            return f"run {key}: its folder is unreadable or gone"
        for name in (schema.META_FILE, *RUN_FILES):
            if name not in present:
                return f"run {key}: {name} is missing"
        for name in RUN_FILES:
            problem = _truncated(self.runs_dir / key / name)
            if problem:
                return f"run {key}: {name} {problem} (damaged); recompute it"
        return ""

    def _read_meta_for_index(self, key: str) -> tuple[dict | None, str]:
        """(meta, damage cause) of a run folder, checked enough to index it."""
        path = self.runs_dir / key
        try:
            meta = json.loads((path / schema.META_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None, f"run {key}: {schema.META_FILE} is missing" if path.is_dir() else f"no run {key}"
        except (OSError, ValueError) as exc:
            return None, f"run {key}: {schema.META_FILE} is unreadable ({str(exc)[:120]})"
        cause = self._meta_damage(key, meta) or self._cheap_damage(key)
        if not cause:
            try:
                self._index_row(meta)
            except (KeyError, TypeError, ValueError) as exc:
                cause = f"run {key}: {schema.META_FILE} field {exc} is missing or invalid (damaged)"
        return meta, cause

    @staticmethod
    def _meta_damage(key: str, meta) -> str:
        """Structural damage of a parsed meta.json ('' when fine)."""
        if not isinstance(meta, dict):
            return f"run {key}: {schema.META_FILE} is not a JSON object (damaged)"
        if meta.get(Meta.SCHEMA_VERSION) != SCHEMA_VERSION:
            return (
                f"run {key}: {schema.META_FILE} has schema version {meta.get(Meta.SCHEMA_VERSION)!r}, "
                f"not {SCHEMA_VERSION} (old or damaged entry); recompute it"
            )
        if meta.get(Meta.KEY) != key:
            shown = str(meta.get(Meta.KEY))[:64]
            return (
                f"run {key}: {schema.META_FILE} belongs to run {shown} (folder copied or renamed); "
                "it is opened only under its own key"
            )
        for field_name, kind in REQUIRED_META.items():
            if not isinstance(meta.get(field_name), kind):
                return (
                    f"run {key}: {schema.META_FILE} field '{field_name}' is missing or not a "
                    f"{kind.__name__} (damaged); recompute it"
                )
        if not isinstance(meta[Meta.MODEL].get(ModelMeta.NAME), str):
            return f"run {key}: {schema.META_FILE} field 'model.name' is missing (damaged); recompute it"
        return ""

    def reconcile(self) -> dict[str, tuple[str, float]]:
        """Make the index agree with the directories (a crash between rename and insert, runs
        written by workers). Returns the run folders that cannot be indexed: key -> (cause, mtime)."""
        self._require_indexing("reconcile")
        on_disk = {p.name for p in self.runs_dir.iterdir() if p.is_dir() and KEY_PATTERN.match(p.name)}
        with self._db() as con:
            indexed = {r[0] for r in con.execute("SELECT key FROM runs")}
            for key in indexed - on_disk:
                con.execute("DELETE FROM runs WHERE key = ?", (key,))
        damaged: dict[str, tuple[str, float]] = {}
        for key in sorted(on_disk - indexed):
            meta, cause = self._read_meta_for_index(key)
            if meta is not None and not cause:
                try:
                    self._index_put(meta)
                    continue
                except CacheError as exc:
                    cause = str(exc)
            try:
                mtime = (self.runs_dir / key).stat().st_mtime
            except OSError:
                continue  # removed meanwhile
            damaged[key] = (cause, mtime)
        return damaged

    # ------------------------------------------------------------------ runs
    def resolve(self, key_or_prefix: str) -> str:
        """The full key of the run that ``key_or_prefix`` is or begins (a unique prefix of at
        least 4 hex characters, like git); one-line errors for too short, ambiguous or absent
        (``backend.store.keys``). Damaged runs count, so ``rm`` reaches them too."""
        prefix = normalize_prefix(key_or_prefix)
        try:
            names = [entry.name for entry in os.scandir(self.runs_dir) if entry.name.startswith(prefix)]
        except OSError as exc:
            raise CacheError(f"cannot list the runs of cache {self.root}: {_os_reason(exc)}") from None
        return match_key(prefix, names, f"cache {self.root}")

    def path(self, key: str) -> Path:
        return self.runs_dir / check_key(key)

    def has(self, key: str) -> bool:
        """A complete entry is there: meta.json readable with the current schema, its own key
        and the required fields, every file present at its recorded size. Cheap (no hashing); a
        damaged entry counts as absent, so an ordinary rerun recomputes it. Damage that keeps
        sizes (a bit flip, an edited checksum) is caught by ``open``'s checksums and recomputed
        with force."""
        path = self.path(key)
        try:
            meta = json.loads((path / schema.META_FILE).read_text())
            if not isinstance(meta, dict) or meta.get(Meta.SCHEMA_VERSION) != SCHEMA_VERSION:
                return False
            if meta.get(Meta.KEY) != key:
                return False
            if any(not isinstance(meta.get(name), kind) for name, kind in REQUIRED_META.items()):
                return False
            sizes = meta.get(Meta.SIZES, {})
            for name in RUN_FILES:
                size = (path / name).stat().st_size
                if name in sizes and sizes[name] != size:
                    return False
        except (OSError, ValueError):
            return False
        return True

    def stamp(self, key: str) -> float:
        """Changes when a run is recomputed (meta.json rewritten); 0.0 if it is missing."""
        try:
            return os.stat(self.path(key) / schema.META_FILE).st_mtime
        except OSError:
            return 0.0

    def lock_path(self, key: str) -> Path:
        return self.locks_dir / f"{check_key(key)}{schema.LOCK_SUFFIX}"

    @contextmanager
    def lock(self, key: str, timeout: float = 3600):
        """Exclusive per-key lock: one process computes a run while others wait for it."""
        with FileLock(str(self.lock_path(key)), timeout=timeout, mode=schema.FILE_MODE):
            yield

    def write(
        self,
        key: str,
        meta: dict,
        tokens: pd.DataFrame,
        steps: pd.DataFrame,
        lens: pd.DataFrame,
        tensors: dict[str, np.ndarray],
        *,
        index: bool | None = None,
    ) -> Path:
        """Atomically store a run (temp dir + rename) and, unless ``index`` is False (default:
        the store's ``indexing``), index it. Every file is mode 0644. Returns its directory.
        Refused on a read-only server (``backend.readonly``)."""
        from safetensors.numpy import save_file

        readonly.check("writing runs")
        check_key(key)
        index = self.indexing if index is None else index
        final = self.path(key)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=self.tmp_dir))
            os.chmod(tmp, schema.DIR_MODE)  # readable by other users of a shared cache, like any file here
        except OSError as exc:
            raise CacheError(f"cannot write to cache {self.root}: {_os_reason(exc)}") from None
        trash = None
        try:
            tokens.to_parquet(tmp / schema.TOKENS_FILE, index=False)
            steps.to_parquet(tmp / schema.STEPS_FILE, index=False)
            lens.to_parquet(tmp / schema.LENS_FILE, index=False)
            save_tensors(save_file, {k: np.ascontiguousarray(v) for k, v in tensors.items()}, tmp / schema.TENSORS_FILE)
            for name in RUN_FILES:  # data reaches the disk before the rename publishes it
                os.chmod(tmp / name, schema.FILE_MODE)
                atomic.fsync_file(tmp / name)
            meta = dict(meta)
            meta.update({Meta.KEY: key, Meta.SCHEMA_VERSION: SCHEMA_VERSION})
            meta[Meta.CREATED] = meta.get(Meta.CREATED, time.time())
            meta[Meta.CHECKSUMS] = {name: _sha256(tmp / name) for name in RUN_FILES}
            meta[Meta.SIZES] = {name: (tmp / name).stat().st_size for name in RUN_FILES}
            try:
                atomic.write_json(tmp / schema.META_FILE, meta, indent=1)
            except atomic.WriteError as exc:
                raise OSError(str(exc)) from None
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
                if index:
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
        if index:
            self._index_put(meta)  # a failure here is repaired by reconcile(): the run dir is complete
        return final

    def _discard(self, path: Path) -> None:
        trash = Path(tempfile.mkdtemp(prefix="trash.", dir=self.tmp_dir))
        os.rename(path, trash / path.name)
        shutil.rmtree(trash, ignore_errors=True)

    def open(self, key: str, verify: bool = True) -> RunData:
        """Read a run; raises ``RunNotFoundError`` or ``CacheError`` naming what is damaged.
        A folder is opened only under the key written in its meta.json."""
        path = self.path(key)
        meta_path = path / schema.META_FILE
        if not meta_path.is_file():
            if path.is_dir():
                raise CacheError(f"run {key}: {schema.META_FILE} is missing (damaged); recompute it or rm it")
            raise RunNotFoundError(f"no run {key} in cache {self.root}")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CacheError(f"run {key}: {schema.META_FILE} is unreadable ({str(exc)[:120]})") from None
        damage = self._meta_damage(key, meta)
        if damage:
            raise CacheError(damage)
        checksums = meta.get(Meta.CHECKSUMS)
        if verify and not isinstance(checksums, dict):
            raise CacheError(f"run {key}: {schema.META_FILE} has no checksums (damaged); recompute it")
        for name in RUN_FILES:
            if not (path / name).is_file():
                raise CacheError(f"run {key}: {name} is missing; recompute it")
            if verify and isinstance(checksums, dict) and checksums.get(name) != _sha256(path / name):
                raise CacheError(f"run {key}: {name} does not match its checksum (damaged); recompute it")
        frames = {}
        for name in (schema.TOKENS_FILE, schema.STEPS_FILE, schema.LENS_FILE):
            try:
                frames[name] = pd.read_parquet(path / name)
            except Exception as exc:
                raise CacheError(f"run {key}: {name} is unreadable ({type(exc).__name__}); recompute it") from None
        run = RunData(key, path, meta, frames[schema.TOKENS_FILE], frames[schema.STEPS_FILE], frames[schema.LENS_FILE])
        run.tensor_names()  # reads the safetensors header: a damaged one raises CacheError now
        return run

    def read_tokens(self, key: str, columns: list[str] | None = None) -> tuple[RunMeta, pd.DataFrame]:
        """(meta, tokens.parquet columns) of one run, tokens checked against its checksum: the
        cheap read for statistics over many runs. Raises ``CacheError`` naming the damage."""
        path = self.path(key)
        try:
            meta = json.loads((path / schema.META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CacheError(f"run {key}: {schema.META_FILE} is unreadable ({str(exc)[:120]})") from None
        damage = self._meta_damage(key, meta)
        if damage:
            raise CacheError(damage)
        tokens_path = path / schema.TOKENS_FILE
        expected = (meta.get(Meta.CHECKSUMS) or {}).get(schema.TOKENS_FILE)
        if not tokens_path.is_file() or expected != _sha256(tokens_path):
            raise CacheError(f"run {key}: {schema.TOKENS_FILE} is missing or damaged")
        try:
            tokens = pd.read_parquet(tokens_path, columns=columns)
        except Exception as exc:
            raise CacheError(f"run {key}: cannot read {schema.TOKENS_FILE} ({type(exc).__name__})") from None
        return RunMeta(key, meta), tokens

    def delete(self, key: str) -> bool:
        """Remove a run, its lock file and its index rows; returns False if it was not there.
        Refused on a read-only server (``backend.readonly``), before the key is looked at."""
        readonly.check("deleting runs")
        path = self.path(key)
        existed = path.exists()
        if existed:
            with self.lock(key):
                self._discard(path)
        self.lock_path(key).unlink(missing_ok=True)
        if self.indexing:
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
