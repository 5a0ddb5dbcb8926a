"""Issue 26 in real Chromium: an idle page costs nothing, a page with a running job still updates.

Idle: with no job queued or running, an open Explore tab gets no websocket frame over a window
(no fragment polls, no rerun; counted frames, not time). Active: a job that waits for the device
lock (held here, as behind another process's job) is shown waiting for the device; once the lock is released it
runs and the same, untouched page shows it finished (the jobs panel's backed-off poll). Waits are
conditions with deadlines."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.app_server import CHROMIUM

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt install chromium)")
DEADLINE_MS = 300_000
QUIET_S = 3.0
WINDOW_MS = 6_000


def _cache_root(url: str) -> Path:
    """The explore_app server's cache: RAML_CACHE_DIR of the process started with its port."""
    port = url.rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"--server.port" in argv and argv[argv.index(b"--server.port") + 1] == port.encode():
                env = dict(v.split(b"=", 1) for v in (proc / "environ").read_bytes().split(b"\0") if b"=" in v)
                return Path(env[b"RAML_CACHE_DIR"].decode())
        except (OSError, ValueError, IndexError, KeyError):
            continue
    raise AssertionError(f"no server on port {port}")


def _count_frames(page) -> list[int]:
    frames = [0]
    page.on("websocket", lambda ws: ws.on("framereceived", lambda _p: frames.__setitem__(0, frames[0] + 1)))
    return frames


def _wait_quiet(page, frames: list[int], deadline_s: float = 240.0) -> None:
    """Until no frame came for QUIET_S seconds (the first render's follow-ups are over)."""
    deadline = time.monotonic() + deadline_s
    last, since = frames[0], time.monotonic()
    while time.monotonic() - since < QUIET_S:
        assert time.monotonic() < deadline, "the page never went quiet"
        page.wait_for_timeout(250)  # lets playwright deliver the websocket events
        if frames[0] != last:
            last, since = frames[0], time.monotonic()


def test_idle_page_gets_no_frames_and_a_running_job_still_shows_up(explore_app, browser):
    from filelock import FileLock

    from backend import jobs
    from backend.store.runs import RunStore

    url, key, _run = explore_app
    root = _cache_root(url)
    store = RunStore(root)
    queue = jobs.open_queue(store)
    deadline = time.monotonic() + 300
    while queue.list(limit=0):  # another test's job still at work: this test needs an idle queue
        assert time.monotonic() < deadline, "the shared server's queue never became idle"
        time.sleep(0.5)

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    frames = _count_frames(page)
    page.goto(f"{url}/?run={key}&step=0", wait_until="domcontentloaded")
    page.wait_for_function("() => document.body.classList.contains('raml-live')", timeout=DEADLINE_MS)
    page.wait_for_function(  # the first render's follow-up: the window height reached the server, views sized
        "() => window.__ramlStepper && window.__ramlStepper.data.viewport_h === innerHeight", timeout=DEADLINE_MS
    )
    _wait_quiet(page, frames)
    assert frames[0] > 0, "the frame counter saw the page's own render"
    before = frames[0]
    page.wait_for_timeout(WINDOW_MS)
    assert frames[0] == before, f"an idle page got {frames[0] - before} frames: something polls"

    (root / "locks").mkdir(exist_ok=True)
    lock = FileLock(str(root / "locks" / "device-cpu.lock"))
    with lock:
        job_id = jobs.submit(store, "export_images", {"key": key, "formats": ["svg"]})
        page.reload(wait_until="domcontentloaded")  # a job of another process shows at the next interaction
        card = page.locator(f".st-key-job_{job_id}")
        card.get_by_text("waiting for the device", exact=False).first.wait_for(timeout=DEADLINE_MS)
    # released: the job runs and finishes; nobody touches the page
    card.get_by_text("finished in", exact=False).first.wait_for(timeout=DEADLINE_MS)
    assert queue.get(job_id).state == "finished"
    page.close()
