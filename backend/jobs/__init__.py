"""One queue for all long work (docs/jobs.md): the queue (``queue``), the built-in kinds
(``kinds``, listed in ``registry``), their typed params (``params``) and the estimates.

    job_id = submit(store, "importance", {"key": key})   # refused here if a param is bad
    ensure_worker(store)                                  # the server's worker thread runs it
    job = run_here(store, job_id)                         # or: the CLI runs it in this process
"""

from __future__ import annotations

from typing import Any

from backend.jobs.queue import ACTIVE, STATES, Job, JobCancelled, JobContext, JobQueue, Worker, worker_for
from backend.jobs.queue import wait_for as _wait_for

# The kinds are imported on first use, not by ``import backend.jobs.queue`` (which runs this
# file first): the queue and a reader of it never load a kind module.
_LAZY = {
    "BUILTIN": "backend.jobs.registry",
    "BUILTIN_KINDS": "backend.jobs.registry",
    "Kind": "backend.jobs.registry",
    "KindRegistry": "backend.jobs.registry",
    "request_params": "backend.jobs.kinds.run",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'backend.jobs' has no attribute {name!r}")


__all__ = [
    "ACTIVE",
    "BUILTIN",
    "BUILTIN_KINDS",
    "STATES",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobQueue",
    "Kind",
    "KindRegistry",
    "Worker",
    "ensure_worker",
    "open_queue",
    "request_params",
    "run_here",
    "submit",
    "wait_for",
]


def open_queue(store) -> JobQueue:
    """The queue of ``store``'s cache with the built-in kinds."""
    from backend.jobs.registry import BUILTIN

    return JobQueue(store, BUILTIN)


def submit(store, kind: str, params: dict, *, title: str | None = None, estimate_s: float | None = None) -> int:
    """Validate ``params`` against ``kind``'s typed params (a bad one: ``InputError``, one line
    naming the field) and queue the job; returns its id."""
    return open_queue(store).submit(kind, params, title=title, estimate_s=estimate_s)


def ensure_worker(store) -> Worker | None:
    """This process's worker thread for ``store``'s cache (started on first call); None on a
    read-only server (``backend.readonly``), which runs no job."""
    return worker_for(open_queue(store))


def wait_for(queue_or_store, job_id: int, timeout: float = 600.0, poll_s: float = 0.1) -> Job:
    """Block until job ``job_id`` is over; raises ``TimeoutError``."""
    queue = queue_or_store if isinstance(queue_or_store, JobQueue) else open_queue(queue_or_store)
    return _wait_for(queue, job_id, timeout=timeout, poll_s=poll_s)


def run_here(store, job_id: int, *, progress=None, reraise: bool = False, timeout: float = 24 * 3600.0) -> Job:
    """Run job ``job_id`` in this process (the device lock held), the CLI's wait mode; returns
    the final row with ``value`` set. If a worker already took the job, wait for it instead.
    ``progress(stage, done, total)`` sees every report; ``reraise`` raises a failure again."""
    queue = open_queue(store)
    job = queue.claim(job_id)
    if job is None:
        return _wait_for(queue, job_id, timeout=timeout, poll_s=0.5)
    return queue.run_job(job, listener=progress, reraise=reraise)
