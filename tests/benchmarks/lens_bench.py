"""Tuned lens of a model: training time of the default budget and held-out quality, logit vs tuned.

    python tests/benchmarks/lens_bench.py [--model smollm2-135m] [--tokens 4096] [--epochs 2]
        [--threads N] [--cache DIR] [--out quality.json]

Trains exactly as ``raml lens train`` does (``backend.analysis.lens.train.train_lens``: offline text
→ training → held-out quality → stored by fingerprint) in a throwaway cache (or ``--cache``), after
loading the model (load time reported apart). Wall and CPU seconds per stage. Quality the way the
reference measures it: per-layer KL(p_final ‖ p_lens) on held-out text and the answer's lens loss
(mean NLL of the reference answer, read after each layer) on held-out questions, logit vs tuned.
Last stdout line: one JSON object {"model", "threads", "tokens", "steps", "load_s", "text_s",
"train_s", "evaluate_s", "wall_s", "cpu_s", "kl_logit", "kl_tuned", "answer_nll_logit",
"answer_nll_tuned", "tuned_beats_logit_kl", "tuned_beats_logit_answer"} ("beats": at every layer
but the last, which is the model's own readout for both).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from common import peak_rss_mb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tokens", type=int, default=None, help="training tokens (default: the default budget)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("RAML_TORCH_THREADS") or 2))
    ap.add_argument("--cache", default=None, help="cache folder to store the lens in (default: a temporary one)")
    ap.add_argument("--out", default=None, help="also write the JSON result here")
    ap.add_argument("--figure", default=None, help="draw the quality figure as PNG here (kaleido + chromium)")
    ap.add_argument("--from-json", default=None, help="only draw --figure from a saved --out JSON (no training)")
    args = ap.parse_args()

    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            draw(json.load(f), args.figure)
        return

    import torch

    from backend.analysis.lens.train import LensBudget, train_lens
    from backend.engine.models import load_model
    from backend.store.runs import RunStore

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    loaded = load_model(args.model)
    load_s = time.perf_counter() - t0
    budget = LensBudget()
    budget = LensBudget(tokens=args.tokens or budget.tokens, epochs=args.epochs or budget.epochs)
    root = args.cache or tempfile.mkdtemp(prefix="lens_bench_")

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "train" and (done % 8 == 0 or done == total):
            print(f"{stage} {done}/{total} {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)

    config = train_lens(RunStore(root), loaded, budget, progress=progress)
    q, t = config["quality"], config["timings"]
    last = len(q["kl_logit"]) - 1
    result = {
        "model": args.model,
        "fingerprint": loaded.fingerprint,
        "threads": args.threads,
        "tokens": config["trained"]["tokens"],
        "tokens_by_source": config["trained"]["tokens_by_source"],
        "steps": config["trained"]["steps"],
        "tokens_seen": config["trained"]["tokens_seen"],
        "held_out_tokens": q["held_out_tokens"],
        "held_out_answers": q["held_out_answers"],
        "load_s": round(load_s, 1),
        **{k: round(v, 1) for k, v in t.items()},
        "peak_rss_mb": round(peak_rss_mb()),
        "kl_logit": [round(v, 4) for v in q["kl_logit"]],
        "kl_tuned": [round(v, 4) for v in q["kl_tuned"]],
        "answer_nll_logit": [round(v, 4) for v in q["answer_nll_logit"]],
        "answer_nll_tuned": [round(v, 4) for v in q["answer_nll_tuned"]],
        "tuned_beats_logit_kl": all(q["kl_tuned"][i] < q["kl_logit"][i] for i in range(last)),
        "tuned_beats_logit_answer": all(q["answer_nll_tuned"][i] < q["answer_nll_logit"][i] for i in range(last)),
    }
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    if args.figure:
        draw(result, args.figure)
    print(json.dumps(result))


def draw(result: dict, path: str) -> None:
    from backend.plots.exports import ensure_browser
    from backend.plots.lens_quality import lens_quality_figure

    ensure_browser()
    title = (
        f"{result['model']}: logit vs tuned lens on held-out text "
        f"({result['tokens']} training tokens, {result['steps']} steps)"
    )
    if result.get("drop_last"):  # a saved result whose last layer was read through the final norm twice
        result = {
            **result,
            **{k: result[k][:-1] for k in ("kl_logit", "kl_tuned", "answer_nll_logit", "answer_nll_tuned")},
        }
        title += ", layers 0..L-2"
    fig = lens_quality_figure(result, title=title, height=360)
    fig.write_image(path, width=1000, height=360, scale=1.5)


if __name__ == "__main__":
    main()
