"""What a page needs of the job queue: submit a kind, find the job of "this run's importance" (or
surface, branch, ...), and follow it while it is active.

Pages never compute (docs/jobs.md): a compute button calls ``submit`` and the server's worker
thread runs the job. The state lives in the queue (``<cache>/jobs.sqlite``) and the result in the
cache, never in the page's script run, so a job started on Explore is still followed, and its
result shown, after the user opened another page and came back.

Polling costs something only while a job is active: ``follow`` draws the job's progress in a
fragment polled by ``app/poll.py`` (every second while the job moves, backing off while it does
not) and reruns the whole page once when the job is over; a page with no active job draws no
polled fragment, so an idle page does no work at all.
"""

from __future__ import annotations

import streamlit as st

from app import data, poll, ui

ACTIVE = ("queued", "waiting", "running")
LAST_SUBMITTED = "jobs_last_submitted"  # shared with app/jobs_panel.py


def queue():
    """This server's queue (its worker thread started on first use)."""
    from app import jobs_panel

    return jobs_panel.get_queue()


def submit(kind: str, params: dict, *, title: str | None = None) -> int | None:
    """Queue a job of ``kind``; a refused parameter (or a read-only server) is one error line
    (None), never a traceback."""
    from backend import jobs
    from backend.errors import RamlError

    store = data.get_store()
    try:
        job_id = jobs.submit(store, kind, params, title=title)
    except RamlError as exc:
        st.error(f"Cannot start: {ui.md(exc)}")
        return None
    queue()  # make sure this server's worker runs it
    st.session_state[LAST_SUBMITTED] = job_id
    return job_id


def _matches(job, kind: str, key: str, match: dict) -> bool:
    params = job.params or {}
    return job.kind == kind and params.get("key") == key and all(params.get(k) == v for k, v in match.items())


def jobs_for(kind: str, key: str, **match) -> list:
    """Jobs of ``kind`` on run ``key`` whose params also equal ``match``: active ones first (oldest
    first), then the most recent finished ones (the queue's own order). None on a read-only server:
    its pages show what is cached, never a job."""
    if ui.read_only():
        return []
    try:
        listed = queue().list(limit=50)
    except Exception:  # an unreadable queue never takes a page down (the jobs panel says why)
        return []
    return [j for j in listed if _matches(j, kind, key, match)]


def active_job(kind: str, key: str, **match):
    """The queued or running job of ``kind`` on run ``key`` (and ``match``), or None."""
    return next((j for j in jobs_for(kind, key, **match) if j.state in ACTIVE), None)


def last_failure(kind: str, key: str, **match) -> str | None:
    """One line when the latest job of ``kind`` on this run failed (None if it did not, or none ran)."""
    over = [j for j in jobs_for(kind, key, **match) if j.state not in ACTIVE]
    latest = max(over, key=lambda j: j.id, default=None)
    if latest is None or latest.state != "failed":
        return None
    return f"Job #{latest.id} failed: {ui.md(latest.error or 'no reason given')}"  # errors quote user text


def follow(job, what: str, *, key: str) -> None:
    """The active ``job``'s progress, redrawn while it moves (``app/poll.py``); one full rerun when
    it is over, which then draws the result from the cache (and stops polling)."""
    from app.jobs_panel import job_line

    job_id = job.id

    @st.fragment
    def _poll() -> None:
        now = queue().get(job_id)
        if now is None or now.state not in ACTIVE:
            poll.reset(f"follow_{key}")
            st.rerun(scope="app")
            return
        changed = (now.state, now.stage, now.done, now.total, now.cancel_requested)
        poll.ticker(f"follow_{key}", poll.backoff(f"follow_{key}", changed))
        frac = now.done / now.total if now.total else 0.0
        with st.container(key=key):
            st.progress(min(max(frac, 0.0), 1.0), text=f"{what} · job #{job_id} · {job_line(now)}")
            st.caption("It runs in the server: open other pages meanwhile; the result appears here when done.")

    _poll()
