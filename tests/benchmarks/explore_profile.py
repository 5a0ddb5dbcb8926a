"""Where Explore spends its time on a research-length run (issue 23): the Python side.

Writes the synthetic long run (``tests/long_run.py``: 30,000 tokens, 1,500 steps, SmolLM2's
shapes) into a temp cache, then runs the Explore page under Streamlit's AppTest twice in one
process: cold (empty page caches) and warm (a rerun: every ``st.cache_*`` holds the run), each
under cProfile (the script thread's CPU time). Prints the slowest project functions (cumulative) of the cold run to stderr and
one JSON line: wall seconds of both runs, the serialized sizes of what the page sends (every
plotly figure's spec and the browser stepper's payload) and the top functions.

    python tests/benchmarks/explore_profile.py [--n-tokens 30000] [--n-steps 1500] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _top(stats: pstats.Stats, n: int) -> list[dict]:
    """The ``n`` project functions (and streamlit's / plotly's entry points) with the most cumulative CPU time."""
    rows = []
    for (path, line, name), (_cc, _nc, _tt, cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if str(ROOT) in path and "/.venv/" not in path:
            rows.append({"fn": f"{Path(path).relative_to(ROOT)}:{line} {name}", "cum_s": round(cum, 3)})
        elif name in ("marshall", "_pickle_result", "read_result", "to_json", "plotly_chart", "loads", "dumps") and (
            "streamlit" in path or "plotly" in path
        ):
            rows.append({"fn": f"{Path(path).name}:{line} {name}", "cum_s": round(cum, 3)})
    rows.sort(key=lambda r: -r["cum_s"])
    return rows[:n]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-tokens", type=int, default=30_000)
    parser.add_argument("--n-steps", type=int, default=1_500)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--cache-dir", default=None, help="cache to use (default: a fresh temp dir)")
    args = parser.parse_args()

    from streamlit.testing.v1 import AppTest

    from backend.store.runs import RunStore
    from tests.long_run import write_long_run

    tmp = None if args.cache_dir else tempfile.TemporaryDirectory(prefix="explore_profile_")
    cache_dir = Path(args.cache_dir) if args.cache_dir else Path(tmp.name) / "cache"  # type: ignore[union-attr]
    t0 = time.perf_counter()
    key = write_long_run(RunStore(cache_dir), n_tokens=args.n_tokens, n_steps=args.n_steps)
    setup_s = time.perf_counter() - t0
    os.environ["RAML_CACHE_DIR"] = str(cache_dir)

    from app import stepper  # the page's own module object (AppTest runs the script in this process)

    payload_sizes: list[int] = []
    payload_seconds: list[float] = []
    build = stepper.stepper_payload

    def measured_payload(**kwargs):  # what the browser stepper is sent, measured as JSON
        out = build(**kwargs)
        t = time.perf_counter()
        payload_sizes.append(len(json.dumps(out)))
        payload_seconds.append(round(time.perf_counter() - t, 3))
        return out

    stepper.stepper_payload = measured_payload
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=900)
    at.query_params["run"] = key
    at.query_params["step"] = str(args.n_steps // 2)
    result: dict = {"n_tokens": args.n_tokens, "n_steps": args.n_steps, "run_setup_s": round(setup_s, 1)}
    # AppTest runs the page in its own script thread: profile that thread's CPU time (thread_time),
    # which a machine shared with other work does not inflate the way it inflates wall time
    from streamlit.runtime.scriptrunner.script_runner import ScriptRunner

    run_script = ScriptRunner._run_script
    profiles: list[tuple[cProfile.Profile, float]] = []

    def profiled(self, rerun_data):
        profile = cProfile.Profile(time.thread_time)
        c0 = time.thread_time()
        profile.enable()
        try:
            return run_script(self, rerun_data)
        finally:
            profile.disable()
            profiles.append((profile, time.thread_time() - c0))

    ScriptRunner._run_script = profiled  # type: ignore[method-assign]
    tops = {}
    for phase in ("cold", "warm"):
        profiles.clear()
        t0 = time.perf_counter()
        at.run()
        result[f"{phase}_s"] = round(time.perf_counter() - t0, 2)
        result[f"{phase}_cpu_s"] = round(sum(c for _, c in profiles), 2)
        merged = pstats.Stats(profiles[0][0]) if profiles else None
        for profile, _ in profiles[1:]:
            merged.add(profile)  # type: ignore[union-attr]
        tops[phase] = _top(merged, args.top) if merged is not None else []
        if at.exception:
            result["exception"] = [str(e.message)[:300] for e in at.exception]
    sizes = {}
    for el in at.get("plotly_chart"):
        sizes[el.proto.id.rsplit("-", 1)[-1][:40] or "chart"] = len(el.proto.spec)
    result["figure_spec_chars"] = sizes
    result["stepper_payload_chars"] = payload_sizes[-1] if payload_sizes else None
    result["stepper_payload_s"] = payload_seconds[-1] if payload_seconds else None
    result["text_spans_server"] = "\n".join(h.value for h in at.html).count('class="raml-step ')
    for phase in ("cold", "warm"):
        print(f"--- {phase}: slowest project functions (cumulative s)", file=sys.stderr)
        for row in tops[phase]:
            print(f"{row['cum_s']:8.3f}  {row['fn']}", file=sys.stderr)
    result["top_cold"] = tops["cold"][:12]
    result["top_warm"] = tops["warm"][:12]
    print(json.dumps(result))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
