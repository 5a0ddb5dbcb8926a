"""Jobs that outlive the page, in real Chromium against a real ``streamlit run``:
start a run from the Runs page, visit two other pages, come back: the job finished and its
run opens; a queued job is cancelled from the jobs panel; a server SIGKILLed mid-job leaves
no partial run and, after a restart, the job shows failed + resumable and Resume completes it.
Screenshots go to tests/artifacts/."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY

from tests.app_server import CHROMIUM, FIRST_PAGE_MS, ROOT, free_port, streamlit_app

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt install chromium)")


@pytest.fixture()
def cache_copy(tiny_pristine, tmp_path):
    """The tiny run's cache as it was made (whatever other tests wrote into it since)."""
    from backend.store.runs import RunStore

    root = tmp_path / "cache"
    shutil.copytree(tiny_pristine, root)
    return RunStore(root)


def _fill_new_run(page, model: str, question: str, trajectory: str) -> None:
    page.get_by_role("tab", name="New run").click(timeout=FIRST_PAGE_MS)  # a busy machine renders slowly
    page.locator(".st-key-runs_new_model input").fill(model)
    page.locator(".st-key-runs_new_question textarea").fill(question)
    page.locator(".st-key-runs_new_answer input").fill("6")
    page.locator(".st-key-runs_new_trajectory textarea").fill(trajectory)
    page.get_by_role("button", name="Estimate cost").click()
    page.get_by_text("Estimated cost:", exact=False).first.wait_for(timeout=180_000)
    page.locator(".st-key-runs_new_start button").click()


def _on_page(name: str):
    """A URL test for ``wait_for_url``: the page ``name``, whatever its query (the Dataset page adds
    ``?q=...`` as it opens; a glob ``**/dataset`` then never matched, a CI failure)."""
    return lambda url: urlparse(url).path.rstrip("/").endswith("/" + name)


def _card(page, job_id: int):
    return page.locator(f".st-key-job_{job_id}")


def _wait_card_text(page, job_id: int, text: str, timeout: float = 400_000) -> None:
    _card(page, job_id).get_by_text(text, exact=False).first.wait_for(timeout=timeout)


def _nav(page, name: str) -> None:
    page.locator("[data-testid='stSidebarNav']").get_by_role("link", name=name).click()


def test_run_survives_navigation_opens_and_a_queued_job_cancels(
    cache_copy, tiny_model_dir, browser, monkeypatch, tmp_path
):
    from backend.jobs.queue import JobQueue

    store = cache_copy
    before = set(store.list_runs()["key"])
    # the first job pauses with its files complete until the test releases it (no race with a
    # timer: it is surely still running while the second job is cancelled)
    release = tmp_path / "release-job-1"
    monkeypatch.setenv("RAML_TEST_PAUSE_AT", "write")
    monkeypatch.setenv("RAML_TEST_PAUSE_UNTIL", str(release))
    monkeypatch.setenv("RAML_TEST_PAUSE_SECONDS", "600")
    ARTIFACTS.mkdir(exist_ok=True)
    with streamlit_app(store.root) as url:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"{url}/runs", wait_until="domcontentloaded")
        _fill_new_run(page, tiny_model_dir, SAMPLE_QUESTION, SAMPLE_TRAJECTORY)
        _card(page, 1).wait_for(timeout=180_000)
        page.screenshot(path=str(ARTIFACTS / "jobs_panel_running_1440x900.png"))

        # a second job queues behind the first; cancel it from the panel
        _fill_new_run(page, tiny_model_dir, "What is 7 - 4?", "Seven minus four. Check: 7 - 4 = 3. So 3.")
        _card(page, 2).get_by_text("queued", exact=False).first.wait_for(timeout=180_000)
        _card(page, 2).get_by_role("button", name="Cancel").click()
        _wait_card_text(page, 2, "cancelled")
        assert JobQueue(store).get(1).state in ("queued", "waiting", "running"), "the first job is still at work"
        release.touch()  # let it finish while we navigate

        _nav(page, "Compare")
        page.wait_for_url(_on_page("compare"), timeout=120_000)
        _nav(page, "Dataset")
        page.wait_for_url(_on_page("dataset"), timeout=120_000)
        _nav(page, "Runs")
        page.wait_for_url(_on_page("runs"), timeout=120_000)
        _wait_card_text(page, 1, "finished in")
        page.screenshot(path=str(ARTIFACTS / "jobs_panel_finished_1440x900.png"))
        job = JobQueue(store).get(1)
        assert job.state == "finished" and len(job.results) == 1
        (key,) = job.results
        assert set(store.list_runs()["key"]) - before == {key}
        assert JobQueue(store).get(2).state == "cancelled" and not JobQueue(store).get(2).results

        _card(page, 1).get_by_role("link", name=f"Open run {key[:12]}").click()
        page.wait_for_url(f"**run={key}**", timeout=120_000)
        n_steps = len(store.open(key).steps)
        page.wait_for_function(
            "(label) => { const el = document.getElementById('raml-step-label');"
            " return el && el.textContent.trim().startsWith(label); }",
            arg=f"Start · 0 / {n_steps}",
            timeout=60_000,
        )
        assert "Traceback" not in page.content()
        page.close()


def _start_server(cache_root: Path, port: int, extra_env: dict) -> subprocess.Popen:
    env = dict(os.environ, RAML_CACHE_DIR=str(cache_root), PYTHONUNBUFFERED="1", **extra_env)
    log = open(cache_root.parent / f"streamlit-kill-{port}.log", "w")
    args = ["--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"), *args],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "streamlit did not start"
        time.sleep(0.3)


def test_server_killed_mid_job_then_job_is_failed_resumable(cache_copy, tiny_model_dir, browser):
    from backend.jobs.queue import JobQueue

    store = cache_copy
    before = set(store.list_runs()["key"])
    port = free_port()
    proc = _start_server(Path(store.root), port, {"RAML_TEST_PAUSE_AT": "write"})  # pauses for an hour
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/runs", wait_until="domcontentloaded")
        _fill_new_run(page, tiny_model_dir, SAMPLE_QUESTION, SAMPLE_TRAJECTORY)
        _wait_card_text(page, 1, "writing to the cache")
        assert any((Path(store.root) / "tmp").iterdir()), "the run's files sit complete in the temp dir"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        page.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert set(store.list_runs()["key"]) == before, "no partial run"
    with streamlit_app(store.root) as url:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"{url}/runs", wait_until="domcontentloaded")
        _wait_card_text(page, 1, "server stopped during this job")
        page.screenshot(path=str(ARTIFACTS / "jobs_panel_failed_resumable_1440x900.png"))
        job = JobQueue(store).get(1)
        assert job.state == "failed" and job.resumable and not job.results
        assert set(store.list_runs()["key"]) == before
        assert not any((Path(store.root) / "tmp").iterdir()), "the dead job's temp files were removed"
        _card(page, 1).get_by_role("button", name="Resume").click()
        _wait_card_text(page, 1, "finished in")
        job = JobQueue(store).get(1)
        assert job.state == "finished" and set(store.list_runs()["key"]) - before == set(job.results)
        page.close()
