"""``raml stats [SELECTION ...] [--json]``: every aggregate of the Dataset page, for scripts.

SELECTION picks runs: a question file (JSONL, Parquet, Arrow or a save_to_disk folder: the
runs of its questions), ``field=value`` on the library's columns (``model=``, ``label=``,
``correct=true|false|none``), or ``q=TEXT`` (question or label contains TEXT). Several
selections are combined with AND; none selects every run.
"""

from __future__ import annotations

import argparse
import json
import math

from backend.analysis.dataset.selection import FILTER_FIELDS, select_keys  # noqa: F401  (the one selection)


def register(sub) -> None:
    p = sub.add_parser("stats", help="dataset aggregates with bootstrap 95%% intervals (the Dataset page)")
    p.add_argument("selection", nargs="*", help="question file, field=value (model, label, correct) or q=TEXT")
    p.add_argument("--json", action="store_true", help="print every aggregate as JSON")
    p.add_argument("--grid", type=int, default=51, help="points of the progress grid (default 51)")
    p.add_argument("--ema", type=float, default=None, help="smooth each curve with this EMA alpha (reference: 0.01)")
    p.add_argument("--keep-after-answer", action="store_true", help="keep cut points after the answer appears")
    p.add_argument("--layer", type=int, default=None, help="proxy layer (default: each run's middle stored layer)")
    p.add_argument(
        "--include-branches",
        action="store_true",
        help="pool branches with their parents (intervals then resample whole questions; default: branches left out)",
    )
    p.add_argument("--question-field", default="question", help="question column of a question file")
    p.set_defaults(func=cmd_stats)


def _finite(obj):
    """JSON without NaN (null instead), so any JSON parser reads it."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def cmd_stats(args: argparse.Namespace) -> int:
    from backend.analysis.dataset.claims import ClaimsSettings, dataset_claims
    from backend.store.runs import RunStore

    store = RunStore(args.cache_dir)
    runs = store.list_runs()
    keys = select_keys(runs, args.selection, args.question_field) if args.selection else runs["key"].tolist()
    settings = ClaimsSettings(
        grid_points=args.grid,
        ema_alpha=args.ema,
        exclude_after_answer=not args.keep_after_answer,
        layer=args.layer,
        include_branches=args.include_branches,
    )
    report = dataset_claims(store, keys, settings)
    if args.json:
        from backend.pipeline.agreement import dataset_agreement

        payload = report.to_json() | {"importance_agreement": dataset_agreement(store, keys)}
        print(json.dumps(_finite(payload), ensure_ascii=False))
        return 0
    print(f"{len(report.runs)} runs ({report.runs['question'].nunique() if len(report.runs) else 0} questions)")
    for line in report.skipped:
        print(f"skipped: {line}")
    for row in report.descent_summary.itertuples():
        if row.group == "all":
            spread = f"95% CI [{row.low:.4g}, {row.high:.4g}]" if math.isfinite(row.low) else f"values {row.values}"
            print(f"  {row.statistic:>13}: {row.mean:.4g}  {spread}  n={row.n}")
    pooled = report.reflection_words[report.reflection_words["word"] == "all words"]
    if len(pooled):
        r = pooled.iloc[0]
        print(
            f"  reflection words vs matched windows: ratio {r['ratio']:.3g} [{r['ratio_low']:.3g}, {r['ratio_high']:.3g}], n={r['n_matched']}"
        )
    return 0
