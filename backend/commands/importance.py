"""``raml importance KEY [--attention | --no-attention] [--every-boundary] [--json]``: step importance of a run
(an ``importance`` job; ``--detach`` only queues it)."""

from __future__ import annotations

import argparse
import json
import sys

from backend.commands.common import add_detach, add_key_argument, add_quiet, open_run, run_job


def cmd_importance(args) -> int:
    run = open_run(args)  # the key checked before anything is queued
    params = {"key": run.key, "attention": args.attention, "every_boundary": args.every_boundary}
    job = run_job(args, "importance", params)
    if job is None:
        return 0
    payload = job.value
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
        print(f"{k + 1:5d}  {payload['ablation'][k]:+8.4f}  {att:>9}  {texts[k].strip()[:60]}")  # steps 1..S
    if payload["attention"]:
        heads = ", ".join(
            f"L{h['layer']}H{h['head']} ({h['kurtosis']:.1f})" for h in payload["attention"]["receiver_heads"]
        )
        print(f"receiver heads (kurtosis): {heads}")
    print(f"ablation {payload['timings']['ablate_s']:.2f} s", file=sys.stderr)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("importance", help="step importance of a run: ablation (and --attention)")
    add_key_argument(p)
    from backend.analysis.importance.defaults import ATTENTION as DEFAULT_ATTENTION
    from backend.analysis.importance.defaults import EVERY_BOUNDARY as DEFAULT_EVERY_BOUNDARY

    on_off = {True: "on", False: "off"}
    p.add_argument(
        "--attention",
        action=argparse.BooleanOptionalAction,
        default=DEFAULT_ATTENTION,
        help=f"also the answer probe's attention per step (default: {on_off[DEFAULT_ATTENTION]}, as in Explore)",
    )
    p.add_argument(
        "--every-boundary",
        action=argparse.BooleanOptionalAction,
        default=DEFAULT_EVERY_BOUNDARY,
        help=f"score every later boundary, not only the end (default: {on_off[DEFAULT_EVERY_BOUNDARY]})",
    )
    p.add_argument("--top", type=int, default=20, help="steps listed (most important first)")
    p.add_argument("--json", action="store_true")
    add_detach(p)
    add_quiet(p)
    p.set_defaults(func=cmd_importance)
