"""``raml exact KEY``: the trajectory as an exact all-layer weight update (docs/exact_update.md)."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "exact", help="compute the exact all-layer weight update of a run (cached; adds exact_update_* to show --json)"
    )
    p.add_argument("key")
    p.add_argument("--json", action="store_true", help="print the per-boundary table and meta as JSON")
    p.set_defaults(func=cmd_exact)


def cmd_exact(args) -> int:
    from backend.analysis.exact import run as exact_run
    from backend.store.runs import RunStore

    store = RunStore(args.cache_dir)
    run = store.open(args.key)
    result = exact_run.ensure(run, store=store)
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
    return 0
