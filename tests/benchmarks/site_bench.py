"""Size of the static site (``raml export --site``) and of the one-file export, per run and in total.

Makes ``--runs`` runs of a ``--tokens``-token imported trajectory (default 3 x 500) with a tiny random
Llama of SmolLM2-135M's shape where it matters for the size (its tokenizer, 30 layers: the lens grid
and the hover texts scale with them; ``--model smollm2-135m`` for the real model), computes step
importance for the first run (so its page carries the importance strip), writes the site and the
one-file export of the first run, and prints the byte counts (and gzip sizes, what a static host
sends) as JSON on its last line.

    python tests/benchmarks/site_bench.py [--tokens 500] [--runs 3] [--model tiny|smollm2-135m]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.common import trajectory_ids  # noqa: E402

QUESTIONS = (
    ("Maya has 5 apples, buys 2 bags of 4 and gives 6 away, then eats 1. How many are left?", "6"),
    ("A shop sells pens at 3 dollars each. How much do 7 pens cost?", "21"),
    ("Tom reads 12 pages a day. How many pages does he read in 2 weeks?", "168"),
    ("What is 15 percent of 240?", "36"),
)


def _gz(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=6))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model", default="tiny", help="tiny (random, 30 layers) or smollm2-135m")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from backend.analysis.importance.run import compute_run_importance
    from backend.engine.models import load_tokenizer, resolve
    from backend.export.single import export_html
    from backend.export.site import export_site
    from backend.pipeline.run import RunRequest, run_question
    from backend.store.runs import RunStore

    work = Path(args.cache_dir or tempfile.mkdtemp(prefix="raml-site-bench-"))
    store = RunStore(work / "cache")
    tokenizer = load_tokenizer(resolve("smollm2-135m"))
    loaded = None
    if args.model == "tiny":
        from tests.conftest import build_tiny

        loaded = build_tiny("llama", tokenizer, n_layers=30, name="tiny-llama-30-layers")
    keys = []
    t0 = time.perf_counter()
    for i in range(args.runs):
        question, answer = QUESTIONS[i % len(QUESTIONS)]
        ids = trajectory_ids(tokenizer, args.tokens + 7 * i)[7 * i :]  # a different cut of the text per run
        req = RunRequest(
            question=question,
            answer=answer,
            trajectory=tokenizer.decode(ids),
            model=loaded.name if loaded else args.model,
            label="site-bench",
        )
        keys.append(run_question(req, store, loaded=loaded).key)
    compute_run_importance(store.open(keys[0]), loaded, store=store)
    runs_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    report = export_site(store, keys, work / "site")
    site_s = time.perf_counter() - t0
    single = export_html(store.open(keys[0]), work / "one-run.html", store=store)
    sizes = report.sizes()
    pages = {key[:12]: {"bytes": size, "gzip": _gz(report.pages[key])} for key, size in sizes["pages"].items()}
    runs = {key[:12]: {"tokens": store.open(key).n_tokens, "steps": len(store.open(key).steps)} for key in keys}
    result = {
        "model": args.model,
        "runs": runs,
        "page_bytes": pages,  # per run page (its data inline; the first has the importance strip)
        "page_mean_bytes": round(sum(sizes["pages"].values()) / len(keys)),
        "assets_bytes": sizes["assets"],  # once per site
        "assets_gzip": {p.name: _gz(p) for p in report.assets},
        "index_bytes": sizes["index"],
        "total_bytes": sizes["total"],
        "one_file_export_bytes": single.stat().st_size,
        "one_file_export_gzip": _gz(single),
        "seconds": {"make_runs": round(runs_s, 1), "write_site": round(site_s, 2)},
        "folder": str(work),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
