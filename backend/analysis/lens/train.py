"""Train, measure and store the tuned lens of a loaded model (the ``lens_train`` job; docs/lens.md).

``train_lens``: offline text (``corpus``) → ``backend.engine.tuned_lens.train`` → held-out quality
(per-layer KL to the final distribution and the answer's lens loss, logit vs tuned) → stored by the
model's fingerprint (``backend.store.lenses``), the quality numbers in its config.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from backend.analysis.lens import corpus as text

Progress = Callable[[str, int, int], None]  # (stage, done, total)

DEFAULT_TOKENS = 1024  # training tokens of the default budget (docs/lens.md: 560 s CPU on SmolLM2, measured)
MIN_TOKENS, MAX_TOKENS = 256, 1 << 22
GENERATION_TOKENS = 96  # new tokens per generation of the model's own text
EPOCHS = 1  # passes over the training text


@dataclass(frozen=True)
class LensBudget:
    tokens: int = DEFAULT_TOKENS
    window: int = 128
    batch_windows: int = 1  # one window per optimiser step: twice the steps for the same text
    epochs: int = EPOCHS
    generations: bool = True  # add the model's own text until ``tokens`` are reached
    seed: int = 0

    def steps(self, n_train: int) -> int:
        return max(1, math.ceil(self.epochs * n_train / (self.window * self.batch_windows)))


def check_tokens(tokens: int) -> str | None:
    """A one-line reason why ``tokens`` is no training budget, or None."""
    if not MIN_TOKENS <= tokens <= MAX_TOKENS:
        return f"tokens {tokens} must lie in {MIN_TOKENS}..{MAX_TOKENS}"
    return None


def _generator(loaded):
    from backend.engine.trajectory import GenerationSettings, generate

    def sample(prompt: str, seed: int) -> str:
        settings = GenerationSettings(max_new_tokens=GENERATION_TOKENS, temperature=1.0, top_p=1.0, seed=seed)
        return generate(loaded, prompt, settings)

    return sample


def build_corpus(store, loaded, budget: LensBudget) -> text.Corpus:
    examples = text.bundled_examples() + text.cached_examples(store, loaded.fingerprint)
    return text.build(
        loaded, examples, tokens=budget.tokens, generate=_generator(loaded) if budget.generations else None
    )


def quality(loaded, lens, corpus: text.Corpus) -> dict:
    """Held-out per-layer KL to the final distribution and answer lens loss, logit vs ``lens`` ``[L]`` each."""
    from backend.engine import tuned_lens as tl
    from backend.engine.architecture import locate

    arch = locate(loaded.model)
    out = {
        "kl_logit": tl.layer_kl(loaded.model, arch, arch.lens, corpus.held_out).tolist(),
        "kl_tuned": tl.layer_kl(loaded.model, arch, lens, corpus.held_out).tolist(),
        "answer_nll_logit": tl.answer_lens_by_layer(loaded.model, arch, arch.lens, corpus.held_out_answers).tolist(),
        "answer_nll_tuned": tl.answer_lens_by_layer(loaded.model, arch, lens, corpus.held_out_answers).tolist(),
        "held_out_tokens": sum(len(s) for s in corpus.held_out),
        "held_out_answers": len(corpus.held_out_answers),
    }
    return out


def _optimizer_text(settings) -> str:
    from backend.engine import tuned_lens as tl

    if settings.optimizer == "adam":
        head = f"adam lr {settings.adam_lr:g}"
    else:
        head = f"sgd nesterov momentum {tl.MOMENTUM} lr {settings.lr_scale * (1 - tl.MOMENTUM):g}"
    return f"{head} weight decay {tl.WEIGHT_DECAY:g}, linear decay, clip {tl.CLIP_NORM:g}"


def train_lens(store, loaded, budget: LensBudget = LensBudget(), *, progress: Progress | None = None) -> dict:
    """Train the tuned lens of ``loaded`` on offline text, measure it on held-out text, store it by
    fingerprint; returns the stored config (with ``quality`` and ``timings``)."""
    import torch

    from backend.engine import tuned_lens as tl
    from backend.engine.architecture import locate
    from backend.store.lenses import read_config, save_lens

    report = progress or (lambda stage, done, total: None)
    timings: dict[str, float] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    report("text", 0, 1)
    corpus = build_corpus(store, loaded, budget)
    report("text", 1, 1)
    timings["text_s"] = time.perf_counter() - t0
    arch = locate(loaded.model)
    settings = tl.TrainSettings(
        steps=budget.steps(corpus.n_train), window=budget.window, batch_windows=budget.batch_windows, seed=budget.seed
    )
    t1 = time.perf_counter()
    torch.manual_seed(budget.seed)
    lens, trained = tl.train(
        loaded.model, arch, corpus.train, settings, progress=lambda done, total: report("train", done, total)
    )
    timings["train_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    report("evaluate", 0, 1)
    measured = quality(loaded, lens, corpus)
    report("evaluate", 1, 1)
    timings["evaluate_s"] = time.perf_counter() - t2
    timings["wall_s"] = time.perf_counter() - t0
    timings["cpu_s"] = time.process_time() - c0
    config = {
        **tl.reference_config(loaded, lens),
        "trained": {
            "tokens": corpus.n_train,
            "tokens_by_source": corpus.tokens,
            "steps": trained.steps,
            "tokens_seen": trained.tokens_seen,
            "window": budget.window,
            "batch_windows": budget.batch_windows,
            "epochs": budget.epochs,
            "seed": budget.seed,
            "objective": "kl_to_final",
            "optimizer": _optimizer_text(settings),
            "train_kl_first_last": [trained.train_kl[0], trained.train_kl[-1]],
        },
        "quality": measured,
        "timings": timings,
    }
    folder = save_lens(store.root, loaded.fingerprint, lens.state_arrays(), config)
    return read_config(folder)
