"""The length sweep (issue 23 item 1): engine time, engine / one-forward ratio and peak RSS against
the trajectory length n, with every token a cut point and with a stride.

    python tests/benchmarks/length_bench.py [--points MODEL:N:CUTS,...] [--timeout-s 1800]

Each (model, n, cuts) point runs in a fresh process, so its peak RSS is its own: build or load the
model, warm up on 64 tokens, time one plain forward over prompt + trajectory (the better of two),
reset the process's peak RSS (``/proc/self/clear_refs``), run the engine once (``analyze``) and
read the peak again. Ids are seeded random (``common.synthetic_request``: P = 40, m = 13 probe
tokens, a step boundary every 20 tokens, so the 32k point has 1,639 boundaries with the lens grid).
``tiny`` is a random Llama of the test suite's tiny shape (4 layers, d = 64, 4 heads, 2 KV
heads) with room for 40k positions and a vocabulary of 1,024: with the suite's 49,152 its LM head
(3.1M parameters against a 0.2M body) dominates the engine's readout of C·m_a answer rows, which a
plain forward (one row) never pays; ``smollm2-135m`` is the real one (its LM head is a quarter of
the model). The default points: every token and stride 16 at 1k and 4k (tiny) and 1k (SmolLM2),
then coarser strides at 16k, 32k (tiny) and SmolLM2 at 4k, which fit this CPU's time; a point is
``MODEL:N:CUTS`` with CUTS ``all`` or ``stride:K``.

Goals: engine / forward within 1.2x of the floor 1 + C·m / (P + n) (≈ 1 + m for every token) at
every n; the engine's extra peak RSS (peak during the engine − RSS before it) linear in n: its
least-squares slope is reported (MB per 1k tokens) with the growth over the last doubling of n
(≈ 2 when linear, 4 when quadratic). Beside it the work floor (``common.work_floor``): the same
tokens plus the LM-head rows of the curve and the lens grid, which the token floor leaves out and
which with a stride are most of the work. Timings taken on a shared machine are noisy; the ratio of
two numbers of one process is what to read. Last stdout line: one JSON object
{"points": [...], "slopes_mb_per_1k_tokens": {"MODEL cuts": slope}, "last_doubling_growth": {...},
"worst_over_floor", "worst_over_work_floor", "goals": {...}}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import floor_ratio, peak_rss_mb, slope, synthetic_request, work_floor

DEFAULT_POINTS = (
    "tiny:1024:all,tiny:1024:stride:16,tiny:4096:all,tiny:4096:stride:16,smollm2-135m:1024:all,"
    "smollm2-135m:1024:stride:16,tiny:16384:stride:256,smollm2-135m:4096:stride:64,tiny:32768:stride:1024"
)
TINY_VOCAB = 1024  # small, so the LM head (C·m_a rows × V) does not hide the body's scaling in n


def tiny_long_model(vocab: int = TINY_VOCAB):
    """The test suite's tiny Llama shape, 40k positions, a vocabulary of ``vocab`` (the suite's
    49,152 makes its LM head 15x its body)."""
    from common import tiny_llama

    return tiny_llama(vocab, hidden=64)


def best_forward_seconds(model, ids: list[int], at_least: int, budget_s: float = 2.0, at_most: int = 10) -> float:
    """The best of ``at_least`` plain forwards, and of more while they take under ``budget_s`` in all:
    a 30 ms forward (the tiny model at 1k) read twice varied 1.7x between runs of this sweep."""
    from backend.engine.probe import forward_seconds

    times = [forward_seconds(model, ids) for _ in range(at_least)]
    while sum(times) < budget_s and len(times) < at_most:
        times.append(forward_seconds(model, ids))
    return min(times)


def _status_mb(field: str) -> float | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def one(model_name: str, n_tokens: int, cuts: str) -> dict:
    # isort: off
    import backend  # noqa: F401  # before torch: the project's OpenMP wait policy (docs/threads.md)
    import torch

    # isort: on

    from backend.engine import threads
    from backend.engine.probe import analyze

    threads.configure_torch_threads()
    torch.set_grad_enabled(False)
    t0 = time.perf_counter()
    if model_name == "tiny":
        model = tiny_long_model()
    else:
        from backend.engine.models import load_model

        model = load_model(model_name, device="cpu").model
    load_s = time.perf_counter() - t0
    vocab = model.config.vocab_size
    analyze(model, synthetic_request(vocab, 64, "all"))  # warm-up (kernels, allocator)
    req = synthetic_request(vocab, n_tokens, cuts)
    context = req.prompt_ids + req.trajectory_ids
    forward_s = best_forward_seconds(model, context, at_least=2 if n_tokens <= 4096 else 1)
    rss_before = _status_mb("VmRSS")
    reset = reset_peak_rss()
    t0 = time.perf_counter()
    result = analyze(model, req)
    engine_s = time.perf_counter() - t0
    engine_peak = _status_mb("VmHWM") if reset else peak_rss_mb()
    floor = floor_ratio(req, len(result.cuts))
    floor_w = work_floor(req, len(result.cuts), len(result.boundary_cuts), model)
    ratio = engine_s / forward_s
    return {
        "model": model_name,
        "n_tokens": n_tokens,
        "cuts": cuts,
        "n_cuts": int(len(result.cuts)),
        "n_boundaries": int(len(result.boundary_cuts)),
        "probe_tokens": len(req.probe_ids),
        "torch_threads": torch.get_num_threads(),
        "load_s": round(load_s, 2),
        "forward_s": round(forward_s, 4),
        "engine_s": round(engine_s, 3),
        "prefill_s": round(result.timings["prefill_s"], 4),
        "probe_s": round(result.timings["probe_s"], 3),
        "readout_s": round(result.timings.get("readout_s", 0.0), 3),
        "vocab": vocab,
        "engine_over_forward": round(ratio, 2),
        "floor": round(floor, 2),
        "over_floor": round(ratio / floor, 3),
        "work_floor": round(floor_w, 2),
        "over_work_floor": round(ratio / floor_w, 3),
        "engine_tokens_per_s": round((len(context) + len(result.cuts) * len(req.probe_ids)) / engine_s, 1),
        "rss_before_engine_mb": round(rss_before or 0, 1),
        "engine_peak_rss_mb": round(engine_peak or 0, 1),
        "engine_extra_rss_mb": round((engine_peak or 0) - (rss_before or 0), 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_reset": reset,
    }


def summarise(points: list[dict]) -> dict:
    """Slopes of the engine's extra RSS in n per (model, cuts), the growth over the last doubling,
    the worst ratio to the floor and the goals."""
    groups: dict[str, list[dict]] = {}
    for p in points:
        if "error" not in p:
            groups.setdefault(f"{p['model']} {'all' if p['cuts'] == 'all' else 'stride'}", []).append(p)
    slopes, growth = {}, {}
    for name, rows in groups.items():
        rows.sort(key=lambda r: r["n_tokens"])
        s = slope([r["n_tokens"] / 1000 for r in rows], [r["engine_extra_rss_mb"] for r in rows])
        slopes[name] = None if s is None else round(s, 2)
        if len(rows) >= 2 and rows[-2]["engine_extra_rss_mb"] > 0:
            a, b = rows[-2], rows[-1]
            growth[name] = {
                "n": [a["n_tokens"], b["n_tokens"]],
                "extra_rss_ratio": round(b["engine_extra_rss_mb"] / a["engine_extra_rss_mb"], 2),
            }
    measured = [p for p in points if "error" not in p]
    worst = max((p["over_floor"] for p in measured), default=None)
    worst_work = max((p.get("over_work_floor", 0.0) for p in measured), default=None)
    return {
        "slopes_mb_per_1k_tokens": slopes,
        "last_doubling_growth": growth,
        "worst_over_floor": worst,
        "worst_over_work_floor": worst_work,
        "goals": {
            "engine_within_1.2x_of_floor": worst is not None and worst <= 1.2,
            "failed_points": [f"{p['model']}:{p['n_tokens']}:{p['cuts']}" for p in points if "error" in p],
        },
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", default=DEFAULT_POINTS, help="MODEL:N:CUTS,... (tiny or a model name; all | stride:K)")
    p.add_argument("--timeout-s", type=int, default=1800, help="per point")
    p.add_argument("--one", nargs=3, metavar=("MODEL", "N", "CUTS"), default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one is not None:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.one[2])))
        return
    points = []
    print(
        f"{'model':>14} {'n':>6} {'cuts':>11} {'fwd_s':>8} {'engine_s':>9} {'eng/fwd':>8} {'floor':>6} "
        f"{'x floor':>8} {'work fl':>8} {'x work':>7} {'extra MB':>9} {'peak MB':>8}",
        flush=True,
    )
    for spec in [s.strip() for s in args.points.split(",") if s.strip()]:
        model_name, n, cuts = spec.split(":", 2)
        cmd = [sys.executable, __file__, "--one", model_name, n, cuts]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout_s, env=os.environ)
            if done.returncode:
                raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"{model_name:>14} {n:>6} {cuts:>11} {row['forward_s']:>8.3f} {row['engine_s']:>9.2f} "
                f"{row['engine_over_forward']:>8.2f} {row['floor']:>6.2f} {row['over_floor']:>8.3f} "
                f"{row['work_floor']:>8.2f} {row['over_work_floor']:>7.3f} "
                f"{row['engine_extra_rss_mb']:>9.1f} {row['peak_rss_mb']:>8.1f}",
                flush=True,
            )
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
            row = {"model": model_name, "n_tokens": int(n), "cuts": cuts, "error": str(exc)[:300]}
            print(json.dumps(row), flush=True)
        points.append(row)
    print(json.dumps({"points": points, **summarise(points)}))


if __name__ == "__main__":
    main()
