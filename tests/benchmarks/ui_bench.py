"""UI latency: time from a key press (→) to every Explore view updated, in real Chromium.

Makes (or reuses) a 150+ step run (an imported ~320-token trajectory, segmentation
``tokens:2``), starts ``streamlit run app/main.py`` on a free 127.0.0.1 port, opens the run and
presses → ``--presses`` times per configuration: window 1440x900 and 1920x1080, each once on the
machine as it is ("idle") and once with a CPU burner running (one busy process per core). A press
is timed inside the page from the key event's timestamp to the first animation frame in which
the step label, the highlighted text and the cursors of the loss chart, lens heatmap and path
chart all show the new step (they change in one synchronous handler: ``app/stepper.py``).
Last stdout line: JSON with median and p90 per configuration.

    python tests/benchmarks/ui_bench.py [--model tiny|smollm2-135m] [--cache-dir DIR] [--presses 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.app_server import VIEW_AT_JS, launch_chromium, streamlit_app  # noqa: E402

QUESTION = (
    "A train leaves at 9:40 and the trip takes 2 hours 35 minutes. A second train leaves 50 minutes "
    "later and is 15 minutes faster. When does the second train arrive?"
)
ANSWER = "12:50"
# ~320 tokens of thinking with a few reflection words; with tokens:2 segmentation it gives 150+ steps.
TRAJECTORY = (
    "First I need the arrival time of the first train. It leaves at 9:40 and the trip takes 2 hours 35 minutes. "
    "Adding 2 hours to 9:40 gives 11:40. Adding 35 more minutes gives 12:15. So the first train arrives at 12:15. "
    "Now the second train leaves 50 minutes later than the first one. 9:40 plus 50 minutes is 10:30. "
    "Wait, let me check that: 9:40 plus 20 minutes is 10:00, and 30 more minutes is 10:30. Yes, 10:30. "
    "The second train is 15 minutes faster, so its trip takes 2 hours 35 minutes minus 15 minutes, "
    "which is 2 hours 20 minutes. Starting at 10:30 and adding 2 hours gives 12:30. Adding 20 minutes gives 12:50. "
    "Hmm, I should verify this another way. The second train starts 50 minutes later but saves 15 minutes, "
    "so it arrives 50 minus 15 = 35 minutes after the first train. The first train arrives at 12:15, and "
    "12:15 plus 35 minutes is 12:50. Both ways agree, so the second train arrives at 12:50."
)
SEGMENTATION = "tokens:2"


def make_run(cache_dir: Path, model: str) -> str:
    from backend.pipeline.run import RunRequest, run_question
    from backend.store.runs import RunStore

    loaded = None
    if model == "tiny":
        from transformers import AutoTokenizer

        from backend.engine.models import resolve
        from tests.conftest import build_tiny

        spec = resolve("smollm2-135m")
        tok = AutoTokenizer.from_pretrained(str(spec.directory), gguf_file=spec.gguf_file)
        loaded = build_tiny("llama", tok, n_layers=8)
    req = RunRequest(
        question=QUESTION,
        answer=ANSWER,
        trajectory=TRAJECTORY,
        segmentation=SEGMENTATION,
        model=loaded.name if loaded else model,
        label="ui-bench",
    )
    return run_question(req, RunStore(cache_dir), loaded=loaded).key


def expected_views(cache_dir: Path, key: str) -> list[dict]:
    """What the view must show at each boundary: label prefix, cursor x, path ring position."""
    from backend.analysis.spaces import proxy
    from backend.plots import figures
    from backend.store.runs import RunStore

    run = RunStore(cache_dir).open(key)
    n_steps, n_tokens = len(run.steps), int(run.meta["summary"]["n_tokens"])
    cuts = figures.boundary_cuts(run.steps)
    layers = proxy.available_layers(run, "proxy")
    coords = proxy.project([run], layers[len(layers) // 2], "proxy").coords[0] if layers else None
    return [
        {
            "label": figures.step_label(b, n_steps),
            "step": b,
            "x": float(cuts[b]) / n_tokens,
            "path": None if coords is None else [float(coords[b, 0]), float(coords[b, 1])],
        }
        for b in range(n_steps + 1)
    ]


# Arm a one-shot listener: the next keydown resolves window.__ramlBench with the milliseconds from
# the key event to the first frame that shows every view at boundary `want`.
ARM_JS = """
(want) => {
  const isAt = %s;
  window.__ramlBench = new Promise((resolve, reject) => {
    window.addEventListener('keydown', function once(e) {
      window.removeEventListener('keydown', once, true);
      const t0 = e.timeStamp, limit = performance.now() + 20000;
      function check() {
        if (isAt(want)) return resolve(performance.now() - t0);  // this frame paints the views
        if (performance.now() > limit) return reject(new Error('view did not update'));
        requestAnimationFrame(check);
      }
      requestAnimationFrame(check);
    }, true);
  });
}
""" % VIEW_AT_JS.strip()

VIEWPORTS = ((1440, 900), (1920, 1080))


def cpu_burner() -> list[subprocess.Popen]:
    """One busy Python process per core (stopped by the caller)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return {
        "median_ms": round(statistics.median(times), 1),
        "p90_ms": round(p90, 1),
        "max_ms": round(max(times), 1),
        "presses": len(times),
    }


