"""The job queue: every long computation (new run, import, batch, importance, branches,
surfaces, landscapes, the exact update, image export) is a job = kind + JSON params, owned by
the backend rather than by a page's script run (docs/jobs.md).

This module knows no kind: a ``JobQueue`` is given a registry (``backend.jobs.registry``) that
validates params at submit and runs a job's kind; ``JobContext`` is everything a kind may use.

State lives in ``<cache root>/jobs.sqlite`` beside the run index: one row per job with its
state (queued → running → finished | failed | cancelled), progress (stage, done, total),
times, the run keys it produced and its messages. A ``Worker`` thread per server process
claims queued jobs one at a time and holds a per-device file lock while a job runs, so two
servers (or a server and a CLI batch) on one machine never run two heavy jobs on one device.

Cancel is cooperative: ``cancel`` flags the row and the job stops at its next progress
report (between probe chunks, questions or grid points). A claimed job is ``waiting`` while it
waits for the device lock (another job holds the device), then ``running``. While a job is
claimed its owner stamps ``heartbeat`` every ``HEARTBEAT_S`` from a thread of its own (a model
load reports no progress for a while). A server killed mid-job leaves the row with a dead
owner (its process is gone, or on another host its heartbeat is older than
``STALE_HEARTBEAT_S``); any worker on that cache, every poll and also while it runs a job of its
own, marks it ``failed`` with ``resumable = 1`` (runs are written atomically, so nothing partial
exists); ``cancel`` of such a job cancels it at once; ``resume`` queues it again (the runs it
already finished are cache hits).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from filelock import FileLock

from backend import readonly
from backend.errors import CacheError, InputError, RamlError
from backend.store.derived import collect_warnings
from backend.store.runs import RunStore

log = logging.getLogger(__name__)

JOBS_DB = "jobs.sqlite"
STATES = ("queued", "waiting", "running", "finished", "failed", "cancelled")
ACTIVE = ("queued", "waiting", "running")
OWNED = ("waiting", "running")  # claimed by a worker: the states a dead owner can leave behind
PROGRESS_WRITE_INTERVAL_S = 0.25
# Stages after which the work is stored: a cancel arriving then lets the job finish.
UNSTOPPABLE_STAGES = frozenset({"write", "done"})
HEARTBEAT_S = 2.0  # how often the owner of a claimed job stamps its row
STALE_HEARTBEAT_S = 60.0  # a claimed job on another host not stamped for this long is dead
STALE_SAME_HOST_S = 600.0  # ... and on this host, even though a process has its pid (pid reuse)
LOCK_POLL_S = 0.5  # a waiting job checks for cancel this often
RATE_WINDOW = 9  # measurements kept per metric (backend.jobs.estimates.WINDOW)

Listener = Callable[[str, int, int], None]


class JobCancelled(Exception):
    """Raised inside a kind (by ``JobContext.progress``) when the user cancelled the job."""


@dataclass(frozen=True)
class Prepared:
    """A submission checked by the registry: normalised JSON params, title, estimate, device."""

    params: dict
    title: str
    estimate_s: float | None
    device: str | None  # None: this machine's default device; "cpu" for kinds without a model
    plan: dict | None = None  # the estimate stage by stage (backend.jobs.estimates.Estimate.to_json)


class Registry(Protocol):
    """What the queue needs of the kinds (``backend.jobs.registry.KindRegistry`` implements it)."""

    def names(self) -> list[str]: ...

    def prepare(self, kind: str, params: dict, queue: JobQueue) -> Prepared: ...

    def execute(self, kind: str, params: dict, ctx: JobContext) -> None: ...


@dataclass
class Job:
    """One row of the queue."""

    id: int
    kind: str
    params: dict
    state: str
    title: str = ""
    stage: str = ""
    done: int = 0
    total: int = 0
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    estimate_s: float | None = None
    error: str | None = None
    resumable: bool = False
    cancel_requested: bool = False
    results: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    device: str = "cpu"
    owner: str | None = None
    plan: dict | None = None  # the estimate stage by stage (backend.jobs.estimates), re-planned at start
    stage_started: float | None = None  # when the current stage began (time.time())
    stage_times: dict = field(default_factory=dict)  # seconds of the stages already left behind
    value: Any = None  # what the kind handed back (``JobContext.set_value``); this process only, not stored

    def elapsed_s(self, now: float | None = None) -> float | None:
        if self.started is None:
            return None
        return (self.finished or now or time.time()) - self.started

    def stage_elapsed_s(self, now: float | None = None) -> float:
        """Seconds the current stage has run (the whole job's when its start is unknown)."""
        start = self.stage_started or self.started
        return max(0.0, (now or time.time()) - start) if start else 0.0

    def remaining_s(self, now: float | None = None) -> float | None:
        """Seconds left, roughly: the current stage's rate, else the estimate minus the time spent
        (``backend.jobs.estimates.time_left`` is the honest one, stage by stage, with a range)."""
        if self.state != "running" or self.started is None:
            return self.estimate_s if self.state == "queued" else None
        if self.total and 0 < self.done < self.total:
            stage_s = self.stage_elapsed_s(now)
            return stage_s * (self.total - self.done) / self.done
        if self.estimate_s is not None:
            left = self.estimate_s - (self.elapsed_s(now) or 0.0)
            return left if left > 0 else None
        return None


def _owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str | None, heartbeat: float | None) -> bool:
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return True
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return heartbeat is not None and time.time() - heartbeat < STALE_SAME_HOST_S
    return heartbeat is not None and time.time() - heartbeat < STALE_HEARTBEAT_S


