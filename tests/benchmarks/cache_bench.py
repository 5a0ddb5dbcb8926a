"""Cache footprint (MB per 1,000 trajectory tokens, by model size) and open time of a run.

    python tests/benchmarks/cache_bench.py [--tokens 500] [--no-smollm2]

Runs a real analysis per model on a synthetic trajectory into a temporary cache, then
measures bytes on disk per file and the time to open the run (first open in the process,
with checksum verification: "cold"; a second open: "warm"; the lazy load of one hidden-state
layer). Last stdout line: JSON {"tokens", "models": [{model, d_model, n_layers, n_steps,
mb_per_1k_tokens, files_kb, open_cold_ms, open_warm_ms, hidden_layer_ms}]}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import REASONING, ROOT  # noqa: F401  (puts the repo on sys.path)


def tiny(hidden: int, layers: int, tokenizer, name: str):
    from tests.conftest import build_tiny

    heads, kv_heads = max(1, hidden // 64), max(1, hidden // 192)
    return build_tiny(
        "llama", tokenizer, n_layers=layers, name=name, hidden=hidden, ff=hidden * 3, heads=heads, kv_heads=kv_heads,
        max_positions=4096,
    )  # fmt: skip


def measure(loaded, n_tokens: int) -> dict:
    from backend.pipeline.run import RunRequest, run_question
    from backend.store.runs import RunStore

    text = ""
    while len(loaded.tokenizer(text, add_special_tokens=False)["input_ids"]) < n_tokens:
        text += REASONING
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"][:n_tokens]
    text = loaded.tokenizer.decode(ids)
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp))
        key = run_question(
            RunRequest(question="How many apples?", answer="6", trajectory=text), store, loaded=loaded
        ).key
        path = store.path(key)
        files = {p.name: round(p.stat().st_size / 1024, 1) for p in sorted(path.iterdir())}
        fresh = RunStore(Path(tmp))
        t0 = time.perf_counter()
        run = fresh.open(key)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        fresh.open(key)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        run.hidden_layer(0)
        hidden_ms = (time.perf_counter() - t0) * 1000
        n = run.meta["summary"]["n_tokens"]
        total_mb = sum(files.values()) / 1024
        return {
            "model": loaded.name,
            "d_model": run.meta["model"]["d_model"],
            "n_layers": run.meta["model"]["n_layers"],
            "n_tokens": n,
            "n_steps": run.meta["summary"]["n_steps"],
            "mb_per_1k_tokens": round(total_mb / n * 1000, 3),
            "files_kb": files,
            "open_cold_ms": round(cold * 1000, 1),
            "open_warm_ms": round(warm * 1000, 1),
            "hidden_layer_ms": round(hidden_ms, 2),
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=500)
    p.add_argument("--no-smollm2", action="store_true")
    args = p.parse_args()
    from backend.engine.models import load_model

    smol = load_model("smollm2-135m")
    models = [tiny(64, 4, smol.tokenizer, "tiny-d64-L4"), tiny(256, 12, smol.tokenizer, "small-d256-L12")]
    if not args.no_smollm2:
        models.append(smol)
    rows = []
    for loaded in models:
        row = measure(loaded, args.tokens)
        rows.append(row)
        print(
            f"{row['model']:>16}  d={row['d_model']:<5} L={row['n_layers']:<3} steps={row['n_steps']:<4} "
            f"{row['mb_per_1k_tokens']:.2f} MB/1k tokens  open {row['open_cold_ms']:.0f} ms cold, "
            f"{row['open_warm_ms']:.0f} ms warm",
            flush=True,
        )
    print(json.dumps({"tokens": args.tokens, "models": rows}))


if __name__ == "__main__":
    main()
