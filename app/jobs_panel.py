"""The jobs panel shown in the sidebar of every page (one call from ``app/main.py``).

Jobs belong to the backend queue (``backend.jobs.queue``), not to a page's script run: a
worker thread of this server process runs them, so a run keeps going when the user opens
another page. This panel reads the queue and shows running / queued / finished / failed jobs
with progress, elapsed and remaining time, Cancel / Resume, and a link to each run a job
produced. It polls (a fragment rerun, ``app/poll.py``: every second while a job moves, backing off
to ``poll.SLOWEST_S`` while it shows nothing new) only while a job is queued or running: an idle
page costs nothing; the next interaction (or a page's submit, which reruns the page) shows a job
another process queued meanwhile. Running jobs come first, then the jobs that ended in the last
few minutes; older ones are folded, and more than a few open cards scroll in a bounded box.
"""

from __future__ import annotations

import time

import streamlit as st

from app import data, poll, ui
from backend.jobs import Job, JobQueue, ensure_worker, open_queue

EXPLORE_PAGE = "views/explore.py"
ACTIVE_STATES = ("queued", "waiting", "running")  # the panel polls while a job is in one of these
SHOWN_FINISHED = 5  # finished / failed / cancelled jobs, folded under the running ones
SHOWN_ACTIVE = 3  # more open cards than this scroll in a box of ACTIVE_BOX_PX
RECENT_S = 300.0  # a job that ended this recently stays open; older ones fold
SHOWN_RECENT = 3
ACTIVE_BOX_PX = 420
STATE_ICON = {
    "queued": ":material/schedule:",
    "waiting": ":material/hourglass_top:",
    "running": ":material/autorenew:",
    "finished": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/cancel:",
}
STAGE_TEXT = {
    "start": "starting",
    "load": "loading the model",
    "generate": "generating",
    "analyze": "analyzing cut points",
    "write": "writing to the cache",
    "question": "questions",
    "surface": "surface points",
    "landscape": "landscape points",
    "ablate": "ablating steps",
    "attention": "probe attention",
    "exact": "exact update",
    "exact_landscape": "exact landscape",
    "lens": "tuned-lens grid",
    "text": "lens training text",
    "train": "training the lens",
    "evaluate": "evaluating the lens",
    "export": "exporting images",
    "done": "done",
}


@st.cache_resource(show_spinner=False)
def _queue_for(root: str) -> JobQueue:
    store = data.get_store()
    ensure_worker(store)
    return open_queue(store)


def get_queue() -> JobQueue:
    """This server's queue for the app's cache; its worker thread is started on first use."""
    queue = _queue_for(data.cache_root())
    ensure_worker(queue.store)  # cheap; restarts a worker that died
    return queue


def submit(kind: str, params: dict, *, title: str, estimate_s: float | None = None) -> int:
    """Queue a job from a page; the panel shows it from the next poll on."""
    job_id = get_queue().submit(kind, params, title=title, estimate_s=estimate_s)
    st.session_state["jobs_last_submitted"] = job_id
    return job_id


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def estimate_text(job: Job) -> str:
    """``≈ 40 s (25–70 s)`` from the job's stage-by-stage plan, else its one number."""
    from backend.jobs.estimates import Estimate

    est = Estimate.from_json(job.plan)
    if est is not None and est.stages:
        return est.range_text()
    return fmt_seconds(job.estimate_s)


def time_left_text(job: Job, now: float) -> str:
    """`` · ~20 s left (10–35 s)`` from the current stage's progress and the plan of the rest, or
    `` · longer than estimated (stage)`` once the job outran its estimate (never "~0 s left")."""
    from backend.jobs.estimates import time_left

    stage = job.stage or "start"
    left = time_left(
        job.plan,
        stage,
        job.done,
        job.total,
        job.stage_elapsed_s(now),
        job.stage_times,
        stage_label=STAGE_TEXT.get(stage, stage),
    )
    text = left.text()
    return f" · {text}" if text else ""


def job_line(job: Job, now: float | None = None) -> str:
    """One line of progress/times for a job (also what the browser test reads)."""
    now = now or time.time()
    if job.state == "queued":
        return f"queued · estimate {estimate_text(job)}"
    if job.state == "waiting":  # claimed, but another job holds the device
        return "waiting for the device (another job is using it)" + (" · stopping…" if job.cancel_requested else "")
    if job.state == "running":
        stage = STAGE_TEXT.get(job.stage or "start", job.stage)
        count = f" {job.done}/{job.total}" if job.total > 1 else ""
        left_text = time_left_text(job, now)
        stop = " · stopping…" if job.cancel_requested else ""
        return f"{stage}{count} · {fmt_seconds(job.elapsed_s(now))} elapsed{left_text}{stop}"
    took = f" in {fmt_seconds(job.elapsed_s(now))}" if job.started else ""
    if job.state == "finished":
        estimated = f" (estimated {estimate_text(job)})" if job.plan and job.started else ""
        return f"finished{took}{estimated}"
    if job.state == "cancelled" and job.started is None:
        return "cancelled before it started"
    return f"{job.state}{took}: {job.error or ''}"


