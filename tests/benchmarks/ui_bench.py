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

**Long-run mode** (issue 23, ``--long``): the run is the synthetic research-length run of
``tests/long_run.py`` (30,000 tokens, 1,500 steps, SmolLM2's shapes: 30 layers, d = 576; written
through the run store, no model), opened at step ``--start`` (750). It measures the open time
(``page.goto`` to every view live at the URL's step), cold (the server's first page of the run)
and warm (a new tab on the same server: the server's caches hold the run; ``--opens`` of each),
with the browser's long tasks meanwhile, beside the same for a short run (320 tokens, 160 steps,
same shapes) in the same server as the baseline of a shared machine, the warm opens of the two
interleaved, then the presses at
1440x900, idle and with a CPU burner (one busy process per core), and what the page holds: ``.raml-step`` spans in the text box, DOM elements,
the points each chart draws, and the stepper's payload in characters.

    python tests/benchmarks/ui_bench.py --long [--n-tokens 30000] [--n-steps 1500] [--presses 30]
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


PAGE_FACTS_JS = """
() => {
  const charts = {};
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const host = gd.closest('[class*="st-key-"]');
    const key = host ? [...host.classList].find((c) => c.startsWith('st-key-')).slice(7) : 'chart';
    charts[key] = (gd._fullData || []).reduce((n, t) => n + (t._length || (t.x && t.x.length) || 0), 0);  // x values drawn, all traces
    const z = (gd._fullData || []).find((t) => t.type === 'heatmap');
    if (z) charts[key + '_columns'] = Array.isArray(z.z[0]) ? z.z[0].length : 0;
  }
  const s = window.__ramlStepper;
  return {
    text_spans: document.querySelectorAll('.raml-traj-inner .raml-step').length,
    dom_elements: document.getElementsByTagName('*').length,
    chart_points: charts,
    stepper_payload_chars: s ? JSON.stringify(s.data).length : null,
    handler_ms_median: s && s.times.length ? s.times.slice().sort((a, b) => a - b)[Math.floor(s.times.length / 2)] : null,
  };
}
"""


# The browser's main thread busy time while the page opens: the sum of its long tasks (> 50 ms)
LONGTASKS_JS = """
window.__ramlLong = 0;
new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__ramlLong += e.duration; })
  .observe({type: 'longtask', buffered: true});
"""


def open_page(browser, url: str, key: str, views: list[dict], start: int, viewport=(1440, 900)):
    """A new tab on Explore at ``start``: (page, seconds from goto to every view live at that step,
    seconds of long tasks on the browser's main thread meanwhile)."""
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.add_init_script(LONGTASKS_JS)
    t0 = time.perf_counter()
    page.goto(f"{url}/?run={key}&step={start}", wait_until="domcontentloaded")
    page.wait_for_function("() => document.body.classList.contains('raml-live')", timeout=600_000)
    page.wait_for_function(VIEW_AT_JS, arg=views[start], timeout=600_000)
    seconds = time.perf_counter() - t0
    return page, seconds, float(page.evaluate("() => window.__ramlLong")) / 1000


