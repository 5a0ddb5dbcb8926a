"""Peak memory of one analysis against the answer length (issue 15 item 1: memory bounded by bytes).

    python tests/benchmarks/memory_bench.py [--answers 1,16,100,400] [--tokens 64] [--cuts 9]
        [--model smollm2-135m] [--readout-mb 256]

Each answer length runs in its own process (peak RSS is per process): load the model, analyze a
trajectory of ``--tokens`` tokens at ``--cuts`` evenly spaced cut points (plus ~5 step boundaries
with the lens grid) with an answer of exactly m_a tokens. Last stdout line: one JSON object
{"model", "n_tokens", "peak_rss_mb": {m_a: MB}, "ratio_max_over_min_answer": peak(max)/peak(min)}.
Bar: peak at 400 answer tokens <= 1.5x the peak at 1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
from common import peak_rss_mb, trajectory_ids


def one(args) -> dict:
    from backend.engine.architecture import default_proxy_layers, locate
    from backend.engine.models import load_model
    from backend.engine.probe import ProbeRequest, analyze
    from backend.engine.trajectory import RAML_TEMPLATE, build_prompt, encode

    loaded = load_model(args.model)
    tok = loaded.tokenizer
    rss_loaded = peak_rss_mb()
    n, m_a = args.tokens, args.one
    traj = trajectory_ids(tok, n)
    answer = trajectory_ids(tok, m_a)  # an answer of exactly m_a tokens (a worked solution)
    req = ProbeRequest(
        prompt_ids=encode(tok, build_prompt(tok, "Maya has 5 apples... How many are left?", think=False)),
        trajectory_ids=traj,
        template_ids=encode(tok, RAML_TEMPLATE),
        answer_ids=answer,
        cuts=np.linspace(0, n, args.cuts).round().astype(int).tolist(),
        boundary_cuts=list(range(0, n + 1, max(1, n // 4))),
        proxy_layers=default_proxy_layers(locate(loaded.model).n_layers),
    )
    result = analyze(loaded.model, req, readout_bytes=args.readout_mb << 20)
    return {
        "answer_tokens": m_a,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_after_load_mb": round(rss_loaded, 1),
        "final_loss": float(result.answer_nll[-1]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--answers", default="1,16,100,400")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--cuts", type=int, default=9)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--readout-mb", type=int, default=256)
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one is not None:
        print(json.dumps(one(args)))
        return
    peaks: dict[int, float] = {}
    for m_a in [int(x) for x in args.answers.split(",")]:
        cmd = [sys.executable, __file__, "--one", str(m_a), "--tokens", str(args.tokens), "--cuts", str(args.cuts)]
        cmd += ["--model", args.model, "--readout-mb", str(args.readout_mb)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        row = json.loads(out)
        peaks[m_a] = row["peak_rss_mb"]
        print(json.dumps(row), flush=True)
    lo, hi = min(peaks), max(peaks)
    print(
        json.dumps(
            {
                "model": args.model,
                "n_tokens": args.tokens,
                "readout_mb": args.readout_mb,
                "peak_rss_mb": peaks,
                "ratio_max_over_min_answer": round(peaks[hi] / peaks[lo], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
