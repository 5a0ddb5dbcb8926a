"""UI latency: time from pressing "Next" to the updated Explore view, in real Chromium.

Makes (or reuses) a 150+ step run (an imported ~320-token trajectory, segmentation
``tokens:2``), starts ``streamlit run app/main.py`` on a free 127.0.0.1 port, opens the run and
presses Next ``--presses`` times. Each press is timed inside the page from the click until the
step label, the highlighted text and the cursors of the loss chart, lens heatmap and path chart
all show the new step. Last stdout line: ``{"median_ms", "p90_ms", "n_steps", ...}``.

    python tests/benchmarks/ui_bench.py [--model smollm2-135m|tiny] [--cache-dir DIR] [--presses 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.app_server import TIME_NEXT_JS, VIEW_AT_JS, launch_chromium, streamlit_app  # noqa: E402

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
    from backend.jobs import RunRequest, run_question
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
    from backend.analysis import proxy
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default) or tiny")
    parser.add_argument("--cache-dir", default=None, help="cache to use (default: a fresh temp dir)")
    parser.add_argument("--presses", type=int, default=20)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
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
    times: list[float] = []
    with streamlit_app(cache_dir) as url, sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(f"{url}/?run={key}&step=0", wait_until="domcontentloaded")
        page.wait_for_function(VIEW_AT_JS, arg=views[0], timeout=90_000)
        page.wait_for_timeout(500)  # let the first render settle
        for b in range(1, presses + 1):
            times.append(float(page.evaluate(TIME_NEXT_JS, views[b])))
            page.wait_for_timeout(150)  # a person reads between presses; no queued reruns
        browser.close()
    times_sorted = sorted(times)
    p90 = times_sorted[min(len(times_sorted) - 1, int(round(0.9 * (len(times_sorted) - 1))))]
    result = {
        "median_ms": round(statistics.median(times), 1),
        "p90_ms": round(p90, 1),
        "n_steps": n_steps,
        "presses": presses,
        "min_ms": round(min(times), 1),
        "max_ms": round(max(times), 1),
        "model": args.model,
        "viewport": f"{args.width}x{args.height}",
        "run_setup_s": round(setup_s, 1),
    }
    print(json.dumps(result))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
