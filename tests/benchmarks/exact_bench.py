"""Time of the exact all-layer update for every boundary, as a ratio to the run's engine time
(issue 17 target: <= 1x), measured side by side in one process.

    python tests/benchmarks/exact_bench.py [--model smollm2-135m] [--tokens 256] [--boundaries 16]

Prints JSON: engine_s (prefill + probes at every cut, backend.engine.probe.analyze),
exact_s (ex.compute: prefill + with/without-context probe forwards + solves), verify_s
(explicitly edited forwards, one per boundary), gram_s, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import time

from common import ROOT, trajectory_ids  # noqa: F401  (puts the repo on sys.path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--boundaries", type=int, default=16)
    args = ap.parse_args()

    import torch

    from backend.analysis.exact import geometry as geo
    from backend.analysis.exact import update as ex
    from backend.engine import probe
    from backend.engine.models import load_model
    from backend.engine.trajectory import build_prompt, encode

    torch.manual_seed(0)
    loaded = load_model(args.model)
    tok = loaded.tokenizer
    prompt = encode(
        tok, build_prompt(tok, "Maya has 5 apples and buys 8 more, gives 6 away and eats 1. How many?", think=False)
    )
    traj = trajectory_ids(tok, args.tokens)
    template, answer = encode(tok, "\n\n**Final Answer**\n\\boxed{"), encode(tok, "6")
    step = max(1, args.tokens // args.boundaries)
    cuts = sorted(set(range(0, args.tokens + 1, step)) | {args.tokens})

    t0 = time.perf_counter()
    probe.analyze(loaded.model, probe.ProbeRequest(prompt, traj, template, answer, boundary_cuts=cuts))
    engine_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    update = ex.compute(loaded.model, prompt, traj, template + answer, len(answer), cuts)
    exact_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    edited = ex.edited_losses(loaded.model, update, prompt, template + answer)
    verify_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    geo.layer_gram(update.left, update.right)
    gram_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "model": args.model,
                "P": len(prompt),
                "n": args.tokens,
                "m": update.m,
                "K": update.K,
                "engine_s": round(engine_s, 3),
                "exact_s": round(exact_s, 3),
                "exact_parts": {k: round(v, 3) for k, v in update.timings.items()},
                "verify_s": round(verify_s, 3),
                "gram_s": round(gram_s, 3),
                "exact_over_engine": round(exact_s / engine_s, 3),
                "exact_with_verify_and_gram_over_engine": round((exact_s + verify_s + gram_s) / engine_s, 3),
                "max_abs_error_nats": float(abs(edited - update.target_loss).max()),
                "worst_condition": update.meta()["worst_condition"],
            }
        )
    )


if __name__ == "__main__":
    main()