def render() -> None:
    """The panel, in the sidebar of every page, below the page's own controls (``app/main.py``
    draws it after the page); a polled fragment only while a job is active (``app/poll.py``)."""
    with st.sidebar:
        if _any_active():
            st.fragment(_polled_panel)()
        else:
            _panel()


def _any_active() -> bool:
    try:
        return bool(get_queue().list(limit=0))  # limit 0: the queued and running jobs only
    except Exception:  # the panel says why below
        return False


def signature(jobs: list[Job]) -> tuple:
    """What the panel shows of the active jobs, minus the clock: a poll that sees the same backs off."""
    return tuple(
        (j.id, j.state, j.stage, j.done, j.total, len(j.messages), len(j.results), j.cancel_requested)
        for j in jobs
        if j.state in ACTIVE_STATES
    )


def _polled_panel() -> None:
    jobs = _panel()
    if any(j.state in ACTIVE_STATES for j in jobs):
        poll.ticker("jobs_panel", poll.backoff("jobs_panel", signature(jobs)))
    else:
        poll.reset("jobs_panel")


def _panel() -> list[Job]:
    try:
        queue = get_queue()
        jobs = queue.list(limit=SHOWN_FINISHED)
    except Exception as exc:  # never take a page down for the panel
        st.caption(f"Jobs unavailable: {ui.md(exc)}")
        return []
    active = [j for j in jobs if j.state in ACTIVE_STATES]
    # a job that was active at the last poll and is over now: rerun the whole page once, so
    # the page's own views (the Runs library, the last job's link) show its result
    was_active = st.session_state.get("jobs_panel_active", set())
    now_active = {j.id for j in active}
    st.session_state["jobs_panel_active"] = now_active
    if was_active - now_active:
        st.rerun(scope="app")
    over = sorted((j for j in jobs if j.state not in ACTIVE_STATES), key=lambda j: j.finished or 0, reverse=True)[
        :SHOWN_FINISHED
    ]
    now = time.time()
    # jobs that ended in the last RECENT_S stay open (their result link, a Resume): the rest fold
    recent = [j for j in over if now - (j.finished or 0) < RECENT_S][:SHOWN_RECENT]
    older = [j for j in over if j not in recent]
    with st.container(key="jobs_panel"):
        st.markdown(f"**Jobs** · {len(active)} active" if active else "**Jobs**")
        if not jobs:
            st.caption("No jobs yet. New runs and imports from the Runs page run here and survive navigation.")
            return jobs
        # running first, always open; more than SHOWN_ACTIVE scroll inside a bounded box
        box = st.container(
            height=ACTIVE_BOX_PX if len(active) + len(recent) > SHOWN_ACTIVE else "content", key="jobs_open"
        )
        with box:
            for job in [*active, *recent]:
                _job_card(queue, job)
        if older:
            failed = sum(j.state == "failed" for j in older)
            label = f"Earlier jobs ({len(older)}{f', {failed} failed' if failed else ''})"
            with st.expander(label, expanded=False, key="jobs_earlier"):
                for job in older:
                    _job_card(queue, job)
    return jobs


def _job_card(queue: JobQueue, job: Job) -> None:
    with st.container(border=True, key=f"job_{job.id}"):
        title = ui.md(job.title or job.kind)  # a user's question: shown as text, never as Markdown
        st.markdown(f"{STATE_ICON.get(job.state, '')} **#{job.id}** {title}")
        if job.state == "running":
            frac = job.done / job.total if job.total else 0.0
            st.progress(min(max(frac, 0.0), 1.0))
        st.caption(ui.md(job_line(job)), help=None)
        for message in job.messages[:3]:
            st.caption(f"⚠ {ui.md(message)}")
        if job.state in ("queued", "waiting", "running") and not job.cancel_requested:
            if st.button("Cancel", key=f"job_cancel_{job.id}", width="stretch"):
                queue.cancel(job.id)
                st.rerun()  # the whole page: it polls again only if a job is active
        if job.state in ("failed", "cancelled") and job.resumable:
            if st.button("Resume", key=f"job_resume_{job.id}", width="stretch"):
                queue.resume(job.id)
                st.rerun()  # the whole page: it polls again only if a job is active
        for key in job.results[:3]:
            st.page_link(
                EXPLORE_PAGE, label=f"Open run {key[:12]}", icon=":material/open_in_new:", query_params={"run": key}
            )
        if len(job.results) > 3:
            st.caption(f"+ {len(job.results) - 3} more runs (see the Runs library)")
