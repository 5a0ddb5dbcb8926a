"""Cost of the library's health column: ``RunStore.list_runs()`` (reconcile + index + status/cause
from cheap file checks) against what it did before the column (reconcile + ``SELECT``), side by
side on one cache of N small runs.

    python tests/benchmarks/store_bench.py [--runs 300] [--repeat 5]

Last stdout line: JSON {"runs", "reconcile_select_ms", "list_runs_ms", "ratio", "damaged_listed"}
(medians; one run has its meta.json deleted, so one row must be listed as damaged).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from common import ROOT  # noqa: F401  (puts the repo on sys.path)


def main() -> None:
    import numpy as np
    import pandas as pd

    from backend.store.runs import RunStore, content_key

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        meta = {
            "question": "q",
            "answer": "1",
            "answer_source": "reference",
            "model": {"name": "m", "n_layers": 1},
            "summary": {"n_tokens": 2, "n_steps": 1, "final_loss": 0.1, "initial_loss": 1.0},
        }
        frame = pd.DataFrame({"cut": [0, 1, 2], "loss": [1.0, 0.5, 0.1]})
        keys = []
        for i in range(args.runs):
            key = content_key({"bench": i})
            store.write(key, dict(meta, question=f"q{i}"), frame, frame, frame, {"hidden": np.zeros((2, 1, 4))})
            keys.append(key)
        (store.path(keys[0]) / "meta.json").unlink()

        def bare():
            store.reconcile()
            with store._db() as con:
                return pd.read_sql_query("SELECT * FROM runs ORDER BY created DESC", con)

        bare_ms, full_ms = [], []
        for _ in range(args.repeat):  # interleaved, so both see the same machine load
            t = time.perf_counter()
            bare()
            bare_ms.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            listed = store.list_runs()
            full_ms.append((time.perf_counter() - t) * 1e3)
        b, f = statistics.median(bare_ms), statistics.median(full_ms)
        damaged = int((listed["status"] == "damaged").sum())
    print(
        json.dumps(
            {
                "runs": args.runs,
                "reconcile_select_ms": round(b, 2),
                "list_runs_ms": round(f, 2),
                "ratio": round(f / b, 2),
                "damaged_listed": damaged,
            }
        )
    )


if __name__ == "__main__":
    main()
