"""``raml importance KEY [--attention] [--every-boundary] [--json]``: step importance of a run."""

from __future__ import annotations

import json
import sys


def cmd_importance(args) -> int:
    from backend.analysis.importance.run import compute_run_importance
    from backend.engine.models import load_model
    from backend.store.runs import RunStore

    store = RunStore(args.cache_dir)
    run = store.open(args.key)
    loaded = load_model(run.model_name)
    payload = compute_run_importance(
        run, loaded, store=store, attention=args.attention, every_boundary=args.every_boundary
    )
    if args.json:
        print(json.dumps(payload, ensure_ascii=False))
        return 0
    texts = run.steps["text"].tolist()
    head = payload["attention"]["head_mean"] if payload["attention"] else [None] * len(texts)
    order = sorted(range(len(texts)), key=lambda k: -(payload["ablation"][k] or 0.0))
    print(f"L̂ at the end: {payload['final_loss']:.4f} nats; ablation importance = L̂ without the step − L̂")
    print(" step  ablation  attention  text")
    for k in order[: args.top]:
        att = "" if head[k] is None else f"{head[k]:9.4f}"
        print(f"{k:5d}  {payload['ablation'][k]:+8.4f}  {att:>9}  {texts[k].strip()[:60]}")
    if payload["attention"]:
        heads = ", ".join(
            f"L{h['layer']}H{h['head']} ({h['kurtosis']:.1f})" for h in payload["attention"]["receiver_heads"]
        )
        print(f"receiver heads (kurtosis): {heads}")
    print(f"ablation {payload['timings']['ablate_s']:.2f} s", file=sys.stderr)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("importance", help="step importance of a run: ablation (and --attention)")
    p.add_argument("key")
    p.add_argument("--attention", action="store_true", help="also the answer probe's attention per step")
    p.add_argument("--every-boundary", action="store_true", help="score every later boundary, not only the end")
    p.add_argument("--top", type=int, default=20, help="steps listed (most important first)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_importance)
