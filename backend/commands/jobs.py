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
        print(json.dumps([asdict(j) for j in jobs], indent=1))
        return 0
    for j in jobs:
        progress = f"{j.stage} {j.done}/{j.total}" if j.state == "running" else (j.error or "")
        print(f"{j.id:>5}  {j.state:<9}  {j.kind:<9}  {_safe(j.title)[:50]:<50}  {_safe(progress)[:60]}")
    return 0


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