def time_presses(page, url: str, key: str, views: list[dict], presses: int) -> list[float]:
    page.goto(f"{url}/?run={key}&step=0", wait_until="domcontentloaded")
    page.wait_for_function("() => document.body.classList.contains('raml-live')", timeout=120_000)
    page.wait_for_function(VIEW_AT_JS, arg=views[0], timeout=120_000)
    page.wait_for_function(  # the window height reached the server and the views were sized for it
        "() => window.__ramlStepper && window.__ramlStepper.data.viewport_h === innerHeight", timeout=120_000
    )
    page.wait_for_timeout(500)  # let the first render settle
    page.locator("#raml-step-label").click()
    times = []
    for b in range(1, presses + 1):
        page.evaluate(ARM_JS, views[b])
        page.keyboard.press("ArrowRight")
        times.append(float(page.evaluate("() => window.__ramlBench")))
        page.wait_for_timeout(120)  # a person reads between presses
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="tiny", help="tiny (default; the UI cost does not depend on it) or smollm2-135m"
    )
    parser.add_argument("--cache-dir", default=None, help="cache to use (default: a fresh temp dir)")
    parser.add_argument("--presses", type=int, default=30)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = None
    if args.cache_dir:
        cache_dir = Path(args.cache_dir).resolve()
    else:
        tmp = tempfile.TemporaryDirectory(prefix="ui_bench_")
        cache_dir = Path(tmp.name) / "cache"
    t0 = time.perf_counter()
    key = make_run(cache_dir, args.model)
    setup_s = time.perf_counter() - t0
    views = expected_views(cache_dir, key)
    n_steps = len(views) - 1
    presses = min(args.presses, n_steps)
    result: dict = {"n_steps": n_steps, "model": args.model, "run_setup_s": round(setup_s, 1), "cpus": os.cpu_count()}
    with streamlit_app(cache_dir) as url, sync_playwright() as pw:
        browser = launch_chromium(pw)
        for width, height in VIEWPORTS:
            for load in ("idle", "cpu_burner"):
                burners = cpu_burner() if load == "cpu_burner" else []
                try:
                    page = browser.new_page(viewport={"width": width, "height": height})
                    times = time_presses(page, url, key, views, presses)
                    page.close()
                finally:
                    for proc in burners:
                        proc.kill()
                        proc.wait()
                result[f"{width}x{height}_{load}"] = summary(times)
                print(f"{width}x{height} {load}: {result[f'{width}x{height}_{load}']}", file=sys.stderr)
        browser.close()
    print(json.dumps(result))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
