"""Issue 27 item 5: a job whose server died does not stay "running" forever while another
server shares the cache. Two queue instances on one cache: a second process claims a job (and
beats its heartbeat), is SIGKILLed mid-job, and the first process's worker, already running,
marks the job failed and resumable without being restarted; Cancel of such a job works; a job
waiting for the device lock is "waiting", not "running", and can be cancelled there."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY
from filelock import FileLock

from backend.jobs import open_queue, request_params
from backend.jobs.queue import Worker
from backend.pipeline.run import RunRequest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def queue(store, tiny_llama):
    from backend.engine import provider

    provider.register(tiny_llama)
    yield open_queue(store)
    provider.unregister(tiny_llama.name)


def _params(model: str, question: str = SAMPLE_QUESTION) -> dict:
    return request_params(RunRequest(question=question, answer="6", trajectory=SAMPLE_TRAJECTORY, model=model))


def _other_server_claims(root: Path) -> subprocess.Popen:
    """A second process on the same cache that claims the oldest queued job and works on it
    (its heartbeat beating) until it is killed."""
    code = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from backend.store.runs import RunStore
        from backend.jobs.queue import JobQueue, Heartbeat
        queue = JobQueue(RunStore({str(root)!r}))
        job = queue.claim()
        Heartbeat(queue, job.id).start()
        print("claimed", job.id, flush=True)
        time.sleep(3600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("claimed"), line
    return proc


def _kill(proc: subprocess.Popen) -> None:
    proc.kill()  # SIGKILL: no cleanup of any kind
    proc.wait(timeout=30)  # reaped: no zombie keeps the pid alive


def _until(condition, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:.0f} s"
        time.sleep(0.1)


def test_a_running_worker_fails_the_job_of_a_server_that_was_killed(queue, tiny_llama):
    job_id = queue.submit("run", _params(tiny_llama.name), title="owned by a server that dies")
    other = _other_server_claims(queue.store.root)
    worker = None
    try:
        assert queue.get(job_id).state == "waiting" and queue.get(job_id).owner.endswith(f":{other.pid}")
        assert queue.recover() == [] and queue.get(job_id).state == "waiting", "a live owner's job is left alone"
        worker = Worker(open_queue(queue.store), poll_s=0.2)  # this server's worker, started before the kill
        worker.start()
        _kill(other)
        failed = _until(lambda: (j := queue.get(job_id)).state == "failed" and j, "marking the dead job failed")
        assert failed.resumable and "server stopped" in failed.error
    finally:
        if other.poll() is None:
            _kill(other)
        if worker is not None:
            worker.stopping.set()
            worker.wake.set()
            worker.join(timeout=60)
    assert queue.resume(job_id)
    final = queue.run_next()
    assert final.id == job_id and final.state == "finished", final.error


def test_cancel_of_a_dead_servers_job_cancels_it_and_resume_runs_it(queue, tiny_llama):
    job_id = queue.submit("run", _params(tiny_llama.name, "What is 7 - 4?"))
    other = _other_server_claims(queue.store.root)
    _kill(other)
    assert queue.cancel(job_id), "Cancel of a job whose server is gone works"
    cancelled = queue.get(job_id)
    assert cancelled.state == "cancelled" and cancelled.resumable and "stopped" in cancelled.error
    assert queue.resume(job_id)
    done = queue.run_next()
    assert done.id == job_id and done.state == "finished", done.error
    assert queue.store.has(done.results[0])


def test_a_job_waiting_for_the_device_is_waiting_not_running_and_can_be_cancelled(queue, tiny_llama):
    from app.jobs_panel import job_line

    job_id = queue.submit("run", _params(tiny_llama.name, "What is 9 - 4?"))
    device_lock = FileLock(str(queue.store.root / "locks" / f"device-{queue.get(job_id).device}.lock"))
    (queue.store.root / "locks").mkdir(exist_ok=True)
    device_lock.acquire()  # another job (another server) holds the device
    results = []
    job = queue.claim()
    runner = threading.Thread(target=lambda: results.append(queue.run_job(job)))
    runner.start()
    try:
        waiting = _until(lambda: (j := queue.get(job_id)).state == "waiting" and j, "waiting")
        assert "waiting for the device" in job_line(waiting) and "running" not in job_line(waiting)
        assert queue.cancel(job_id)
        runner.join(timeout=120)
        assert not runner.is_alive()
    finally:
        device_lock.release()
    assert results and results[0].state == "cancelled" and results[0].resumable
    assert results[0].started is None, "it never ran"
    assert queue.store.list_runs().empty