def default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return "cpu"


class JobQueue:
    """The queue of one cache directory (``<root>/jobs.sqlite``).

    ``registry`` validates and runs the kinds; without one the queue can be read, cancelled,
    resumed and recovered, but not submitted to or worked."""

    def __init__(self, store: RunStore, registry: Registry | None = None):
        self.store = store
        self.registry = registry
        self.path = Path(store.root) / JOBS_DB
        self._write_lock = threading.Lock()
        with self._db() as con:
            con.executescript(
                """
                CREATE TABLE IF NOT EXISTS jobs (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    kind TEXT NOT NULL, title TEXT NOT NULL DEFAULT '', params TEXT NOT NULL,
                    state TEXT NOT NULL, stage TEXT NOT NULL DEFAULT '', done INTEGER NOT NULL DEFAULT 0,
                    total INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, started REAL, finished REAL,
                    heartbeat REAL, estimate_s REAL, error TEXT, resumable INTEGER NOT NULL DEFAULT 0,
                    cancel_requested INTEGER NOT NULL DEFAULT 0, results TEXT NOT NULL DEFAULT '[]',
                    messages TEXT NOT NULL DEFAULT '[]', device TEXT NOT NULL DEFAULT 'cpu', owner TEXT
                );
                CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, id);
                CREATE TABLE IF NOT EXISTS rates (
                    model TEXT NOT NULL, device TEXT NOT NULL, host TEXT NOT NULL, metric TEXT NOT NULL,
                    samples TEXT NOT NULL, updated REAL NOT NULL,
                    PRIMARY KEY (model, device, host, metric)
                );
                """
            )
            have = {r[1] for r in con.execute("PRAGMA table_info(jobs)").fetchall()}
            for column, decl in (("plan", "TEXT"), ("stage_started", "REAL"), ("stage_times", "TEXT")):
                if column not in have:  # a queue made before the stage-by-stage estimates
                    con.execute(f"ALTER TABLE jobs ADD COLUMN {column} {decl}")

    @contextmanager
    def _db(self):
        try:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise CacheError(f"job queue {self.path} is unusable: {exc}") from None
        try:
            con.row_factory = sqlite3.Row
            yield con
        except sqlite3.Error as exc:
            raise CacheError(f"job queue {self.path}: {exc}") from None
        finally:
            con.close()

    # ------------------------------------------------------------------ submit / read
    def _registry(self) -> Registry:
        if self.registry is None:
            raise InputError("this job queue was opened without job kinds (use backend.jobs.open_queue)")
        return self.registry

    def submit(
        self,
        kind: str,
        params: dict,
        *,
        title: str | None = None,
        estimate_s: float | None = None,
        device: str | None = None,
    ) -> int:
        """Validate (a bad parameter is a one-line ``InputError``) and queue a job; returns its id.
        The stored params are the kind's normalised JSON (defaults filled in, run keys resolved).
        A read-only server refuses it (``ReadOnlyError``, one line) before the params are looked at."""
        readonly.check("starting jobs")
        prepared = self._registry().prepare(kind, params, self)
        blob = json.dumps(prepared.params, ensure_ascii=False)
        title = title or prepared.title
        estimate_s = prepared.estimate_s if estimate_s is None else estimate_s
        device = device or prepared.device or default_device()
        plan = json.dumps(prepared.plan) if prepared.plan is not None else None
        with self._db() as con:
            cur = con.execute(
                "INSERT INTO jobs (kind, title, params, state, created, estimate_s, device, plan) "
                "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
                (kind, title[:200], blob, time.time(), estimate_s, device, plan),
            )
            job_id = int(cur.lastrowid or 0)
        _wake_workers()
        return job_id

    def get(self, job_id: int) -> Job | None:
        with self._db() as con:
            row = con.execute("SELECT * FROM jobs WHERE id = ?", (int(job_id),)).fetchone()
        return _job(row) if row else None

    def list(self, limit: int = 50) -> list[Job]:
        """Active jobs first (oldest first), then the most recent finished ones."""
        with self._db() as con:
            active = con.execute(
                "SELECT * FROM jobs WHERE state IN ('queued', 'waiting', 'running') ORDER BY id"
            ).fetchall()
            done = con.execute(
                "SELECT * FROM jobs WHERE state NOT IN ('queued', 'waiting', 'running') ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [_job(r) for r in [*active, *done]]

    # ------------------------------------------------------------------ control
    def cancel(self, job_id: int) -> bool:
        """Cancel a queued job at once, or ask a waiting or running one to stop (one whose owner
        died is cancelled at once, resumable); False if already over. Refused on a read-only server."""
        readonly.check("cancelling jobs")
        with self._db() as con:
            cur = con.execute(
                "UPDATE jobs SET state = 'cancelled', finished = ?, error = 'cancelled before it started' "
                "WHERE id = ? AND state = 'queued'",
                (time.time(), int(job_id)),
            )
            if cur.rowcount:
                return True
            row = con.execute(
                "SELECT owner, heartbeat FROM jobs WHERE id = ? AND state IN ('waiting', 'running')", (int(job_id),)
            ).fetchone()
            if row is None:
                return False
            if not _owner_alive(row["owner"], row["heartbeat"]):
                con.execute(
                    "UPDATE jobs SET state = 'cancelled', resumable = 1, finished = COALESCE(heartbeat, ?), "
                    "error = 'cancelled; its server had stopped during the job (nothing partial was stored)' "
                    "WHERE id = ? AND state IN ('waiting', 'running')",
                    (time.time(), int(job_id)),
                )
                return True
            cur = con.execute(
                "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND state IN ('waiting', 'running')", (int(job_id),)
            )
            return bool(cur.rowcount)

    def resume(self, job_id: int) -> bool:
        """Queue a failed or cancelled job again (finished runs are cache hits); False if not possible.
        Refused on a read-only server."""
        readonly.check("resuming jobs")
        with self._db() as con:
            cur = con.execute(
                "UPDATE jobs SET state = 'queued', stage = '', done = 0, total = 0, started = NULL, finished = NULL, "
                "error = NULL, resumable = 0, cancel_requested = 0, owner = NULL, messages = '[]', "
                "stage_started = NULL, stage_times = NULL "
                "WHERE id = ? AND state IN ('failed', 'cancelled')",
                (int(job_id),),
            )
            ok = bool(cur.rowcount)
        if ok:
            _wake_workers()
        return ok

    def recover(self) -> list[int]:
        """Mark jobs whose server died mid-job as failed and resumable; returns their ids (none on a
        read-only server, which leaves the queue to the servers that run it)."""
        if readonly.is_read_only():
            return []
        with self._db() as con:
            rows = con.execute("SELECT id, owner, heartbeat FROM jobs WHERE state IN ('waiting', 'running')").fetchall()
            dead = [int(r["id"]) for r in rows if not _owner_alive(r["owner"], r["heartbeat"])]
            for job_id in dead:
                con.execute(
                    "UPDATE jobs SET state = 'failed', resumable = 1, finished = COALESCE(heartbeat, ?), "
                    "error = 'the server stopped during this job; nothing partial was stored; resume to run it again' "
                    "WHERE id = ? AND state IN ('waiting', 'running')",
                    (time.time(), job_id),
                )
        if dead:
            remove_orphan_tmp(self.store)
        return dead

    def claim(self, job_id: int | None = None) -> Job | None:
        """Atomically take the oldest queued job (or job ``job_id``, if still queued) for this
        process; None if there is none. A read-only server runs no job: refused."""
        readonly.check("running jobs")
        with self._db() as con:
            con.execute("BEGIN IMMEDIATE")
            if job_id is None:
                row = con.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1").fetchone()
            else:
                row = con.execute("SELECT id FROM jobs WHERE id = ? AND state = 'queued'", (int(job_id),)).fetchone()
            if row is None:
                con.execute("COMMIT")
                return None
            now = time.time()
            con.execute(
                "UPDATE jobs SET state = 'waiting', heartbeat = ?, owner = ? WHERE id = ?",
                (now, _owner_id(), row["id"]),
            )
            con.execute("COMMIT")
        return self.get(int(row["id"]))

    def _update(self, job_id: int, **values) -> None:
        cols = ", ".join(f"{k} = ?" for k in values)
        with self._db() as con:
            con.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*values.values(), int(job_id)))

    def _cancel_requested(self, job_id: int) -> bool:
        with self._db() as con:
            row = con.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (int(job_id),)).fetchone()
        return bool(row and row[0])

    # ------------------------------------------------------------------ run
    def run_job(self, job: Job, *, listener: Listener | None = None, reraise: bool = False) -> Job:
        """Run a claimed job to its end (holding the device lock); returns the final row, with
        ``value`` set to what the kind handed back. ``listener(stage, done, total)`` sees every
        progress report (the CLI's bars); ``reraise``: a failure is recorded, then raised again
        (the CLI keeps its exit codes), and Ctrl-C cancels the job."""
        ctx = JobContext(self, job, listener=listener)
        lock = FileLock(str(Path(self.store.root) / "locks" / f"device-{job.device}.lock"))
        Path(self.store.root, "locks").mkdir(parents=True, exist_ok=True)
        beat = Heartbeat(self, job.id)
        beat.start()
        try:
            registry = self._registry()
            self._wait_for_device(job, lock)
            self._update(job.id, state="running", started=time.time())
            with lock, collect_warnings() as cache_warnings:
                _configure_threads(measure_load=True, running_jobs=1 + self.running_elsewhere(job))
                ctx.progress("start", 0, 0)
                try:
                    registry.execute(job.kind, job.params, ctx)
                finally:  # a derived write that failed: the result stands, the job says why it is not cached
                    for line in cache_warnings:
                        ctx.message(line)
            ctx.flush()
            self._update(job.id, state="finished", finished=time.time())
        except JobCancelled:
            ctx.flush()
            self._update(job.id, state="cancelled", finished=time.time(), error="cancelled", resumable=1)
        except KeyboardInterrupt:
            ctx.flush()
            self._update(job.id, state="cancelled", finished=time.time(), error="interrupted", resumable=1)
            raise
        except RamlError as exc:
            ctx.flush()
            self._update(job.id, state="failed", finished=time.time(), error=str(exc))
            if reraise:
                raise
        except Exception as exc:  # a bug: one line for the user, the traceback in the log
            if not reraise:
                log.exception("job %s (%s) failed", job.id, job.kind)
            ctx.flush()
            msg = str(exc).splitlines()[0][:200] if str(exc) else ""
            self._update(
                job.id, state="failed", finished=time.time(), error=f"internal error {type(exc).__name__}: {msg}"
            )
            if reraise:
                raise
        finally:
            beat.stop()
            if lock.is_locked:
                lock.release()
        final = self.get(job.id) or job
        final.value = ctx.value
        return final

    def _wait_for_device(self, job: Job, lock: FileLock) -> None:
        """Take the device lock (the job stays ``waiting`` meanwhile), checking for cancel."""
        from filelock import Timeout

        while True:
            try:
                lock.acquire(timeout=LOCK_POLL_S)
                return
            except Timeout:
                if self._cancel_requested(job.id):
                    raise JobCancelled() from None

    def running_elsewhere(self, job: Job) -> int:
        """Jobs of this queue computing now on other devices of this machine (a CUDA job beside a
        CPU one): they split the cores with ``job``. Jobs of the same device wait for its lock."""
        with self._db() as con:
            row = con.execute(
                "SELECT COUNT(*) FROM jobs WHERE state = 'running' AND device != ? AND id != ?",
                (job.device, int(job.id)),
            ).fetchone()
        return int(row[0]) if row else 0

    def run_next(self) -> Job | None:
        """Claim and run one queued job in this thread (tests, CLI); None if the queue is empty."""
        job = self.claim()
        return self.run_job(job) if job else None

    # ------------------------------------------------------------------ rates (estimates)
    def record(self, model: str, device: str, metric: str, value: float) -> None:
        """Add one measurement (seconds per unit, or a fact) to this machine's rates: the last
        ``RATE_WINDOW`` samples per model fingerprint, device, host and metric are kept."""
        if not (isinstance(value, (int, float)) and value == value and value > 0):
            return
        host = socket.gethostname()
        with self._write_lock, self._db() as con:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute(
                "SELECT samples FROM rates WHERE model = ? AND device = ? AND host = ? AND metric = ?",
                (model, device, host, metric),
            ).fetchone()
            samples = (json.loads(row["samples"]) if row else [])[-(RATE_WINDOW - 1) :] + [float(value)]
            con.execute(
                "INSERT OR REPLACE INTO rates VALUES (?, ?, ?, ?, ?, ?)",
                (model, device, host, metric, json.dumps(samples), time.time()),
            )
            con.execute("COMMIT")

    def samples(self, model: str, device: str, metric: str) -> list[float]:
        """This machine's last measurements of ``metric`` for a model and device, oldest first."""
        with self._db() as con:
            row = con.execute(
                "SELECT samples FROM rates WHERE model = ? AND device = ? AND host = ? AND metric = ?",
                (model, device, socket.gethostname(), metric),
            ).fetchone()
        return [float(x) for x in json.loads(row[0])] if row else []

    def measured(self, model: str, device: str, metric: str) -> float | None:
        """The median of ``samples`` (None before the first measurement)."""
        xs = sorted(self.samples(model, device, metric))
        if not xs:
            return None
        mid = len(xs) // 2
        return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def remove_orphan_tmp(store: RunStore) -> int:
    """Remove temp dirs of writers that died: a temp dir ``<key>.*`` whose per-key lock is free
    has no live writer (a live one holds the lock for the whole write). Returns how many."""
    from filelock import Timeout

    removed = 0
    tmp_dir = Path(store.root) / "tmp"
    for path in tmp_dir.iterdir() if tmp_dir.is_dir() else ():
        key = path.name.split(".", 1)[0]
        try:
            with store.lock(key, timeout=0):
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        except (Timeout, RamlError):
            continue  # a live writer, or not a run's temp dir
    return removed


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=int(row["id"]),
        kind=row["kind"],
        title=row["title"],
        params=json.loads(row["params"]),
        state=row["state"],
        stage=row["stage"],
        done=int(row["done"]),
        total=int(row["total"]),
        created=float(row["created"]),
        started=row["started"],
        finished=row["finished"],
        estimate_s=row["estimate_s"],
        error=row["error"],
        resumable=bool(row["resumable"]),
        cancel_requested=bool(row["cancel_requested"]),
        results=json.loads(row["results"]),
        messages=json.loads(row["messages"]),
        device=row["device"],
        owner=row["owner"],
        plan=json.loads(row["plan"]) if row["plan"] else None,
        stage_started=row["stage_started"],
        stage_times=json.loads(row["stage_times"]) if row["stage_times"] else {},
    )


