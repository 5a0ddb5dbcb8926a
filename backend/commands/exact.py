"""``raml exact KEY [--landscape]``: the trajectory as an exact all-layer weight update
(docs/exact_update.md), an ``exact`` job (``--landscape``: an ``exact_landscape`` job, which
computes the update first when needed); ``--detach`` only queues it."""

from __future__ import annotations

import json

from backend.commands.common import add_detach, add_key_argument, open_run, run_job


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "exact", help="compute the exact all-layer weight update of a run (cached; adds exact_update_* to show --json)"
    )
    add_key_argument(p)
    p.add_argument("--json", action="store_true", help="print the per-boundary table and meta as JSON")
    p.add_argument("--landscape", action="store_true", help="also the loss over the plane of the exact updates")
    p.add_argument("--grid", type=int, default=15, help="--landscape: points per side (3..41)")
    p.add_argument("--span", type=float, default=1.5, help="--landscape: half-width of the plane")
    add_detach(p)
    p.set_defaults(func=cmd_exact)


def cmd_exact(args) -> int:
    run = open_run(args)  # the key checked before anything is queued
    job = run_job(args, "exact", {"key": run.key})
    landscape = None
    if args.landscape:  # queued after the update, so its update is a cache hit
        landscape = run_job(args, "exact_landscape", {"key": run.key, "grid": args.grid, "span": args.span})
    if job is None:
        return 0
    result = job.value
    table = result.table()
    if args.json:
        print(json.dumps({"meta": result.meta, "boundaries": json.loads(table.to_json(orient="records"))}))
        return 0
    info = result.meta
    print(
        f"run {run.key}: P={info['P']} m={info['m']} K={info['K']} layers={info['n_layers']} "
        f"max rank {info['max_rank']}, worst condition {info['worst_condition']:.3g}, "
        f"max |L(θ+ΔW_c) − L̂(c)| = {info['max_abs_error']:.2e} nats"
    )
    fid = info["fidelity"]
    parts = [f"exact {fid['exact']['fraction']}"]
    parts += [f"top-{k} layers {v['fraction']}" for k, v in fid["exact_top_k"].items()]
    parts += [f"proxy@{k} {v['fraction']}" for k, v in fid["single_layer_proxy"].items()]
    print("fidelity (fraction of the descent): " + ", ".join(parts))
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    if landscape is not None:
        print(_landscape_line(landscape, args))
    return 0


def _landscape_line(job, args) -> str:
    import numpy as np

    loss = np.asarray(job.value.loss)
    return (
        f"landscape on the exact plane, {args.grid}x{args.grid} (span {args.span:g}): "
        f"loss {np.nanmin(loss):.4g} .. {np.nanmax(loss):.4g} nats"
    )
