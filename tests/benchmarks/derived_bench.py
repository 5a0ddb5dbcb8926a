"""Derived data at research length (issue 23 item 3): size on disk, time and the extra peak RSS of
each derived kind of one synthetic long run, and the rule that carries them to SmolLM2.

    python tests/benchmarks/derived_bench.py [--steps 1500] [--tokens-per-step 20]
        [--kinds run,exact,attention,attention_every,surface,landscape,claims,ablation]
        [--ablation-steps 25,50] [--smollm2]

The run: a random Llama (4 layers, d = 128, 4 heads, SmolLM2's tokenizer and vocabulary, 40k
positions) scores a trajectory of steps × tokens-per-step tokens (segmentation ``tokens:K``: exactly
that many steps), cut points at the step boundaries only (``cuts: steps``), through the run
pipeline into a fresh cache. Then, in this process and in order, each kind; before each, the
process's peak RSS is reset (``/proc/self/clear_refs``) so "extra_rss_mb" is that kind's own
(peak − RSS before). "size_bytes" is what the kind added to the cache.

Ablation encodes Σ_k (n − e_k) ≈ S·n/2 tokens: hours at 1,500 steps even on the tiny model, so it
is measured on shorter runs of the same tokens per step (``--ablation-steps``) and extrapolated by
its cost rule, seconds ≈ (Σ_k (n − e_k) / n) × forward_s(n) × f, where f (measured: ablation
seconds over that many forwards) is taken from the largest measured size and forward_s(n) is
measured at the full length.

``--smollm2``: also times one forward of SmolLM2-135M and of the tiny model over the same 2,048
tokens; SmolLM2 figures are the tiny ones times that ratio (the stated rule for times; sizes
follow from the shapes: see "smollm2_sizes"). Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import REASONING, peak_rss_mb
from length_bench import _status_mb, reset_peak_rss

QUESTION = "Maya has 5 apples, buys two bags of 4, gives 6 away and eats 1. How many are left?"
KINDS = ("run", "exact", "attention", "attention_every", "surface", "landscape", "claims", "ablation")


def tokenizer():
    """SmolLM2's tokenizer, from the converted copy when there is one (as tests/conftest.py)."""
    from transformers import AutoTokenizer

    from backend.engine import converted
    from backend.engine.models import load_tokenizer, resolve

    spec = resolve("smollm2-135m")
    copy = converted.converted_dir(spec.fingerprint(), "float32")
    return AutoTokenizer.from_pretrained(str(copy)) if converted.is_complete(copy) else load_tokenizer(spec)


def tiny_model(vocab: int):
    from common import tiny_llama

    return tiny_llama(vocab, hidden=128)


def trajectory_text(tok, n_tokens: int) -> str:
    """Reasoning-like text of about ``n_tokens`` tokens (the exact count is what the run reports)."""
    one = len(tok(REASONING, add_special_tokens=False)["input_ids"])
    return REASONING * max(1, round(n_tokens / one))


def folder_bytes(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in root.rglob("*") if p.is_file()}


class Measure:
    """Time, extra peak RSS and bytes added to the cache of one kind."""

    def __init__(self, root: Path):
        self.root, self.rows = root, {}

    def __call__(self, name: str, fn, **extra):
        before_files = folder_bytes(self.root)
        rss = _status_mb("VmRSS") or 0.0
        reset = reset_peak_rss()
        t0 = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - t0
        peak = (_status_mb("VmHWM") if reset else peak_rss_mb()) or 0.0
        after = folder_bytes(self.root)
        added = sum(size for path, size in after.items() if path not in before_files)
        self.rows[name] = {"seconds": round(seconds, 2), "extra_rss_mb": round(peak - rss, 1), "size_bytes": added}
        self.rows[name].update(extra)
        print(json.dumps({name: self.rows[name]}), flush=True)
        return value


