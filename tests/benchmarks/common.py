"""Shared helpers for the benchmark scripts: repo on sys.path, a synthetic trajectory of
exactly N tokens, a request of seeded random ids (length sweeps), medians, peak memory, a slope."""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REASONING = (
    "Maya starts with 5 apples. Two bags of 4 apples each add 8 more, so she has 13. "
    "Wait, let me check that: 5 + 8 = 13, yes.\n"
    "She gives 6 to her friend, leaving 7. Then she eats 1, so 7 - 1 = 6. "
    "However, I should verify the bags: 2 * 4 = 8. Hmm, that is right. "
)


def trajectory_ids(tokenizer, n_tokens: int) -> list[int]:
    """Token ids of a reasoning-like text, repeated and cut to exactly ``n_tokens``."""
    ids: list[int] = []
    while len(ids) < n_tokens:
        ids += tokenizer(REASONING, add_special_tokens=False)["input_ids"]
    return ids[:n_tokens]


def median_time(fn, repeats: int) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls (after the caller's warm-up) and the last result."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# Synthetic requests of the length sweeps (length_bench.py, gpu_check.py): seeded random ids, so no
# tokenizer is needed and every model of a vocabulary >= 10 takes them.
PROMPT_TOKENS, TEMPLATE_TOKENS, ANSWER_TOKENS = 40, 10, 3
TOKENS_PER_STEP = 20  # one step boundary per 20 trajectory tokens (1,500 steps ≈ 30k tokens)


def synthetic_request(vocab: int, n_tokens: int, cuts: str, seed: int = 0):
    """A ``ProbeRequest`` of seeded random ids: P prompt, n trajectory, m_t template, m_a answer
    tokens; ``cuts`` "all" (every token) or "stride:K"; a boundary every ``TOKENS_PER_STEP`` tokens."""
    import numpy as np

    from backend.engine.probe import ProbeRequest

    rng = np.random.default_rng(seed)
    ids = lambda k: rng.integers(10, vocab, size=k).tolist()  # noqa: E731
    stride = 1 if cuts == "all" else int(cuts.split(":", 1)[1])
    return ProbeRequest(
        prompt_ids=ids(PROMPT_TOKENS),
        trajectory_ids=ids(n_tokens),
        template_ids=ids(TEMPLATE_TOKENS),
        answer_ids=ids(ANSWER_TOKENS),
        cuts=None if stride == 1 else list(range(0, n_tokens + 1, stride)),
        boundary_cuts=sorted(set(range(0, n_tokens + 1, TOKENS_PER_STEP)) | {n_tokens}),
    )


def floor_ratio(req, n_cuts: int) -> float:
    """Engine cost over one forward at the floor: (P + n + C·m) / (P + n) tokens."""
    ctx = len(req.prompt_ids) + len(req.trajectory_ids)
    return (ctx + n_cuts * len(req.probe_ids)) / ctx


def work_floor(req, n_cuts: int, n_boundaries: int, model) -> float:
    """Engine cost over one forward at the floor of the work, in the body's FLOPs: the tokens of
    ``floor_ratio`` plus the LM-head rows the engine must read out and one forward does not, each
    costing u = d·V / (body parameters) tokens: (P + n + C·m + u·(C + K·L)·m_a) / (P + n + u).
    The C curve rows and the K·L lens-grid rows are what any method pays (the naive one too);
    attention is left out of both floors."""
    from backend.engine.architecture import locate

    arch = locate(model)
    body = sum(p.numel() for layer in arch.layers for p in layer.parameters())
    u = arch.lm_head.weight.numel() / body
    ctx = len(req.prompt_ids) + len(req.trajectory_ids)
    rows = (n_cuts + n_boundaries * arch.n_layers) * len(req.answer_ids)
    return (ctx + n_cuts * len(req.probe_ids) + u * rows) / (ctx + u)


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys on xs (None with fewer than two points)."""
    if len(xs) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else None


def tiny_llama(vocab: int, hidden: int = 64):
    """The test suite's tiny Llama shape (tests/conftest.py ``build_tiny_model``) with 40k positions,
    a vocabulary of ``vocab`` and width ``hidden`` (seeded: the same weights every call)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=40960,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()
