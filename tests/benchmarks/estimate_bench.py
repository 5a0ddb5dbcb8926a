"""Honest estimates, measured: estimate / actual for 10 mixed jobs after one warm-up job.

    python tests/benchmarks/estimate_bench.py [--model smollm2-135m | --tiny] [--tokens 160]

In a fresh cache of its own, in this process, through the job queue as the CLI runs it: one
warm-up job (an imported trace: it teaches the load and the scoring rate), then ten jobs of
mixed kinds on small sizes: a new run (generation), an import, step importance, a resampled
and an edited branch, an import with a stride, a proxy surface, a random landscape, a batch of
two imports, and an import after the model was dropped from memory (its load counted). Each
job's estimate is the one shown before its work starts (the job's plan at submit); its actual
time the job's own wall time. Every job teaches the next ones (the estimates learn per stage).

Goal (issue 26): every ratio within 0.5x-2x. Timings on a shared machine are noisy; the
ratios are what matter. Last stdout line: one JSON object {"model", "jobs": [{"job", "kind",
"estimate_s", "low_s", "high_s", "actual_s", "ratio", "in_range"}], "median_ratio",
"worst_ratio" (the ratio farthest from 1, as estimate / actual), "within_0.5x_2x"}.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import REASONING


def trace(repeats: int) -> str:
    return REASONING * repeats


QUESTION = "Maya has 5 apples. She buys 2 bags with 4 apples each, gives 6 away and eats 1. How many are left?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tiny", action="store_true", help="a tiny random Llama (SmolLM2's tokenizer) instead")
    ap.add_argument("--repeats", type=int, default=2, help="the import traces: REASONING × this (≈ 75 tokens each)")
    ap.add_argument("--new-tokens", type=int, default=24)
    args = ap.parse_args()

    from backend.engine import models, provider
    from backend.jobs import open_queue, request_params, run_here
    from backend.pipeline.request import RunRequest
    from backend.store.runs import RunStore

    model = args.model
    if args.tiny:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from conftest import build_tiny

        from backend.engine.models import load_tokenizer, resolve

        loaded = build_tiny("llama", load_tokenizer(resolve("smollm2-135m")), name="tiny-estimate-bench")
        provider.register(loaded)
        model = loaded.name

    store = RunStore(Path(tempfile.mkdtemp(prefix="raml-estimate-bench-")))
    queue = open_queue(store)

    def run_params(trajectory: str | None, **extra) -> dict:
        req = RunRequest(question=QUESTION, answer="6", trajectory=trajectory, model=model, **extra)
        return request_params(req)

    def job(kind: str, params: dict) -> dict:
        job_id = queue.submit(kind, params)
        plan = queue.get(job_id).plan or {}
        done = run_here(store, job_id, reraise=True)
        actual = (done.finished or 0) - (done.started or 0)
        est = float(plan.get("seconds") or float("nan"))
        row = {
            "job": job_id,
            "kind": kind,
            "estimate_s": round(est, 2),
            "low_s": round(float(plan.get("low") or float("nan")), 2),
            "high_s": round(float(plan.get("high") or float("nan")), 2),
            "actual_s": round(actual, 2),
            "ratio": round(est / actual, 3) if actual > 0 else None,
            "results": done.results,
        }
        row["in_range"] = bool(row["low_s"] <= actual <= row["high_s"])
        print(
            f"{kind:<16} estimate {est:7.1f} s ({row['low_s']}–{row['high_s']})  actual {actual:7.1f} s  "
            f"ratio {row['ratio']}",
            file=sys.stderr,
            flush=True,
        )
        return row

    t0 = time.perf_counter()
    warm = job("run", run_params(trace(args.repeats)))  # the warm-up: not counted
    base_key = warm["results"][0]
    layer = store.open(base_key).proxy_layers[-1]
    dataset = Path(store.root) / "two.jsonl"
    dataset.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "question": QUESTION + f" ({i})", "answer": "6", "trajectory": trace(i + 1)})
            + "\n"
            for i in range(2)
        )
    )
    rows = [
        job("run", run_params(None, generation=_gen(args.new_tokens))),
        job("run", run_params(trace(args.repeats + 1))),
        job("importance", {"key": base_key, "attention": True}),
        job(
            "branch", {"key": base_key, "step": 2, "mode": "resample", "samples": 1, "max_new_tokens": args.new_tokens}
        ),
        job("branch", {"key": base_key, "step": 2, "mode": "edit", "text": "Let me count again carefully. "}),
        job("run", run_params(trace(2 * args.repeats), cuts="stride:4")),
        job("surface", {"key": base_key, "layer": layer, "grid": 5, "span": 1.0}),
        job("landscape", {"key": base_key, "grid": 3, "span": 0.5}),
        job("batch", {"source": str(dataset), "template": {"model": model}}),
    ]
    if not args.tiny:
        with models._load_lock:
            models._loaded.clear()  # the next job loads the model again: its load is counted
    rows.append(job("run", run_params(trace(args.repeats + 2))))
    for row in rows:
        row.pop("results")
    _print_rates(queue, store, model)
    ratios = [r["ratio"] for r in rows if r["ratio"]]
    worst = max(ratios, key=lambda r: abs(math.log(r)))
    print(f"total {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print(
        json.dumps(
            {
                "model": model,
                "jobs": rows,
                "median_ratio": round(statistics.median(ratios), 3),
                "worst_ratio": worst,
                "within_0.5x_2x": all(0.5 <= r <= 2.0 for r in ratios),
                "in_range": sum(r["in_range"] for r in rows),
            }
        )
    )


def _print_rates(queue, store, model) -> None:
    """This machine's learned seconds per unit against the first guesses (stderr): what
    ``estimates.DEFAULTS`` would be for this machine."""
    from backend.jobs.estimates import DEFAULTS, FACTS
    from backend.jobs.queue import default_device

    fingerprint = store.open(store.list_runs()["key"].iloc[0]).model_fingerprint
    for metric in [*DEFAULTS, *(f"fact:{k}" for k in FACTS)]:
        median = queue.measured(fingerprint, default_device(), metric)
        if median is not None:
            default = DEFAULTS.get(metric) or FACTS.get(metric.removeprefix("fact:"))
            print(
                f"rate {metric:<24} {median:.6g} (first guess {default:.6g}, x{median / default:.2f})", file=sys.stderr
            )


def _gen(max_new_tokens: int):
    from backend.engine.trajectory import GenerationSettings

    return GenerationSettings(max_new_tokens=max_new_tokens)


if __name__ == "__main__":
    main()
