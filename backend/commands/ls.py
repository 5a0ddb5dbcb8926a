"""``raml ls [--json]``: the cached runs (light: no torch)."""

from __future__ import annotations

import sys

from backend.commands.common import store
from backend.io.terminal import printable


def register(subparsers) -> None:
    p = subparsers.add_parser("ls", help="list cached runs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ls)


def cmd_ls(args) -> int:
    df = store(args).list_runs()
    if args.json:
        print(df.to_json(orient="records"))
        return 0
    if df.empty:
        print("no runs in", args.cache_dir)
        return 0
    cols = ["key", "status", "model", "n_tokens", "n_steps", "final_loss", "correct", "question"]
    view = df[cols].copy()
    view["question"] = view["question"].fillna("").str.slice(0, 50)
    damaged = df["status"] != "ok"
    view.loc[damaged, "question"] = df.loc[damaged, "cause"].str.slice(0, 80)  # what is wrong, in its place
    for col in ("model", "question"):  # user text: control characters escaped
        view[col] = view[col].map(printable)
    print(view.to_string(index=False))
    if damaged.any():
        print(f"{int(damaged.sum())} damaged run(s): recompute them or remove them with rm", file=sys.stderr)
    return 0
