"""Engine vs naive vs one plain forward, measured side by side in one process.

    python tests/benchmarks/probe_bench.py [--tokens 500] [--cuts all|K] [--quick] [--sweep]
        [--model smollm2-135m | --random-config qwen2-1.5b] [--repeats 3] [--engine-only]
        [--contention [--kinds project-job,foreign-torch,burner]]

Last stdout line: one JSON object {"model", "device", "n_tokens", "n_cuts", "forward_s",
"engine_s", "naive_s", "speedup_vs_naive", "engine_over_forward", "max_abs_diff", "peak_rss_mb"}
(``--engine-only``: no naive method, so no "naive_s", "speedup_vs_naive", "max_abs_diff").
``--sweep`` first prints a table over N = 125, 250, 500, 1000 (one repeat each).
``--contention`` (tests/benchmarks/contention.py; issue 29) measures the engine in fresh processes:
with today's policy of the project idle and beside each competitor kind, and with the old policy
(threads = cores, default OpenMP wait) idle. Last line: {"per_competitor": {KIND: {"engine_idle_s",
"engine_busy_s", "engine_busy_over_idle", ...}}, "engine_busy_over_idle": worst,
"idle_over_old_policy_idle": R}; the goals are <= 2.2 and <= 1.05 on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# The old policy (threads = cores, default OpenMP wait) is torch loaded before backend: a measured
# child of --contention with --child old imports torch first. Everything else imports backend first.
if "--child" in sys.argv and sys.argv[sys.argv.index("--child") + 1 : sys.argv.index("--child") + 2] == ["old"]:
    import torch  # noqa: F401

# isort: off
import contention  # noqa: E402
from common import median_time, peak_rss_mb, trajectory_ids  # noqa: E402  (puts the repository on sys.path)

import backend  # noqa: E402,F401  # before torch: the project's OpenMP wait policy (docs/threads.md)
import numpy as np  # noqa: E402
import torch  # noqa: E402

# isort: on

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


def measure(loaded, n_tokens: int, cuts_spec: str, repeats: int, naive_repeats: int, engine_only: bool = False) -> dict:
    from backend.engine.probe import analyze, analyze_naive, forward_seconds

    model = loaded.model
    req = make_request(loaded, n_tokens, cuts_spec)
    context = req.prompt_ids + req.trajectory_ids
    forward_seconds(model, context)  # warm-up
    forward_s, _ = median_time(lambda: forward_seconds(model, context), max(repeats, 3))
    analyze(model, req)  # warm-up
    engine_s, fast = median_time(lambda: analyze(model, req), repeats)
    result = {
        "model": loaded.name,
        "device": str(loaded.device),
        "n_tokens": n_tokens,
        "n_cuts": int(len(fast.cuts)),
        "probe_tokens": len(req.probe_ids),
        "forward_s": round(forward_s, 4),
        "engine_s": round(engine_s, 4),
        "engine_over_forward": round(engine_s / forward_s, 2),
        "torch_threads": torch.get_num_threads(),
    }
    if not engine_only:
        small = make_request(loaded, min(n_tokens, 32), "all")
        analyze_naive(model, small)  # warm-up
        naive_s, slow = median_time(lambda: analyze_naive(model, req), naive_repeats)
        result |= {
            "naive_s": round(naive_s, 4),
            "speedup_vs_naive": round(naive_s / engine_s, 2),
            "max_abs_diff": float(np.abs(fast.answer_nll - slow.answer_nll).max()),
        }
    return result | {"peak_rss_mb": round(peak_rss_mb(), 1)}


def main(argv: list[str] | None = None) -> None:
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
    p.add_argument("--engine-only", action="store_true", help="skip the naive method (12 minutes under contention)")
    p.add_argument("--contention", action="store_true", help="idle and beside each competitor, fresh processes")
    p.add_argument("--kinds", default=",".join(contention.KINDS), help="competitor kinds for --contention")
    p.add_argument("--child", choices=("project", "old"), default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.tokens, args.repeats = 200, 1
    if args.contention:
        passed = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--contention"]
        passed = [a for i, a in enumerate(passed) if a != "--kinds" and (i == 0 or passed[i - 1] != "--kinds")]
        kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
        unknown = sorted(set(kinds) - set(contention.KINDS))
        if unknown:
            p.error(f"--kinds: unknown competitor kind(s) {', '.join(unknown)} (known: {', '.join(contention.KINDS)})")
        print(json.dumps(contention.run(passed, kinds)))
        return
    load_seen = None
    if args.child == "old":  # threads = cores, default OpenMP wait: torch is already loaded (above)
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    else:  # as a job of the project starts (backend imported before torch in this process)
        from backend.engine import threads

        threads.configure_torch_threads(measure_load=args.child == "project")
        load_seen = threads.compute_settings()["chosen_from"].get("load")
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
    result = measure(loaded, args.tokens, args.cuts, args.repeats, naive_repeats, args.engine_only)
    if args.child:
        from backend.engine.threads import wait_policy

        result |= {"policy": args.child, "omp_wait_policy": wait_policy(), "load_seen": load_seen}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