def long_main(args) -> int:
    """``--long``: open and step times on the synthetic research-length run (module docstring)."""
    from playwright.sync_api import sync_playwright

    from backend.store.runs import RunStore
    from tests.long_run import write_long_run

    tmp = None
    if args.cache_dir:
        cache_dir = Path(args.cache_dir).resolve()
    else:
        tmp = tempfile.TemporaryDirectory(prefix="ui_bench_long_")
        cache_dir = Path(tmp.name) / "cache"
    t0 = time.perf_counter()
    key = write_long_run(RunStore(cache_dir), n_tokens=args.n_tokens, n_steps=args.n_steps)
    setup_s = time.perf_counter() - t0
    # the baseline: a short run of the same shapes in the same server, opened the same way (on a
    # shared machine the ratio of the two is what means something)
    short_key = write_long_run(RunStore(cache_dir), n_tokens=320, n_steps=160)
    short_views = expected_views(cache_dir, short_key)
    views = expected_views(cache_dir, key)
    n_steps = len(views) - 1
    start = min(args.start, n_steps)
    presses = min(args.presses, (n_steps - start) // 2)  # idle, then as many with a CPU burner
    result: dict = {
        "mode": "long",
        "n_tokens": args.n_tokens,
        "n_steps": n_steps,
        "run_setup_s": round(setup_s, 1),
        "cpus": os.cpu_count(),
        "load_avg": round(os.getloadavg()[0], 1),
    }
    with streamlit_app(cache_dir) as url, sync_playwright() as pw:
        browser = launch_chromium(pw)
        runs = {"short": (short_key, short_views, 80), "long": (key, views, start)}
        opens: dict = {"short": [], "long": []}
        busy: dict = {"short": [], "long": []}
        for name, (k, v, at) in runs.items():
            page, cold, _ = open_page(browser, url, k, v, at)
            page.close()
            prefix = "" if name == "long" else "short_"
            result[f"{prefix}open_cold_s"] = round(cold, 2)
        # warm: the server has the run and its figures; a new tab each time, short and long
        # interleaved (their order alternating) so a shared machine's drift lands on both alike
        page, last = None, None
        for i in range(args.opens):
            for name in ("short", "long") if i % 2 == 0 else ("long", "short"):
                if page is not None:
                    page.close()
                k, v, at = runs[name]
                page, seconds, long_tasks = open_page(browser, url, k, v, at)
                opens[name].append(seconds)
                busy[name].append(long_tasks)
                last = name
        if last != "long":  # the presses run on the long run
            if page is not None:
                page.close()
            page, _, _ = open_page(browser, url, key, views, start)
        for name in runs:
            prefix = "" if name == "long" else "short_"
            result[f"{prefix}open_warm_s"] = round(statistics.median(opens[name]), 2)
            result[f"{prefix}open_warm_all_s"] = [round(x, 2) for x in opens[name]]
            result[f"{prefix}open_browser_long_tasks_s"] = round(statistics.median(busy[name]), 2)
        result["open_warm_long_over_short"] = round(result["open_warm_s"] / result["short_open_warm_s"], 2)
        page.wait_for_function(  # sized for this window before timing the presses
            "() => window.__ramlStepper && Math.abs(window.__ramlStepper.data.viewport_h - innerHeight) <= 40",
            timeout=600_000,
        )
        page.wait_for_function(VIEW_AT_JS, arg=views[start], timeout=600_000)
        page.wait_for_timeout(500)
        page.locator("#raml-step-label").click()
        for i, load in enumerate(("idle", "cpu_burner")):  # the same page, on from where the idle presses ended
            burners = cpu_burner() if load == "cpu_burner" else []
            try:
                times = []
                first = start + i * presses + 1
                for b in range(first, first + presses):
                    page.evaluate(ARM_JS, views[b])
                    page.keyboard.press("ArrowRight")
                    times.append(float(page.evaluate("() => window.__ramlBench")))
                    page.wait_for_timeout(120)
            finally:
                for proc in burners:
                    proc.kill()
            result[f"1440x900_{load}"] = summary(times)
        result["page"] = page.evaluate(PAGE_FACTS_JS)
        page.close()
        browser.close()
    print(json.dumps(result))
    if tmp is not None:
        tmp.cleanup()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="tiny", help="tiny (default; the UI cost does not depend on it) or smollm2-135m"
    )
    parser.add_argument("--cache-dir", default=None, help="cache to use (default: a fresh temp dir)")
    parser.add_argument("--presses", type=int, default=30)
    parser.add_argument("--long", action="store_true", help="the synthetic 30k-token, 1,500-step run (issue 23)")
    parser.add_argument("--n-tokens", type=int, default=30_000, help="--long: trajectory tokens")
    parser.add_argument("--n-steps", type=int, default=1_500, help="--long: steps")
    parser.add_argument("--start", type=int, default=750, help="--long: the step the page opens at")
    parser.add_argument("--opens", type=int, default=5, help="--long: warm opens of each run (interleaved)")
    args = parser.parse_args()
    if args.long:
        return long_main(args)
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
