"""Engine vs naive vs one plain forward, measured side by side in one process.

    python tests/benchmarks/probe_bench.py [--tokens 500] [--cuts all|K] [--quick] [--sweep]
        [--model smollm2-135m | --random-config qwen2-1.5b] [--repeats 3] [--contention]

Last stdout line: one JSON object {"model", "device", "n_tokens", "n_cuts", "forward_s",
"engine_s", "naive_s", "speedup_vs_naive", "engine_over_forward", "max_abs_diff", "peak_rss_mb"}.
``--sweep`` first prints a table over N = 125, 250, 500, 1000 (one repeat each).
``--contention`` measures twice, idle and then while a competing torch process (matmuls in a loop,
its threads set like any job of this project's) runs, and prints {"idle": ..., "busy": ...,
"busy_speedup_over_idle_speedup": ...}; the bar is >= 0.7 at N = 500. Both processes set their torch
threads with ``backend.engine.threads.configure_torch_threads`` (``RAML_TORCH_THREADS`` overrides).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch
from common import median_time, peak_rss_mb, trajectory_ids

# Shapes for timing-only models built from a config with random weights (GPU path).
RANDOM_CONFIGS = {
    "qwen2-1.5b": dict(
        model_type="qwen2",
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
    ),
}


def load(args):
    from backend.engine.models import LoadedModel, load_model

    if not args.random_config:
        return load_model(args.model, device=args.device)
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(RANDOM_CONFIGS[args.random_config])
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    dtype = torch.bfloat16 if torch.cuda.is_available() and args.device != "cpu" else torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if torch.cuda.is_available() and args.device != "cpu":
        model = model.cuda()
    tokenizer = load_model("smollm2-135m", device="cpu").tokenizer  # any tokenizer will do for ids
    return LoadedModel.from_objects(args.random_config, model, tokenizer)


def make_request(loaded, n_tokens: int, cuts_spec: str):
    from backend.engine.architecture import default_proxy_layers, locate
    from backend.engine.probe import ProbeRequest
    from backend.engine.trajectory import RAML_TEMPLATE, build_prompt, encode

    tok = loaded.tokenizer
    traj = trajectory_ids(tok, n_tokens)
    vocab = loaded.model.config.vocab_size
    traj = [t % vocab for t in traj]
    cuts = None if cuts_spec == "all" else np.linspace(0, n_tokens, int(cuts_spec)).round().astype(int).tolist()
    n_layers = locate(loaded.model).n_layers
    step = max(1, n_tokens // 20)  # ~20 step boundaries, as in a real run
    return ProbeRequest(
        prompt_ids=encode(tok, build_prompt(tok, "Maya has 5 apples... How many are left?", think=False)),
        trajectory_ids=traj,
        template_ids=encode(tok, RAML_TEMPLATE),
        answer_ids=encode(tok, "6"),
        cuts=cuts,
        boundary_cuts=list(range(0, n_tokens + 1, step)) + [n_tokens],
        proxy_layers=default_proxy_layers(n_layers),
    )


def measure(loaded, n_tokens: int, cuts_spec: str, repeats: int, naive_repeats: int) -> dict:
    from backend.engine.probe import analyze, analyze_naive, forward_seconds

    model = loaded.model
    req = make_request(loaded, n_tokens, cuts_spec)
    context = req.prompt_ids + req.trajectory_ids
    forward_seconds(model, context)  # warm-up
    forward_s, _ = median_time(lambda: forward_seconds(model, context), max(repeats, 3))
    analyze(model, req)  # warm-up
    engine_s, fast = median_time(lambda: analyze(model, req), repeats)
    small = make_request(loaded, min(n_tokens, 32), "all")
    analyze_naive(model, small)  # warm-up
    naive_s, slow = median_time(lambda: analyze_naive(model, req), naive_repeats)
    return {
        "model": loaded.name,
        "device": str(loaded.device),
        "n_tokens": n_tokens,
        "n_cuts": int(len(fast.cuts)),
        "probe_tokens": len(req.probe_ids),
        "forward_s": round(forward_s, 4),
        "engine_s": round(engine_s, 4),
        "naive_s": round(naive_s, 4),
        "speedup_vs_naive": round(naive_s / engine_s, 2),
        "engine_over_forward": round(engine_s / forward_s, 2),
        "max_abs_diff": float(np.abs(fast.answer_nll - slow.answer_nll).max()),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


COMPETITOR = """
import torch
from backend.engine.threads import configure_torch_threads
configure_torch_threads()
a = torch.randn(768, 768)
print("ready", flush=True)
while True:
    a = torch.tanh(a @ a) * 0.5
"""


def start_competitor() -> subprocess.Popen:
    """A second heavy torch process, as the app's job worker or another CLI batch would be."""
    from common import ROOT

    proc = subprocess.Popen([sys.executable, "-c", COMPETITOR], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    return proc


def contention(loaded, args, naive_repeats: int) -> dict:
    idle = measure(loaded, args.tokens, args.cuts, args.repeats, naive_repeats)
    print(json.dumps({"idle": idle}), flush=True)
    competitor = start_competitor()
    try:
        busy = measure(loaded, args.tokens, args.cuts, args.repeats, naive_repeats)
    finally:
        competitor.kill()
        competitor.wait()
    return {
        "torch_threads": torch.get_num_threads(),
        "idle": idle,
        "busy": busy,
        "busy_speedup_over_idle_speedup": round(busy["speedup_vs_naive"] / idle["speedup_vs_naive"], 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=500)
    p.add_argument("--cuts", default="all", help="all, or K evenly spaced cut points")
    p.add_argument("--quick", action="store_true", help="N=200, one repeat (smoke test)")
    p.add_argument("--sweep", action="store_true", help="table over N = 125, 250, 500, 1000 first")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--random-config", choices=sorted(RANDOM_CONFIGS), default=None)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--naive-repeats", type=int, default=None, help="default: same as --repeats")
    p.add_argument("--contention", action="store_true", help="idle, then with a competing torch process")
    args = p.parse_args()
    from backend.engine.threads import configure_torch_threads

    configure_torch_threads()
    if args.quick:
        args.tokens, args.repeats = 200, 1
    naive_repeats = args.naive_repeats or args.repeats
    torch.set_grad_enabled(False)
    loaded = load(args)
    if args.sweep:
        print(f"{'N':>6} {'cuts':>6} {'forward_s':>10} {'engine_s':>9} {'naive_s':>9} {'speedup':>8} {'eng/fwd':>8}")
        for n in (125, 250, 500, 1000):
            r = measure(loaded, n, args.cuts, 1, 1)
            print(
                f"{n:>6} {r['n_cuts']:>6} {r['forward_s']:>10.3f} {r['engine_s']:>9.3f} {r['naive_s']:>9.2f} "
                f"{r['speedup_vs_naive']:>8.1f} {r['engine_over_forward']:>8.1f}",
                flush=True,
            )
    if args.contention:
        print(json.dumps(contention(loaded, args, naive_repeats)))
        return
    result = measure(loaded, args.tokens, args.cuts, args.repeats, naive_repeats)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