class Heartbeat(threading.Thread):
    """Stamps a claimed job's ``heartbeat`` every ``HEARTBEAT_S`` until stopped, and recovers
    other owners' dead jobs meanwhile (so a busy worker notices a dead server too)."""

    def __init__(self, queue: JobQueue, job_id: int):
        super().__init__(name=f"raml-heartbeat-{job_id}", daemon=True)
        self.queue, self.job_id = queue, job_id
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            try:
                self.queue._update(self.job_id, heartbeat=time.time())
                self.queue.recover()
            except Exception as exc:  # a locked or full index: the next beat tries again
                log.debug("heartbeat of job %s: %s", self.job_id, exc)

    def stop(self) -> None:
        self.stopped.set()


class JobContext:
    """What a kind gets: progress (which also checks for cancel), title, results, messages,
    stage timings and this machine's throughput table. Kinds use only these public methods."""

    def __init__(self, queue: JobQueue, job: Job, listener: Listener | None = None):
        self.queue, self.job = queue, job
        self.store = queue.store
        self.results: list[str] = list(job.results)
        self.messages: list[str] = []
        self.stage_seconds: dict[str, float] = {}
        self.actual_work: dict[str, float] = {}  # work the stages really did (``work``), for learning
        self.plan: dict | None = job.plan
        self.value: Any = None
        self.listener = listener
        self._stage, self._stage_t0 = "", time.perf_counter()
        self._last_write = 0.0
        self._dirty = False

    @property
    def device(self) -> str:
        return self.job.device

    @property
    def interactive(self) -> bool:
        """True when a terminal follows this job (``run_here`` with progress bars)."""
        return self.listener is not None

    def progress(self, stage: str, done: int, total: int) -> None:
        """Report progress; raises ``JobCancelled`` when the user asked to stop."""
        if self.listener is not None:
            self.listener(stage, done, total)
        now = time.perf_counter()
        changed = stage != self._stage
        if changed:
            if self._stage:
                self.stage_seconds[self._stage] = self.stage_seconds.get(self._stage, 0.0) + now - self._stage_t0
            self._stage, self._stage_t0 = stage, now
        if changed or now - self._last_write >= PROGRESS_WRITE_INTERVAL_S or done == 0 or done >= total:
            self._last_write = now
            stage_clock = {"stage_started": time.time(), "stage_times": self._stage_times()} if changed else {}
            self.queue._update(
                self.job.id,
                stage=stage,
                done=int(done),
                total=int(total),
                heartbeat=time.time(),
                results=json.dumps(self.results),
                messages=json.dumps(self.messages),
                **stage_clock,
            )
            if stage not in UNSTOPPABLE_STAGES and self.queue._cancel_requested(self.job.id):
                raise JobCancelled()

    def reporter(self, stage: str) -> Callable[[int, int], None]:
        """``progress(done, total)`` for one stage (what the analysis functions take)."""
        return lambda done, total: self.progress(stage, done, total)

    def check_cancel(self) -> None:
        """Raise ``JobCancelled`` now if the user asked to stop (between two long calls)."""
        if self.queue._cancel_requested(self.job.id):
            raise JobCancelled()

    def set_title(self, title: str) -> None:
        self.queue._update(self.job.id, title=title[:200])

    def set_value(self, value: Any) -> None:
        """Hand a result object back to the caller of ``run_job`` in this process (the CLI)."""
        self.value = value

    def add_result(self, key: str) -> None:
        if key not in self.results:
            self.results.append(key)
        self._dirty = True

    def message(self, text: str) -> None:
        self.messages.append(text[:500])
        self._dirty = True

    def _stage_times(self) -> str:
        return json.dumps({k: round(v, 3) for k, v in self.stage_seconds.items()})

    def work(self, stage: str, units: float) -> None:
        """The work ``stage`` really did (tokens generated, cut points scored...), when it differs
        from the plan's: a finished job teaches the estimates seconds / this."""
        self.actual_work[stage] = float(units)

    def set_plan(self, plan: dict | None) -> None:
        """The job's estimate, stage by stage (re-planned when it starts: the model may be in
        memory by now); the panel's time left follows it."""
        self.plan = plan
        if plan is not None:
            self.queue._update(self.job.id, plan=json.dumps(plan), estimate_s=plan.get("seconds"))

    def close_stage(self) -> None:
        """End the current stage's clock (before recording throughput)."""
        now = time.perf_counter()
        if self._stage:
            self.stage_seconds[self._stage] = self.stage_seconds.get(self._stage, 0.0) + now - self._stage_t0
        self._stage, self._stage_t0 = "", now

    def record_throughput(self, model_fingerprint: str, metric: str, value: float) -> None:
        """Add a measurement of this job to the machine's rates (``fact:NAME`` for a fact)."""
        if model_fingerprint:
            self.queue.record(model_fingerprint, self.job.device, metric, value)

    def record_facts(self, model_fingerprint: str, facts: dict[str, float]) -> None:
        """What the job learned about its model (``backend.jobs.estimates.FACTS``)."""
        for name, value in facts.items():
            self.record_throughput(model_fingerprint, f"fact:{name}", value)

    def stage_s(self, stage: str) -> float:
        return self.stage_seconds.get(stage, 0.0)

    def flush(self) -> None:
        self.queue._update(
            self.job.id,
            results=json.dumps(self.results),
            messages=json.dumps(self.messages),
            stage_times=self._stage_times(),
        )


