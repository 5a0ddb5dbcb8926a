"""Parameter-proxy timings: the proxy-plane loss surface on SmolLM2, PCA and UMAP on N points.

    python tests/benchmarks/proxy_bench.py [--grid 15] [--layer L] [--batch 16] [--points 500]
        [--random-grid 0] [--quick]

Makes a short SmolLM2 run (imported trajectory, step-boundary cuts) in a temporary cache,
then times ``loss_surface`` (grid x grid plus the path), optionally ``random_landscape``,
and PCA / UMAP fits of ``--points`` real vectors (hidden states of several runs' boundaries,
padded with jitter if needed). ``plain_forward_s`` (one forward over the question's tokens,
before and after the surface) and ``load_average_1min`` show how busy the machine was.
Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np
from common import median_time, peak_rss_mb

TRAJECTORY = (
    "Maya starts with 5 apples. Two bags of 4 apples each add 8 more, so she has 13. "
    "Wait, let me check that: 5 + 8 = 13, yes.\n"
    "She gives 6 to her friend, leaving 7. Then she eats 1, so 7 - 1 = 6. "
    "However, I should verify the bags: 2 * 4 = 8. Hmm, that is right. So she has 6 apples."
)
QUESTION = (
    "Maya has 5 apples. She buys 2 bags with 4 apples each, gives 6 apples to her friend, "
    "and then eats 1. How many apples does she have now?"
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", type=int, default=15)
    ap.add_argument("--layer", type=int, default=None, help="proxy layer (default: the middle stored one)")
    ap.add_argument("--batch", type=int, default=None, help="grid points per forward (default: automatic)")
    ap.add_argument("--points", type=int, default=500)
    ap.add_argument("--random-grid", type=int, default=0, help="also time a random landscape of this grid")
    ap.add_argument("--quick", action="store_true", help="grid 5, 100 points")
    args = ap.parse_args()
    if args.quick:
        args.grid, args.points = 5, 100

    import torch

    from backend.analysis.landscapes import surfaces as landscape
    from backend.analysis.spaces import proxy
    from backend.engine import forward
    from backend.engine.models import load_model
    from backend.pipeline.run import RunRequest, run_question
    from backend.store.runs import RunStore

    t0 = time.perf_counter()
    loaded = load_model("smollm2-135m")
    load_s = time.perf_counter() - t0
    store = RunStore(tempfile.mkdtemp(prefix="proxy_bench_"))
    req = RunRequest(question=QUESTION, answer="6", trajectory=TRAJECTORY, model=loaded.name, cuts="steps")
    run = store.open(run_question(req, store, loaded=loaded).key)
    layers = run.meta["proxy_layers"]
    layer = args.layer if args.layer is not None else layers[len(layers) // 2]
    n_tokens = len(landscape.question_ids(run, loaded.tokenizer)[0])

    os.environ.setdefault("TQDM_DISABLE", "1")
    ids, m_a = landscape.question_ids(run, loaded.tokenizer)
    forward.teacher_forced_loss(loaded.model, ids, m_a)  # warm-up
    forward_s, _ = median_time(lambda: forward.teacher_forced_loss(loaded.model, ids, m_a), 5)
    t0, c0 = time.perf_counter(), time.process_time()
    surface = landscape.loss_surface(run, layer, loaded=loaded, grid=args.grid, batch=args.batch)
    surface_s, surface_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    forward_after_s, _ = median_time(lambda: forward.teacher_forced_loss(loaded.model, ids, m_a), 5)
    t0 = time.perf_counter()
    landscape.loss_surface(run, layer, loaded=loaded, grid=args.grid, batch=args.batch)
    surface_reopen_s = time.perf_counter() - t0
    n_evals = args.grid**2 + 2 * len(surface.path_coords)

    random_s = random_cpu_s = None
    if args.random_grid:
        t0, c0 = time.perf_counter(), time.process_time()
        landscape.random_landscape(run, loaded=loaded, grid=args.random_grid)
        random_s, random_cpu_s = time.perf_counter() - t0, time.process_time() - c0

    # real vectors: the run's hidden states at every layer (boundaries x layers), jittered up to N
    hidden = run.tensor("hidden").astype(np.float32)  # [B, L, d]
    base = hidden.reshape(-1, hidden.shape[-1])
    rng = np.random.default_rng(0)
    reps = int(np.ceil(args.points / len(base)))
    jittered = [base + rng.normal(scale=0.05 * base.std(), size=base.shape) for _ in range(reps)]
    x = np.concatenate(jittered)[: args.points]
    timings = {}
    for method in ("pca", "umap"):
        t0 = time.perf_counter()
        out = proxy._fit(x.astype(np.float32), method)
        timings[method] = (time.perf_counter() - t0, float(out["trustworthiness"]))
    # UMAP's first call includes numba compilation: time a second, warm fit as well
    t0 = time.perf_counter()
    proxy._fit(x.astype(np.float32), "umap")
    umap_warm_s = time.perf_counter() - t0

    result = {
        "model": loaded.name,
        "device": str(loaded.device),
        "threads": torch.get_num_threads(),
        "model_load_s": round(load_s, 2),
        "layer": layer,
        "n_layers": run.meta["model"]["n_layers"],
        "question_tokens": n_tokens,
        "grid": args.grid,
        "batch": args.batch or landscape.default_batch(n_tokens, loaded.device),
        "surface_evaluations": n_evals,
        "surface_s": round(surface_s, 2),
        "surface_cpu_s": round(surface_cpu_s, 2),
        "surface_reopen_s": round(surface_reopen_s, 4),
        # context for a busy machine: one plain forward over the question's tokens, before and after
        "plain_forward_s": round(forward_s, 4),
        "plain_forward_after_s": round(forward_after_s, 4),
        "surface_loss_range": [round(float(surface.loss.min()), 4), round(float(surface.loss.max()), 4)],
        "random_landscape_grid": args.random_grid or None,
        "random_landscape_s": None if random_s is None else round(random_s, 2),
        "random_landscape_cpu_s": None if random_cpu_s is None else round(random_cpu_s, 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "points": len(x),
        "dim": int(x.shape[1]),
        "pca_s": round(timings["pca"][0], 3),
        "pca_trustworthiness": round(timings["pca"][1], 4),
        "umap_first_s": round(timings["umap"][0], 2),
        "umap_warm_s": round(umap_warm_s, 2),
        "umap_trustworthiness": round(timings["umap"][1], 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    shutil.rmtree(store.root, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
