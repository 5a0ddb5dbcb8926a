"""Ablation importance for every step vs the engine's own time for the same run, side by side.

    python tests/benchmarks/importance_bench.py [--tokens 300] [--steps 25] [--repeats 3]
        [--model smollm2-135m] [--device cpu|cuda] [--naive]

The run: a reasoning-like trajectory of exactly ``--tokens`` tokens cut into ``--steps`` equal
steps, every token a cut point (the default ``--cuts all``), 5 proxy layers, as ``raml run``
analyses it. Each timing is the median of ``--repeats`` after one warm-up of each method.
Last stdout line: one JSON object {"model", "device", "n_tokens", "n_steps", "engine_s",
"ablation_s", "ablation_over_engine" (target <= 3), "attention_s", "attention_over_engine",
"naive_s", "naive_over_ablation", "max_abs_diff"}; naive fields only with ``--naive``.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from common import median_time, peak_rss_mb, trajectory_ids


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=300)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default=None)
    ap.add_argument("--naive", action="store_true", help="also time the naive reference once")
    ap.add_argument("--warmup", type=int, default=1, help="0: no warm-up call of each method")
    args = ap.parse_args()

    from backend.analysis.importance.ablation import ablate, ablate_naive
    from backend.analysis.importance.attention import probe_attention
    from backend.engine.architecture import default_proxy_layers, locate
    from backend.engine.models import load_model
    from backend.engine.probe import ProbeRequest, analyze
    from backend.engine.trajectory import RAML_TEMPLATE, build_prompt, encode

    loaded = load_model(args.model, device=args.device)
    tok = loaded.tokenizer
    n = args.tokens
    bounds = sorted({round(i * n / args.steps) for i in range(args.steps + 1)})
    req = ProbeRequest(
        prompt_ids=encode(tok, build_prompt(tok, "How many apples does Maya have?", think=False)),
        trajectory_ids=trajectory_ids(tok, n),
        template_ids=encode(tok, RAML_TEMPLATE),
        answer_ids=encode(tok, "6"),
        boundary_cuts=bounds,
        proxy_layers=default_proxy_layers(locate(loaded.model).n_layers),
    )
    model = loaded.model
    if args.warmup:
        analyze(model, req)
        ablate(model, req)
        probe_attention(model, req)
    engine_s, _ = median_time(lambda: analyze(model, req), args.repeats)
    print(f"engine {engine_s:.2f} s", file=sys.stderr, flush=True)  # partial results, for a loaded machine
    ablation_s, fast = median_time(lambda: ablate(model, req), args.repeats)
    print(f"ablation {ablation_s:.2f} s ({ablation_s / engine_s:.2f}x)", file=sys.stderr, flush=True)
    attention_s, _ = median_time(lambda: probe_attention(model, req), args.repeats)
    out = {
        "model": loaded.name,
        "device": str(loaded.device),
        "n_tokens": n,
        "n_steps": len(bounds) - 1,
        "engine_s": round(engine_s, 3),
        "ablation_s": round(ablation_s, 3),
        "ablation_over_engine": round(ablation_s / engine_s, 3),
        "attention_s": round(attention_s, 3),
        "attention_over_engine": round(attention_s / engine_s, 3),
    }
    if args.naive:
        naive_s, slow = median_time(lambda: ablate_naive(model, req), 1)
        out |= {
            "naive_s": round(naive_s, 3),
            "naive_over_ablation": round(naive_s / ablation_s, 2),
            "max_abs_diff": float(np.abs(fast.importance - slow.importance).max()),
        }
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
