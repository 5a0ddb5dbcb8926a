"""A long synthetic run (issue 23, "the page at this size"), written through the real run store.

``write_long_run(store)`` makes a run of research length (30,000 trajectory tokens, 1,500 steps
by default) with the shapes a real one has, without running a model over 30k tokens: a loss per
cut point that descends with noise and reflection-word bumps, steps of 5-60 tokens, reflection
words, a lens grid of every boundary and layer with top-5 tokens, hidden states and proxy
tensors whose 2-D projection is a path (a random walk with drift), and step importance
(ablation and attention) as derived data. It is written by ``RunStore.write`` and
``derived.save_derived``, so every reader (Explore, ``raml show``, the benchmarks) opens it like
any run. Seeded: the same arguments give the same key and the same files; an existing run of
that key is reused.

Shapes (docs/architecture.md §3): n tokens, C = n + 1 cut points, S steps, K = S + 1 boundaries,
L layers, d hidden size, F = 2·d_ff (a gated MLP's input projections).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

WORDS = (
    " the", " we", " so", " and", " is", " of", " to", " that", " if", " then", " a", " it", " this",
    " number", " sum", " each", " term", " equation", " value", " side", " both", " gives", " =", " +",
    " -", " *", " 2", " 3", " 4", " 5", " 7", " 12", " 15", " 24", " x", " y", " n", ",", ".", ":",
)  # fmt: skip
REFLECTION_WORDS = ("Wait", "Hmm", "But", "Alternatively", "Let me check")
QUESTION = "Synthetic long trace: find the sum of the first 1,500 terms (issue 23's page at research length)."
ANSWER = "42"


def long_run_tables(
    *,
    n_tokens: int = 30_000,
    n_steps: int = 1_500,
    n_layers: int = 30,
    d_model: int = 576,
    d_ff: int = 1536,
    proxy_layers: tuple[int, ...] | None = None,
    seed: int = 0,
    top_k: int = 5,
) -> tuple[dict, pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """(meta, tokens, steps, lens, tensors) as ``RunStore.write`` takes them (``backend.pipeline.run._tables``'s shapes)."""
    from backend.store.schema import Meta, ModelMeta, SummaryMeta, tensor_name

    if not 1 <= n_steps <= n_tokens:
        raise ValueError(f"need 1 <= n_steps <= n_tokens, got {n_steps} steps of {n_tokens} tokens")
    rng = np.random.default_rng(seed)
    n, S, L = int(n_tokens), int(n_steps), int(n_layers)
    K = S + 1

    # steps: lengths 5-60 tokens (log-normal around n / S), summing to n
    raw = rng.lognormal(mean=0.0, sigma=0.5, size=S)
    lengths = np.maximum(1, np.floor(raw / raw.sum() * n)).astype(np.int64)
    lengths[-1] += n - int(lengths.sum())
    while lengths[-1] < 1:  # rounding took too much from the last step: borrow from the longest
        j = int(np.argmax(lengths[:-1]))
        lengths[j] -= 1
        lengths[-1] += 1
    ends = np.cumsum(lengths)
    starts = ends - lengths
    reflective = rng.random(S) < 0.08
    reflective[0] = False

    # tokens: a reflection word opens a reflective step, the others are drawn from WORDS; steps end in "."
    token_text: list[str] = []
    reflections: list[dict] = []
    char = 0
    words = np.array(WORDS, dtype=object)
    for s in range(S):
        count = int(lengths[s])
        picks = list(words[rng.integers(0, len(words), size=count)])
        if count > 1:
            picks[-1] = ".\n" if rng.random() < 0.15 else "."
        if reflective[s]:
            word = REFLECTION_WORDS[int(rng.integers(0, len(REFLECTION_WORDS)))]
            picks[0] = (" " if s else "") + word
            reflections.append(
                {
                    "word": word,
                    "char_start": char + (1 if s else 0),
                    "cut_before": int(starts[s]),
                    "cut_after": int(starts[s]) + 1,
                }
            )
        for t in picks:
            token_text.append(t)
            char += len(t)
    trajectory = "".join(token_text)

    # L̂ per cut point: a descent from ~6 to ~1.2 nats, noise, and a bump after every reflection word
    cuts = np.arange(n + 1)
    progress = cuts / n
    loss = 1.2 + 4.8 * np.exp(-3.0 * progress) + 0.25 * np.sin(40 * progress)
    loss += rng.normal(0.0, 0.12, size=n + 1).cumsum() * 0.02 + rng.normal(0.0, 0.08, size=n + 1)
    for r in reflections:
        c = r["cut_after"]
        loss[c : c + 40] += 0.6 * np.exp(-np.arange(len(loss[c : c + 40])) / 12)
    loss = np.maximum(loss, 0.05)
    p_answer = np.exp(-loss)
    step_of_token = np.repeat(np.arange(S), lengths)
    reflection_at = {r["cut_after"]: r["word"] for r in reflections}
    answer_seen = int(0.85 * n)
    tokens = pd.DataFrame(
        {
            "cut": cuts,
            "progress": progress,
            "loss": loss,
            "p_answer": p_answer,
            "rank": np.maximum(0, np.round(loss * 3)).astype(np.int64),
            "entropy": 2.0 + 0.5 * loss + rng.normal(0, 0.1, size=n + 1),
            "token": [""] + token_text,
            "step": np.concatenate([[-1], step_of_token]),
            "after_answer_seen": cuts > answer_seen,
            "reflection": [reflection_at.get(int(c), "") for c in cuts],
        }
    )
    texts = ["".join(token_text[a:b]) for a, b in zip(starts, ends)]
    steps = pd.DataFrame(
        {
            "index": np.arange(S),
            "start": starts,
            "end": ends,
            "text": texts,
            "loss": loss[ends],
            "loss_before": loss[starts],
            "p_answer": p_answer[ends],
            "rank": tokens["rank"].to_numpy()[ends],
            "entropy": tokens["entropy"].to_numpy()[ends],
            "reflection": reflective,
            "reflection_words": [
                next((r["word"] for r in reflections if r["cut_before"] == int(a)), "") if f else ""
                for a, f in zip(starts, reflective)
            ],
        }
    )
    steps["delta_loss"] = steps["loss"] - steps["loss_before"]

    # lens grid [K, L]: early layers far from the answer, the last layer reads L̂ itself
    boundary_cuts = np.concatenate([[0], ends]).astype(np.int64)
    depth = np.linspace(0.0, 1.0, L)[None, :]
    lens_nll = (12.0 - 9.0 * depth**2) * (1 - depth) + loss[boundary_cuts][:, None] * depth
    lens_nll = lens_nll + rng.normal(0, 0.3, size=(K, L))
    lens_nll = np.maximum(lens_nll, 0.05)
    lens_p = np.exp(-lens_nll)
    top_ids = rng.integers(0, len(WORDS), size=(K * L, top_k))
    top_probs = np.sort(rng.dirichlet(np.ones(top_k) * 0.7, size=K * L), axis=1)[:, ::-1] * 0.9
    lens = pd.DataFrame(
        {
            "boundary": np.repeat(np.arange(K), L),
            "cut": np.repeat(boundary_cuts, L),
            "layer": np.tile(np.arange(L), K),
            "nll": lens_nll.reshape(-1),
            "p_answer": lens_p.reshape(-1),
            "top_tokens": [[WORDS[int(i)] for i in row] for row in top_ids],
            "top_probs": [row.tolist() for row in top_probs],
        }
    )

    # tensors: a random walk with drift in d dimensions (a path worth projecting), per layer a little apart
    layers = sorted(set(proxy_layers)) if proxy_layers is not None else _default_proxy_layers(L)
    drift = rng.normal(0, 1, size=d_model)
    walk = np.cumsum(rng.normal(0, 0.3, size=(K, d_model)) + drift * 0.05, axis=0)
    hidden = np.empty((K, L, d_model), dtype=np.float16)  # [K, L, d], filled a layer at a time
    for layer in range(L):
        hidden[:, layer] = walk * (1 + 0.1 * layer) + rng.normal(0, 0.2, size=(K, d_model))
    tensors: dict[str, np.ndarray] = {
        tensor_name("hidden"): hidden,
        tensor_name("boundary_cuts"): boundary_cuts,
    }
    F = 2 * d_ff
    for layer in layers:
        z = (walk * 0.05 + rng.normal(0, 1, size=d_model)).astype(np.float32)  # [K, d]
        w = rng.normal(0, d_model**-0.5, size=(d_model, F)).astype(np.float32)
        tensors[tensor_name("proxy_input", layer)] = z
        tensors[tensor_name("proxy_preact", layer)] = z @ w  # [K, F]

    meta = {
        Meta.QUESTION: QUESTION,
        Meta.ANSWER: ANSWER,
        Meta.ANSWER_SOURCE: "reference",
        Meta.LABEL: "long-synthetic",
        Meta.MODEL: {
            ModelMeta.NAME: "synthetic-long",
            ModelMeta.FINGERPRINT: f"synthetic-L{L}-d{d_model}",
            ModelMeta.CLASS: "Synthetic",
            ModelMeta.N_LAYERS: L,
            ModelMeta.D_MODEL: int(d_model),
            ModelMeta.VOCAB_SIZE: len(WORDS),
            ModelMeta.DTYPE: "float32",
            ModelMeta.DEVICE: "cpu",
        },
        Meta.PROMPT: f"<|user|>{QUESTION}<|assistant|><think>",
        Meta.TRAJECTORY: trajectory,
        Meta.RESPONSE: trajectory + f"</think>\\boxed{{{ANSWER}}}",
        Meta.TEMPLATE: "\n\n**Final Answer**\n\\boxed{",
        Meta.SEGMENTATION: "synthetic",
        Meta.CUTS: "all",
        Meta.GENERATION: {},
        Meta.PROXY_LAYERS: layers,
        Meta.ANSWER_IDS: [1, 2],
        Meta.FIRST_ANSWER_CUT: answer_seen,
        Meta.TRUNCATED_TOKENS: 0,
        Meta.REFLECTIONS: reflections,
        Meta.TIMINGS: {},
        Meta.TRAJECTORY_SOURCE: "imported",
        Meta.GENERATOR: {"kind": "imported", "synthetic": True},
        Meta.THINK_FORMAT: True,
        Meta.PREDICTED_ANSWER: ANSWER,
        Meta.CORRECT: True,
        Meta.GRADER: "exact",
        Meta.WARNINGS: [],
        Meta.ORIGIN: {"synthetic": {"n_tokens": n, "n_steps": S, "seed": int(seed)}},
        Meta.CREATED: time.time(),
        Meta.SUMMARY: {
            SummaryMeta.N_TOKENS: n,
            SummaryMeta.N_STEPS: S,
            SummaryMeta.N_CUTS: n + 1,
            SummaryMeta.INITIAL_LOSS: float(loss[0]),
            SummaryMeta.FINAL_LOSS: float(loss[-1]),
        },
        Meta.ANALYSIS_VERSION: "synthetic-1",
    }
    return meta, tokens, steps, lens, tensors


def _default_proxy_layers(n_layers: int) -> list[int]:
    """4 evenly spaced layers and the last (``backend.engine.architecture.default_proxy_layers``, without torch)."""
    picks = {round(i * (n_layers - 1) / 4) for i in range(4)} | {n_layers - 1}
    return sorted(picks)


def importance_payload(steps: pd.DataFrame, *, seed: int = 0, n_layers: int = 30) -> dict:
    """Ablation and attention importance of every step, shaped as ``compute_run_importance`` stores it."""
    from backend.analysis.importance.stored import IMPORTANCE_VERSION

    rng = np.random.default_rng(seed + 1)
    S = len(steps)
    ablation = rng.normal(0, 0.01, size=S) + np.where(steps["reflection"].to_numpy(), 0.05, 0.0)
    attention = rng.gamma(1.0, 1.0 / S, size=S)
    return {
        "version": IMPORTANCE_VERSION,
        "model": "synthetic",
        "boundary_cuts": [0, *[int(e) for e in steps["end"]]],
        "final_loss": float(steps["loss"].iloc[-1]),
        "ablation": [round(float(v), 7) for v in ablation],
        "ablated_final_loss": [round(float(steps["loss"].iloc[-1] + v), 7) for v in ablation],
        "every_boundary": False,
        "ablation_at_boundaries": None,
        "attention": {
            "cuts": [int(steps["end"].iloc[-1])],
            "head_mean": [round(float(v), 7) for v in attention],
            "head_mean_at_boundaries": None,
            "receiver_heads": [{"layer": int(n_layers // 2), "head": h, "kurtosis": 9.0 - h} for h in range(3)],
            "receiver_mean": [round(float(v), 7) for v in attention * 1.5],
            "prompt_mass": 0.3,
            "probe_mass": 0.1,
            "per_layer_head_shape": [n_layers, 9, S],
        },
        "timings": {"ablate_s": 0.0},
        "created": time.time(),
    }


def write_long_run(store, *, importance: bool = True, **shape) -> str:
    """Write the long run into ``store`` (``RunStore``) through its own writers; returns its key.
    ``shape``: ``long_run_tables``' keywords. A run of the same shape and seed already there is reused."""
    from backend.analysis.importance.stored import IMPORTANCE_PARAMS
    from backend.store import derived, schema
    from backend.store.runs import content_key

    key = content_key(
        {"synthetic_long_run": 1, **{k: list(v) if isinstance(v, tuple) else v for k, v in shape.items()}}
    )
    if not store.has(key):
        meta, tokens, steps, lens, tensors = long_run_tables(**shape)
        store.write(key, meta, tokens, steps, lens, tensors)
    if importance:
        run = store.open(key, verify=False)
        if derived.load_derived(store, run, schema.IMPORTANCE, IMPORTANCE_PARAMS) is None:
            derived.save_derived(
                store,
                run,
                schema.IMPORTANCE,
                IMPORTANCE_PARAMS,
                importance_payload(run.steps, seed=int(shape.get("seed", 0)), n_layers=run.n_layers),
            )
    return key


if __name__ == "__main__":  # python tests/long_run.py CACHE_DIR [n_tokens n_steps]: write one and print its key
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from backend.store.runs import RunStore

    args = sys.argv[1:]
    shape = {"n_tokens": int(args[1]), "n_steps": int(args[2])} if len(args) >= 3 else {}
    print(write_long_run(RunStore(args[0] if args else "cache"), **shape))