# ---------------------------------------------------------------------- workers
_workers: dict[str, Worker] = {}
_workers_lock = threading.Lock()


def _wake_workers() -> None:
    for worker in list(_workers.values()):
        worker.wake.set()


class Worker(threading.Thread):
    """One per server process and cache: recovers dead jobs, then runs queued jobs one at a time."""

    def __init__(self, queue: JobQueue, poll_s: float = 1.0):
        super().__init__(name=f"raml-jobs-{queue.path}", daemon=True)
        self.queue, self.poll_s = queue, poll_s
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        _configure_threads()
        try:
            self.queue.recover()
        except RamlError as exc:
            log.warning("job queue recovery failed: %s", exc)
        while not self.stopping.is_set():
            if not Path(self.queue.store.root).is_dir():
                return  # the cache was removed (a test's temp dir): nothing left to work on
            try:
                self.queue.recover()  # any worker, every poll: a job of a server that died is not left running
                job = self.queue.claim()
                if job is not None:
                    self.queue.run_job(job)
                    continue
            except RamlError as exc:
                log.warning("job queue: %s", exc)
            self.wake.wait(self.poll_s)
            self.wake.clear()


def _configure_threads(**choice) -> None:
    """Torch threads from the cores really available, the machine's load and the jobs running at
    once (``backend.engine.threads.configure_torch_threads``; docs/threads.md)."""
    try:
        from backend.engine.threads import configure_torch_threads  # type: ignore[import-not-found]
    except ImportError:
        return
    try:
        configure_torch_threads(**choice)
    except Exception as exc:  # never let thread tuning stop the worker
        log.warning("could not configure torch threads: %s", exc)


def worker_for(queue: JobQueue) -> Worker | None:
    """The worker of this process for ``queue``'s cache (started on first call); None on a read-only
    server, which runs no job (``backend.readonly``)."""
    if readonly.is_read_only():
        return None
    root = str(Path(queue.store.root).resolve())
    with _workers_lock:
        worker = _workers.get(root)
        if worker is None or not worker.is_alive():
            worker = Worker(queue)
            _workers[root] = worker
            worker.start()
        return worker


def wait_for(queue: JobQueue, job_id: int, timeout: float = 600.0, poll_s: float = 0.1) -> Job:
    """Block until a job is over (tests, CLI); raises ``TimeoutError``."""
    deadline = time.monotonic() + timeout
    while True:
        job = queue.get(job_id)
        if job is not None and job.state not in ACTIVE:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job.state if job else 'missing'} after {timeout:.0f} s")
        time.sleep(poll_s)
