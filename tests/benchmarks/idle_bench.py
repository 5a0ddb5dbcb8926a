"""Idle cost: the server's CPU while 0, 1 and 3 tabs sit open (Explore, Runs, Compare) and nobody touches them.

Makes a run of the tiny model (the same ~320-token imported trajectory as ``ui_bench.py``) in a
temp cache, starts ``streamlit run app/main.py`` on a free 127.0.0.1 port, then for 0, 1 and 3
headless Chromium tabs (Debian's /usr/bin/chromium through playwright) opens Explore on the run,
waits until every tab is drawn (on Explore: the browser-side stepper placed its marks), lets the page settle
and measures the server process's CPU time (psutil: user + system of the server and its children)
over ``--seconds`` idle seconds. Reported as % of one core. Also counts the websocket frames the
server sent every tab during the window (a rerun sends deltas: an idle page should send none).
Last stdout line: JSON.

    python tests/benchmarks/idle_bench.py [--seconds 60] [--settle 10] [--tabs 0,1,3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from tests.app_server import launch_chromium, streamlit_app  # noqa: E402
from tests.benchmarks.ui_bench import make_run  # noqa: E402


def server_process(port: int) -> psutil.Process:
    """The process listening on ``port`` (the streamlit server)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            return psutil.Process(conn.pid)
    raise RuntimeError(f"no process listens on port {port}")


def cpu_seconds(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


PAGES = {"explore": "", "runs": "runs", "compare": "compare", "dataset": "dataset"}


def open_tab(browser, url: str, key: str, frames: list[int], page_name: str = "explore"):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    index = len(frames)
    frames.append(0)

    def on_ws(ws):
        ws.on("framereceived", lambda _payload: frames.__setitem__(index, frames[index] + 1))

    page.on("websocket", on_ws)
    if page_name == "explore":
        page.goto(f"{url}/?run={key}&step=0", wait_until="domcontentloaded")
        page.wait_for_function("() => document.body.classList.contains('raml-live')", timeout=240_000)
    else:
        page.goto(f"{url}/{PAGES[page_name]}", wait_until="domcontentloaded")
        page.wait_for_selector("[data-testid='stSidebar']", timeout=240_000)
    return page


@contextmanager
def waiting_job(cache_dir: Path, key: str, mode: str):
    """With ``mode == "waiting"``: hold the cpu device lock and queue an image export of the run, so
    the server's worker claims it (state running) and waits for the lock while the tabs are open."""
    if mode == "none":
        yield
        return
    from filelock import FileLock

    from backend import jobs
    from backend.store.runs import RunStore

    (cache_dir / "locks").mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / "locks" / "device-cpu.lock")):
        store = RunStore(cache_dir)
        job_id = jobs.submit(store, "export_images", {"key": key})  # claimed once a tab starts the worker
        yield
        jobs.open_queue(store).cancel(job_id)


def pause(pages, seconds: float) -> None:
    """Wait, letting playwright deliver the tabs' websocket events (a plain sleep would hold them)."""
    if pages:
        pages[0].wait_for_timeout(seconds * 1000)
    else:
        time.sleep(seconds)


def wait_quiet(pages, frames: list[int], quiet_s: float, deadline_s: float = 120.0) -> None:
    """Wait until no tab got a websocket frame for ``quiet_s`` seconds (the first render and its
    follow-ups, such as the viewport report, are over), or ``deadline_s`` passed."""
    deadline = time.monotonic() + deadline_s
    last, since = list(frames), time.monotonic()
    while time.monotonic() < deadline:
        pause(pages, 0.5)
        if frames != last:
            last, since = list(frames), time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return


def measure(
    url: str, port: int, key: str, browser, tabs: int, seconds: float, settle: float, page_names: list[str]
) -> dict:
    frames: list[int] = []
    names = [page_names[i % len(page_names)] for i in range(tabs)]
    pages = [open_tab(browser, url, key, frames, name) for name in names]
    wait_quiet(pages, frames, settle)
    proc = server_process(port)
    before_frames = list(frames)
    opened_frames = list(frames)
    c0, t0 = cpu_seconds(proc), time.monotonic()
    pause(pages, seconds)
    c1, t1 = cpu_seconds(proc), time.monotonic()
    sent = [now - was for now, was in zip(frames, before_frames)]
    for page in pages:
        page.close()
    return {
        "tabs": tabs,
        "pages": names,
        "server_cpu_pct_of_core": round(100.0 * (c1 - c0) / (t1 - t0), 2),
        "window_s": round(t1 - t0, 1),
        "ws_frames_per_tab": sent,
        "ws_frames_before_window": opened_frames,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle window per configuration")
    parser.add_argument("--settle", type=float, default=10.0, help="quiet seconds (no frame) before measuring")
    parser.add_argument("--tabs", default="0,1,3")
    parser.add_argument(
        "--job",
        choices=("none", "waiting"),
        default="none",
        help="waiting: a job is running but makes no progress the whole time (it waits for the device "
        "lock this script holds, as behind another process's job): what polling costs then",
    )
    parser.add_argument("--cache-dir", default=None, help="reuse this cache (made with the run on first use)")
    parser.add_argument(
        "--pages", default="explore,runs,compare", help="pages the tabs open, in turn (explore, runs, compare, dataset)"
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from tests.app_server import free_port

    with tempfile.TemporaryDirectory(prefix="idle_bench_") as tmp:
        cache_dir = Path(args.cache_dir).resolve() if args.cache_dir else Path(tmp) / "cache"
        key = make_run(cache_dir, "tiny")  # a cache hit when --cache-dir already holds it
        port = free_port()
        result: dict = {
            "job": args.job,
            "cpus": os.cpu_count(),
            "load_avg_1min": round(os.getloadavg()[0], 2),
            "runs": [],
        }
        with streamlit_app(cache_dir, port=port) as url, sync_playwright() as pw, waiting_job(cache_dir, key, args.job):
            browser = launch_chromium(pw)
            for tabs in (int(t) for t in args.tabs.split(",")):
                row = measure(url, port, key, browser, tabs, args.seconds, args.settle, args.pages.split(","))
                print(json.dumps(row), file=sys.stderr)
                result["runs"].append(row)
            browser.close()
        result["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
