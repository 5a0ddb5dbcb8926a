"""Dataset statistics: first computation vs reopening, on a real cache of runs.

    python tests/benchmarks/claims_bench.py --cache-dir CACHE [--repeats 5]

Measures, in one process and one run: the report computed from scratch (no cache: every run
read and digested), computed with the per-run digests cached (a new set of runs), and
reopened (the combined report read from ``<cache>/aggregates/``), plus the two
views computed on request (two models, task map). Last stdout line: JSON with seconds and
the ratio first / reopen.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time

from common import ROOT, median_time  # noqa: F401  (puts the repo on sys.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from backend.analysis.dataset import model_pairs
    from backend.analysis.dataset.claims import ClaimsSettings, dataset_claims
    from backend.store import schema
    from backend.store.runs import RunStore

    store = RunStore(args.cache_dir)
    keys = store.list_runs()["key"].tolist()
    settings = ClaimsSettings()
    shutil.rmtree(store.root / schema.AGGREGATES_DIR, ignore_errors=True)
    t0 = time.perf_counter()
    report = dataset_claims(store, keys, settings, use_cache=False)
    from_scratch = time.perf_counter() - t0
    t0 = time.perf_counter()
    dataset_claims(store, keys, settings)  # writes digests and the set
    first_cached = time.perf_counter() - t0
    reopen, reopened = median_time(lambda: dataset_claims(store, keys, settings), args.repeats)
    assert reopened.from_cache
    models = model_pairs.models_with_shared_questions(report.runs)
    pairs_s = None
    if len(models) >= 2:
        pairs_s, _ = median_time(
            lambda: model_pairs.compare_models(report.runs, report.curves, report.grid, models[0], models[1]),
            args.repeats,
        )
    map_s, _ = median_time(lambda: report.task_map("update"), args.repeats)
    result = {
        "runs": len(keys),
        "questions": int(report.runs["question"].nunique()),
        "from_scratch_s": round(from_scratch, 3),
        "first_with_digests_s": round(first_cached, 3),
        "reopen_s": round(reopen, 4),
        "ratio_first_over_reopen": round(from_scratch / reopen, 1),
        "two_models_s": None if pairs_s is None else round(pairs_s, 4),
        "task_map_s": round(map_s, 4),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
