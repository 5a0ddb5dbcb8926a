"""``raml exact KEY [--landscape]``: the trajectory as an exact all-layer weight update
(docs/exact_update.md), an ``exact`` job (``--landscape``: an ``exact_landscape`` job, which
computes the update first when needed); ``--detach`` only queues it."""

from __future__ import annotations

import json

from backend.commands.common import add_detach, add_key_argument, add_quiet, open_run, run_job


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
    add_quiet(p)
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
    for line in format_report(run.key, result.meta, table):
        print(line)
    if landscape is not None:
        print(_landscape_line(landscape, args))
    return 0


def _share(fraction) -> str:
    return "n/a (no descent)" if fraction is None else f"{100 * float(fraction):6.1f}%"


def format_report(key: str, info: dict, table) -> list[str]:
    """The human report of ``raml exact``: shapes, accuracy, the fidelity of each proxy as a
    share of the descent, and the per-boundary table, every number formatted (no raw floats or
    dicts)."""
    lines = [
        f"run {key}: P={info['P']} prompt tokens, m={info['m']} probe tokens, K={info['K']} boundaries, "
        f"{info['n_layers']} layers",
        f"max rank {info['max_rank']}, worst condition {float(info['worst_condition']):.3g}, "
        f"max |L(θ+ΔW_c) − L̂(c)| = {float(info['max_abs_error']):.2e} nats",
    ]
    stored = info.get("stored") or {}
    if stored.get("subsampled"):
        lines.append(
            f"factors kept for {stored['K_stored']} of {stored['K_path']} boundaries (size bound: {stored['rule']}); "
            "losses and path geometry for all of them"
        )
    fid = info.get("fidelity") or {}
    if "initial_loss" in fid:
        lines.append(
            f"descent L̂(0) − L̂(end) = {fid['initial_loss']:.4f} − {fid['final_loss']:.4f} = {fid['descent']:.4f} nats"
        )
    lines.append("fidelity at the end (share of that descent reproduced):")
    if "exact" in fid:
        lines.append(f"  {'exact update, all layers':<32} {_share(fid['exact']['fraction'])}")
    for k, v in fid.get("exact_top_k", {}).items():
        layers = ", ".join(str(layer) for layer in v.get("layers", []))
        lines.append(f"  {f'exact, top-{k} layers ({layers})':<32} {_share(v['fraction'])}")
    for layer, v in fid.get("single_layer_proxy", {}).items():
        lines.append(f"  {f'single-layer proxy, layer {layer}':<32} {_share(v['fraction'])}")
    lines.append(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    return lines


def _landscape_line(job, args) -> str:
    import numpy as np

    loss = np.asarray(job.value.loss)
    return (
        f"landscape on the exact plane, {args.grid}x{args.grid} (span {args.span:g}): "
        f"loss {np.nanmin(loss):.4g} .. {np.nanmax(loss):.4g} nats"
    )