def make_run(store, loaded, steps: int, per_step: int):
    from backend.pipeline.run import RunRequest, run_question

    text = trajectory_text(loaded.tokenizer, steps * per_step)
    req = RunRequest(
        question=QUESTION,
        answer="6",
        trajectory=text,
        model=loaded.name,
        segmentation=f"tokens:{per_step}",
        cuts="steps",
    )
    return store.open(run_question(req, store, loaded=loaded).key)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--tokens-per-step", type=int, default=20)
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--ablation-steps", default="25,50")
    p.add_argument("--smollm2", action="store_true", help="time SmolLM2 against the tiny model for the rule")
    p.add_argument("--cache-dir", default=None, help="default: a temporary folder")
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]

    # isort: off
    import backend  # noqa: F401  # before torch: the project's OpenMP wait policy (docs/threads.md)
    import numpy as np
    import torch

    # isort: on
    import tempfile

    from backend.engine import provider, threads
    from backend.engine.models import LoadedModel
    from backend.engine.probe import forward_seconds
    from backend.store.runs import RunStore

    threads.configure_torch_threads()
    torch.set_grad_enabled(False)
    root = Path(args.cache_dir or tempfile.mkdtemp(prefix="derived_bench_"))
    store = RunStore(root)
    tok = tokenizer()
    loaded = LoadedModel.from_objects("tiny-long-d128", tiny_model(len(tok)), tok)
    provider.register(loaded)
    measure = Measure(root)
    run = measure("run", lambda: make_run(store, loaded, args.steps, args.tokens_per_step))
    K, n = len(run.boundary_cuts()), int(run.n_tokens)
    measure.rows["run"].update(n_tokens=n, boundaries=K)
    from backend.analysis.importance.run import probe_request_for_run

    req = probe_request_for_run(run, tok)
    out: dict = {"model": loaded.name, "n_tokens": n, "steps": K - 1, "kinds": measure.rows}

    if "exact" in kinds:
        from backend.analysis.exact import run as exact_run

        hit = measure("exact", lambda: exact_run.ensure(run, loaded=loaded, store=store), boundaries=K)
        measure.rows["exact"]["stored"] = hit.meta["stored"]
    if "attention" in kinds:
        from backend.analysis.importance.attention import probe_attention

        measure("attention", lambda: probe_attention(loaded.model, req), cuts=1)
    if "attention_every" in kinds:
        from backend.analysis.importance.attention import probe_attention

        att = measure("attention_every", lambda: probe_attention(loaded.model, req, every_boundary=True), cuts=K)
        measure.rows["attention_every"]["per_step_rows_kept"] = int(len(att.kept_rows))
    layer = int(run.meta["proxy_layers"][len(run.meta["proxy_layers"]) // 2])
    if "surface" in kinds:
        from backend.analysis.landscapes.surfaces import loss_surface

        measure(
            "surface", lambda: loss_surface(run, layer, loaded=loaded, store=store), layer=layer, points=225 + 2 * K
        )
    if "landscape" in kinds:
        from backend.analysis.landscapes.surfaces import random_landscape

        measure("landscape", lambda: random_landscape(run, loaded=loaded, store=store), points=121)
    if "claims" in kinds:
        from backend.analysis.dataset.claims import ClaimsSettings, _cached_digest

        measure("claims", lambda: _cached_digest(store, run, ClaimsSettings()))
    if "ablation" in kinds:
        from backend.analysis.importance.ablation import ablate, step_spans

        context = req.prompt_ids + list(req.trajectory_ids)
        forward_n = min(forward_seconds(loaded.model, context) for _ in range(2))
        fits = []
        for s in [int(x) for x in args.ablation_steps.split(",") if x.strip()]:
            small = make_run(store, loaded, s, args.tokens_per_step)
            sreq = probe_request_for_run(small, tok)
            sctx = sreq.prompt_ids + list(sreq.trajectory_ids)
            fwd = min(forward_seconds(loaded.model, sctx) for _ in range(2))
            encoded = sum(len(sreq.trajectory_ids) - e for _s, e in step_spans(sreq))
            row = measure(f"ablation_{s}_steps", lambda sreq=sreq: ablate(loaded.model, sreq), steps=s)
            del row
            secs = measure.rows[f"ablation_{s}_steps"]["seconds"]
            f = secs / (encoded / len(sreq.trajectory_ids) * fwd)
            measure.rows[f"ablation_{s}_steps"].update(forward_s=round(fwd, 4), encoded_tokens=encoded, f=round(f, 3))
            fits.append(f)
        encoded = sum(len(req.trajectory_ids) - e for _s, e in step_spans(req))
        out["ablation_extrapolated"] = {
            "rule": "seconds ≈ (Σ_k (n − e_k) / n) × forward_s(n) × f (f from the largest measured size)",
            "encoded_tokens": encoded,
            "forward_s": round(forward_n, 4),
            "f": round(fits[-1], 3) if fits else None,
            "seconds": round(encoded / len(req.trajectory_ids) * forward_n * fits[-1], 1) if fits else None,
        }
    if args.smollm2:
        from backend.engine.models import load_model

        ids = np.random.default_rng(0).integers(10, len(tok), size=2048).tolist()
        tiny_s = min(forward_seconds(loaded.model, ids) for _ in range(2))
        smol = load_model("smollm2-135m", device="cpu").model
        forward_seconds(smol, ids[:64])
        smol_s = min(forward_seconds(smol, ids) for _ in range(2))
        out["smollm2_rule"] = {
            "rule": "SmolLM2 seconds ≈ tiny seconds × forward_s(SmolLM2) / forward_s(tiny) over 2,048 tokens",
            "tiny_forward_s": round(tiny_s, 4),
            "smollm2_forward_s": round(smol_s, 4),
            "ratio": round(smol_s / tiny_s, 2),
            "seconds": {k: round(v["seconds"] * smol_s / tiny_s, 1) for k, v in measure.rows.items()},
        }
    out["smollm2_sizes"] = smollm2_sizes(K)
    print(json.dumps(out))


def smollm2_sizes(K: int) -> dict:
    """Stored bytes of the derived kinds that grow with K, from SmolLM2-135M's shapes (L = 30,
    d = H = 576, 9 heads, m = 13 probe tokens), by the storing code's own formulas."""
    from backend.analysis.exact import data as exact_data

    L, d, H, m = 30, 576, 576, 13
    per = exact_data.factor_bytes(L, d, H, m)
    B = len(exact_data.stored_rows(K, per))
    return {
        "K": K,
        "exact_factors_unbounded_bytes": K * per,
        "exact_factors_stored_bytes": B * per,
        "exact_stored_boundaries": B,
        "exact_grams_bytes": 8 * L * B * B,
        "exact_path_bytes": 8 * L * K * 3 + 16 * K * L + 3 * 8 * K,
        "attention_every_per_step_unbounded_bytes": 4 * K * L * 9 * (K - 1),
    }


if __name__ == "__main__":
    main()
