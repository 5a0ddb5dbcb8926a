"""The GPU figures in one command (issue 23 item 5): engine = naive on a 1.5B random-config model
in bf16, the length sweep to 32k tokens, peak GPU memory.

    python tests/benchmarks/gpu_check.py [--lengths 1024,4096,16384,32768] [--stride 16]
        [--equiv-tokens 256] [--bf16-tol 0.05] [--fp32-tol 1e-3] [--budget-s 480] [--no-fp32]

On a machine without CUDA it prints one line starting "no CUDA" and exits 0 (so CI and a CPU
checkout can call it). With CUDA, the last stdout line is one JSON object:

    {"device", "torch", "model": "qwen2-1.5b (random config)", "equivalence": {"bf16": {...},
     "fp32": {...}}, "sweep": [{"n_tokens", "cuts", "n_cuts", "forward_s", "engine_s",
     "engine_over_forward", "floor", "over_floor", "peak_gpu_mb", "peak_gpu_over_weights_mb"}, ...],
     "peak_gpu_mb": max, "peak_gpu_slope_mb_per_1k_tokens": {cuts: slope}, "goals": {...}, "ok"}

Equivalence: ``analyze`` (engine) against ``analyze_naive`` (one prompt per cut point) on the
same synthetic trajectory of ``--equiv-tokens`` tokens, every token a cut point, max |Δ L̂| over
the cuts. Stated tolerances: bf16 ≤ 0.05 nats (bf16 keeps 8 bits of mantissa; the engine's packed
probes and the naive prompts round differently through 28 layers), fp32 (TF32 off) ≤ 1e-3 nats
(the CPU contract is 1e-4; GPU kernels reorder sums). Sweep: the same model in bf16 at each n,
``--cuts all`` and every ``--stride`` tokens, ~one step boundary per 20 tokens (a 32k trace of
1,600 steps); peak GPU memory per point (``torch.cuda.max_memory_allocated`` after a reset),
its slope in n by least squares; points still to do when ``--budget-s`` is spent are reported as
skipped, not run. Goals as on CPU (length_bench.py): engine / forward within 1.2x of the floor
1 + C·m / (P + n), peak memory linear in n.

Written for the day a GPU is lent: not run in the session that wrote it (no device was lent).
Ids are synthetic (seeded), so no tokenizer or model file is needed on the GPU machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from common import floor_ratio, slope, synthetic_request  # (puts the repository on sys.path)


def no_cuda_line(torch_version: str) -> str:
    return f"no CUDA: gpu_check.py needs a CUDA device (torch {torch_version} sees none); nothing measured"


def build_model(torch, dtype):
    """The qwen2-1.5b random config of probe_bench.py, initialised on the GPU (seeded)."""
    from probe_bench import RANDOM_CONFIGS
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(RANDOM_CONFIGS["qwen2-1.5b"])
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def equivalence(torch, model, n_tokens: int, tolerance: float) -> dict:
    import numpy as np

    from backend.engine.probe import analyze, analyze_naive

    req = synthetic_request(model.config.vocab_size, n_tokens, "all", seed=1)
    t0 = time.perf_counter()
    fast = analyze(model, req)
    torch.cuda.synchronize()
    engine_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = analyze_naive(model, req)
    torch.cuda.synchronize()
    diff = np.abs(fast.answer_nll.astype(np.float64) - slow.answer_nll.astype(np.float64))
    lens_diff = np.abs(fast.lens_nll.astype(np.float64) - slow.lens_nll.astype(np.float64))
    return {
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "n_tokens": n_tokens,
        "n_cuts": int(len(fast.cuts)),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "lens_max_abs_diff": float(lens_diff.max()),
        "tolerance": tolerance,
        "ok": bool(diff.max() <= tolerance),
        "engine_s": round(engine_s, 3),
        "naive_s": round(time.perf_counter() - t0, 3),
    }


def sweep_point(torch, model, n_tokens: int, cuts: str, weights_mb: float) -> dict:
    from backend.engine.probe import analyze, forward_seconds

    req = synthetic_request(model.config.vocab_size, n_tokens, cuts, seed=2)
    context = req.prompt_ids + req.trajectory_ids
    forward_seconds(model, context)  # warm-up at this length
    times = []
    for _ in range(3):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        forward_seconds(model, context)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    forward_s = sorted(times)[1]
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = analyze(model, req)
    torch.cuda.synchronize()
    engine_s = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20
    floor = floor_ratio(req, len(result.cuts))
    ratio = engine_s / forward_s
    return {
        "n_tokens": n_tokens,
        "cuts": cuts,
        "n_cuts": int(len(result.cuts)),
        "n_boundaries": int(len(result.boundary_cuts)),
        "probe_tokens": len(req.probe_ids),
        "forward_s": round(forward_s, 4),
        "engine_s": round(engine_s, 4),
        "engine_over_forward": round(ratio, 2),
        "floor": round(floor, 2),
        "over_floor": round(ratio / floor, 3),
        "chunk_probes": int(result.timings.get("chunk_probes", 0)),
        "peak_gpu_mb": round(peak, 1),
        "peak_gpu_over_weights_mb": round(peak - weights_mb, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", default="1024,4096,16384,32768")
    p.add_argument("--stride", type=int, default=16, help="the strided sweep scores every K-th token")
    p.add_argument("--equiv-tokens", type=int, default=256)
    p.add_argument("--bf16-tol", type=float, default=0.05, help="max |Δ L̂| engine vs naive in bf16 (nats)")
    p.add_argument("--fp32-tol", type=float, default=1e-3, help="the same in float32 with TF32 off (nats)")
    p.add_argument("--no-fp32", action="store_true", help="skip the float32 equivalence (6 GB of weights)")
    p.add_argument("--budget-s", type=float, default=480, help="stop starting sweep points after this")
    args = p.parse_args(argv)

    # isort: off
    import backend  # noqa: F401  # before torch: the project's OpenMP wait policy (docs/threads.md)
    import torch

    # isort: on

    if not torch.cuda.is_available():
        print(no_cuda_line(torch.__version__))
        return 0
    started = time.perf_counter()
    torch.set_grad_enabled(False)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    out: dict = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "model": "qwen2-1.5b (random config)",
        "equivalence": {},
    }
    model = build_model(torch, torch.float32 if not args.no_fp32 else torch.bfloat16)
    if not args.no_fp32:
        out["equivalence"]["fp32"] = equivalence(torch, model, args.equiv_tokens, args.fp32_tol)
        print(json.dumps(out["equivalence"]["fp32"]), file=sys.stderr, flush=True)
        model = model.to(torch.bfloat16)
        torch.cuda.empty_cache()
    out["equivalence"]["bf16"] = equivalence(torch, model, args.equiv_tokens, args.bf16_tol)
    print(json.dumps(out["equivalence"]["bf16"]), file=sys.stderr, flush=True)

    torch.cuda.empty_cache()
    weights_mb = torch.cuda.memory_allocated() / 2**20
    out["weights_mb"] = round(weights_mb, 1)
    sweep, skipped = [], []
    for n in [int(x) for x in args.lengths.split(",") if x.strip()]:
        for cuts in ("all", f"stride:{args.stride}"):
            if time.perf_counter() - started > args.budget_s:
                skipped.append({"n_tokens": n, "cuts": cuts})
                continue
            try:
                row = sweep_point(torch, model, n, cuts, weights_mb)
            except Exception as exc:  # one failed point (e.g. out of memory) is a figure too
                row = {"n_tokens": n, "cuts": cuts, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                torch.cuda.empty_cache()
            sweep.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    measured = [r for r in sweep if "error" not in r]
    out["sweep"] = sweep
    out["skipped"] = skipped
    out["peak_gpu_mb"] = max((r["peak_gpu_mb"] for r in measured), default=None)
    out["peak_gpu_slope_mb_per_1k_tokens"] = {}
    for cuts in sorted({r["cuts"] for r in measured}):
        rows = [r for r in measured if r["cuts"] == cuts]
        s = slope([r["n_tokens"] / 1000 for r in rows], [r["peak_gpu_over_weights_mb"] for r in rows])
        out["peak_gpu_slope_mb_per_1k_tokens"][cuts] = None if s is None else round(s, 2)
    worst = max((r["over_floor"] for r in measured), default=None)
    out["goals"] = {
        "engine_over_floor_max": worst,
        "engine_within_1.2x_of_floor": worst is not None and worst <= 1.2,
        "equivalence_ok": all(e["ok"] for e in out["equivalence"].values()),
    }
    out["ok"] = out["goals"]["engine_within_1.2x_of_floor"] and out["goals"]["equivalence_ok"]
    out["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
