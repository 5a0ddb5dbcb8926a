"""``raml jobs``: the job queue of a cache from a terminal (docs/jobs.md).

raml jobs ls [--json]          queued, running and recent jobs
raml jobs cancel ID | resume ID
raml jobs worker [--once]      run queued jobs in this process (a headless server)
"""

from __future__ import annotations

import json
import sys
import time


def register(subparsers) -> None:
    p = subparsers.add_parser("jobs", help="list, cancel, resume or work the job queue")
    sub = p.add_subparsers(dest="jobs_command", required=True)
    q = sub.add_parser("ls", help="queued, running and recent jobs")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_jobs_ls)
    for name, text in (("cancel", "cancel a queued or running job"), ("resume", "queue a failed job again")):
        q = sub.add_parser(name, help=text)
        q.add_argument("job_id", type=int)
        q.set_defaults(func=cmd_jobs_control, action=name)
    q = sub.add_parser("worker", help="run queued jobs in this process until interrupted")
    q.add_argument("--once", action="store_true", help="stop when the queue is empty")
    q.set_defaults(func=cmd_jobs_worker)


def _safe(text: str) -> str:
    """User text with control characters escaped (no terminal escape sequences)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


def _queue(args):
    from backend.jobs import open_queue
    from backend.store.runs import RunStore

    return open_queue(RunStore(args.cache_dir))


def cmd_jobs_ls(args) -> int:
    from dataclasses import asdict

    jobs = _queue(args).list()
    if args.json:
        print(json.dumps([asdict(j) | {"elapsed_s": j.elapsed_s()} for j in jobs], indent=1, default=str))
        return 0
    if not jobs:
        print(f"no jobs in {args.cache_dir}")
        return 0
    now = time.time()
    print(f"{'id':>5}  {'state':<9}  {'kind':<14}  {'queued':<14}  {'started':<8}  {'elapsed':>8}  stage / result")
    for j in jobs:
        print(
            f"{j.id:>5}  {j.state:<9}  {j.kind:<14}  {_when(j.created, now):<14}  "
            f"{_clock(j.started):<8}  {_duration(j.elapsed_s(now)):>8}  {_safe(_detail(j))[:90]}"
        )
        if j.title:
            print(f"{'':>7}{_safe(j.title)[:100]}")
    return 0


def _when(stamp: float | None, now: float) -> str:
    """``14:03:12`` today, ``Dec 01 14:03`` before (local time)."""
    if not stamp:
        return "-"
    if time.strftime("%Y%m%d", time.localtime(stamp)) == time.strftime("%Y%m%d", time.localtime(now)):
        return _clock(stamp)
    return time.strftime("%b %d %H:%M", time.localtime(stamp))


def _clock(stamp: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(stamp)) if stamp else "-"


def _duration(seconds: float | None) -> str:
    """``4.2 s``, ``3 min 05 s``, ``2 h 07 min``; ``-`` before it started."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _detail(j) -> str:
    """Running: its stage and progress; finished: the keys it made (12 characters, as the UI
    shows them and every command takes them); failed: why."""
    if j.state in ("running", "queued", "waiting") and j.stage:
        progress = f" {j.done}/{j.total}" if j.total else ""
        return f"{j.stage}{progress}"
    if j.error:
        return j.error
    if j.results:
        keys = " ".join(k[:12] for k in j.results[:4])
        return f"-> {keys}" + (f" (+{len(j.results) - 4})" if len(j.results) > 4 else "")
    return j.stage or ""


def cmd_jobs_control(args) -> int:
    queue = _queue(args)
    ok = queue.cancel(args.job_id) if args.action == "cancel" else queue.resume(args.job_id)
    if not ok:
        job = queue.get(args.job_id)
        state = job.state if job else "missing"
        print(f"error: job {args.job_id} is {state}; cannot {args.action} it", file=sys.stderr)
        return 2
    print(f"job {args.job_id}: {args.action} requested" if args.action == "cancel" else f"job {args.job_id} queued")
    return 0


def cmd_jobs_worker(args) -> int:
    from backend.commands.common import prepare_model_work

    queue = _queue(args)
    queue.recover()
    prepare_model_work(args.verbose)
    while True:
        job = queue.run_next()
        if job is not None:
            print(f"job {job.id} {job.state}{': ' + job.error if job.error else ''}", flush=True)
            continue
        if args.once:
            return 0
        time.sleep(1.0)
