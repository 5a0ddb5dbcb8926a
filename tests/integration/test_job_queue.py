"""The job queue (backend.jobs.queue) on the tiny model: runs, batches, cancel, a server
killed mid-job (a real subprocess, SIGKILLed while its run's temp files are complete),
resume, and the throughput table behind the estimates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY

from backend.jobs import BUILTIN, estimates, open_queue, request_params, wait_for
from backend.pipeline.run import RunRequest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def queue(store, provided):
    return open_queue(store)


def _run_params(model: str, question: str = SAMPLE_QUESTION, trajectory: str = SAMPLE_TRAJECTORY) -> dict:
    return request_params(RunRequest(question=question, answer="6", trajectory=trajectory, model=model))


def test_run_job_stores_the_run_links_it_and_records_throughput(queue, tiny_llama, learn_every_stage):
    job_id = queue.submit("run", _run_params(tiny_llama.name), title="apples")
    assert queue.get(job_id).state == "queued"
    job = queue.run_next()
    assert job is not None and job.id == job_id
    assert job.state == "finished", job.error
    (key,) = job.results
    assert queue.store.has(key) and key in set(queue.store.list_runs()["key"])
    assert job.started is not None and job.finished >= job.started and job.elapsed_s() >= 0
    fingerprint = tiny_llama.fingerprint
    # the finished job updated this machine's stored rates, stage by stage, and its model's facts
    (per_token,) = queue.samples(fingerprint, job.device, "analyze")
    assert per_token > 0
    assert queue.samples(fingerprint, job.device, "fact:chars_per_token")
    assert not queue.samples(fingerprint, job.device, "generate")  # imported: nothing generated
    assert job.plan and [s["name"] for s in job.plan["stages"]] == ["analyze", "write"]  # in memory: no load
    assert set(job.stage_times) >= {"analyze", "write"}
    # the estimate now uses this machine's measured rates, not the default guess
    req = BUILTIN.parse("run", _run_params(tiny_llama.name)).request
    est = estimates.estimate_run(req, queue, job.device, model_state_=(fingerprint, True, False))
    # scoring from this machine's measured rate (the write's rate is too small to time reliably)
    assert est.stages[0].name == "analyze" and est.stages[0].measured and est.parts["load"] == 0.0
    assert est.stages[0].seconds == pytest.approx(est.stages[0].work * per_token)
    # the same request again is a cache hit, and linked to the same run
    again = queue.run_next() if queue.submit("run", _run_params(tiny_llama.name)) else None
    assert again.state == "finished" and again.results == [key]


def test_cancel_queued_and_running_jobs(queue, tiny_llama):
    queued = queue.submit("run", _run_params(tiny_llama.name))
    assert queue.cancel(queued) and queue.get(queued).state == "cancelled"
    assert queue.run_next() is None, "a cancelled job never runs"

    running = queue.submit("run", _run_params(tiny_llama.name, question="What is 7 - 4?"))
    job = queue.claim()
    assert job.id == running and queue.get(running).state == "waiting"  # claimed; the device lock comes next
    assert queue.cancel(running)  # the flag is read at the job's next progress report
    final = queue.run_job(job)
    assert final.state == "cancelled" and final.resumable and final.results == []
    assert queue.store.list_runs().empty, "a cancelled run leaves nothing in the cache"
    assert not queue.cancel(running), "an ended job cannot be cancelled again"
    assert queue.resume(running) and queue.run_next().state == "finished"


def test_batch_job_runs_good_questions_and_reports_bad_ones(queue, tiny_llama, tmp_path):
    import json

    source = tmp_path / "q.jsonl"
    rows = [
        {"id": "q1", "question": SAMPLE_QUESTION, "answer": "6", "trajectory": SAMPLE_TRAJECTORY},
        {"id": "q3", "question": "What is 1 + 1?", "answer": "2", "trajectory": "   "},
        {"id": "q2", "question": "What is 2 + 3?", "answer": "5", "trajectory": "2 plus 3. Wait, that is 5."},
    ]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    params = {"source": str(source), "template": {"model": tiny_llama.name}}
    job_id = queue.submit("batch", params, title="import q.jsonl")
    job = queue.run_next()
    assert job.id == job_id and job.state == "finished", job.error
    assert len(job.results) == 2 and all(queue.store.has(k) for k in job.results)
    assert len(job.messages) == 1 and job.messages[0].startswith(f"{source}:2"), job.messages
    assert (job.done, job.total) == (3, 3) and job.title == "import q.jsonl · 2 computed, 0 cached, 1 failed"


def test_worker_thread_runs_jobs_submitted_later(queue, tiny_llama):
    from backend.jobs import ensure_worker

    worker = ensure_worker(queue.store)
    assert ensure_worker(queue.store) is worker, "one worker per process and cache"
    job_id = queue.submit("run", _run_params(tiny_llama.name))
    job = wait_for(queue, job_id, timeout=120)
    assert job.state == "finished" and queue.store.has(job.results[0])
    worker.stopping.set()
    worker.wake.set()


def test_unknown_kind_is_refused(queue):
    from backend.errors import InputError

    with pytest.raises(InputError, match="unknown job kind 'nope'"):
        queue.submit("nope", {})


def test_server_killed_mid_job_leaves_no_partial_run_and_the_job_is_resumable(tmp_path, tiny_model_dir):
    """A worker process (``raml jobs worker``) is SIGKILLed while its run's files sit complete in
    the temp dir; afterwards the cache holds no run, the job shows failed + resumable, and a
    resumed job completes it."""
    from backend.store.runs import RunStore

    store = RunStore(tmp_path / "cache")
    queue = open_queue(store)
    job_id = queue.submit("run", _run_params(tiny_model_dir), title="killed mid-write")
    env = dict(os.environ, RAML_TEST_PAUSE_AT="write", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend", "--cache-dir", str(store.root), "jobs", "worker"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        for line in proc.stderr:
            if "RAML_TEST_PAUSED write" in line:
                break
            assert time.monotonic() < deadline, "the worker never reached the write stage"
        running = queue.get(job_id)
        assert running.state == "running" and running.stage == "write"
        assert any((store.root / "tmp").iterdir()), "the run's files are complete in the temp dir"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert queue.get(job_id).state == "running", "nobody has looked yet"
    assert queue.recover() == [job_id]
    failed = queue.get(job_id)
    assert failed.state == "failed" and failed.resumable and "server stopped" in failed.error
    assert store.list_runs().empty and not [p for p in (store.root / "runs").iterdir() if p.is_dir()]
    assert queue.resume(job_id)
    done = subprocess.run(
        [sys.executable, "-m", "backend", "--cache-dir", str(store.root), "jobs", "worker", "--once"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    job = queue.get(job_id)
    assert job.state == "finished" and store.has(job.results[0])


def test_estimates_warn_above_a_minute_and_include_the_load():
    req = RunRequest(question="q", answer="6", trajectory=None)
    fresh = estimates.estimate_run(req, None, "cpu", model_state_=("f" * 16, False, True))
    warm = estimates.estimate_run(req, None, "cpu", model_state_=("f" * 16, True, False))
    assert not fresh.measured and fresh.parts["load"] == estimates.DEFAULTS["load_convert"]
    assert warm.parts["load"] == 0.0 and fresh.seconds > warm.seconds
    big = [RunRequest(question="q", answer="6", trajectory="word " * 4000) for _ in range(20)]
    assert estimates.estimate_batch(big, None, "cpu", model_state_=("f" * 16, True, False)).warn
    assert "first guess" in fresh.describe()


def test_surface_and_landscape_jobs_store_derived_data_and_record_rates(
    tiny_run, tiny_pristine, provided, tmp_path, learn_every_stage
):
    """The grid jobs on a copy of the tiny run: results linked, the derived data is then a
    cache hit for the analysis functions, and seconds per grid point are recorded."""
    import shutil

    from backend.analysis.landscapes.surfaces import load_random_landscape, load_surface
    from backend.store.runs import RunStore

    src, key = tiny_run
    store = RunStore(tmp_path / "cache")
    # the run as tiny_run made it: the session's copy may already hold these grids (a cache hit records no rate)
    shutil.copytree(Path(tiny_pristine) / "runs" / key, store.root / "runs" / key)
    store.reconcile()
    queue = open_queue(store)
    run = store.open(key)
    layer = run.meta["proxy_layers"][-1]
    surface = queue.submit("surface", {"key": key, "layer": layer, "grid": 3, "span": 1.0})
    landscape = queue.submit("landscape", {"key": key, "grid": 3, "span": 0.5, "seed": 1})
    for job_id in (surface, landscape):
        job = queue.run_next()
        assert job.id == job_id and job.state == "finished", job.error
        assert job.results == [key] and job.total == job.done > 0
    assert load_surface(run, layer, 3, 1.0, store) is not None
    assert load_random_landscape(run, 3, 0.5, 1, store) is not None
    fp = run.meta["model"]["fingerprint"]
    assert queue.measured(fp, job.device, "surface_point") > 0
    assert queue.measured(fp, job.device, "landscape_point") > 0
    est = estimates.estimate_grid("landscape", 121, queue, fp, job.device, in_memory=True)
    # the grid's own stage from this machine's measured rate (the write's rate is too small to time reliably)
    assert est.stages[0].name == "landscape" and est.stages[0].measured and est.parts["load"] == 0.0
