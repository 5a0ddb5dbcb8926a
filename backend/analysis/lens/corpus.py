"""Offline training text for a tuned lens (docs/lens.md): the bundled questions and worked traces
(``assets/``), the cached trajectories of the same model, and the model's own sampled generations.

Every text is read the way the lens grid reads it: chat prompt of the question, then the trajectory
(if any), the RaML template and the reference answer. Questions are split once, by a stable hash of
their text, into training and held-out (about one in five); everything made from a held-out question
(its text, its cached trajectories, generations from its prompt) is held out too, so the quality
numbers are measured on text the lens never saw.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from backend.store.hashing import text_sha256

ASSETS = Path(__file__).resolve().parents[3] / "assets"
QUESTION_FILES = (ASSETS / "questions" / "math_logic.jsonl", ASSETS / "demo" / "worked_traces.jsonl")
HELD_OUT_EVERY = 5


@dataclass(frozen=True)
class Example:
    question: str
    answer: str
    trajectory: str = ""
    source: str = "assets"


@dataclass
class Corpus:
    """Token sequences for training and held-out evaluation, and the (context, answer) pairs of the
    held-out questions for the answer's lens loss."""

    train: list[list[int]] = field(default_factory=list)
    held_out: list[list[int]] = field(default_factory=list)
    held_out_answers: list[tuple[list[int], list[int]]] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)  # training tokens per source

    @property
    def n_train(self) -> int:
        return sum(len(s) for s in self.train)


def is_held_out(question: str) -> bool:
    return int(text_sha256(question.strip())[:2], 16) % HELD_OUT_EVERY == 0  # the digest's first byte


def bundled_examples() -> list[Example]:
    """Questions and worked traces shipped in ``assets/`` (one per distinct question + trajectory)."""
    seen, out = set(), []
    for path in QUESTION_FILES:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            ex = Example(str(row["question"]), str(row["answer"]), str(row.get("trajectory") or ""))
            if (ex.question, ex.trajectory) not in seen:
                seen.add((ex.question, ex.trajectory))
                out.append(ex)
    return out


def cached_examples(store, fingerprint: str) -> list[Example]:
    """Trajectories of the runs in ``store`` analysed with the model ``fingerprint`` (damaged runs skipped)."""
    from backend.errors import RamlError

    out = []
    try:
        table = store.list_runs()
        keys = [k for k, s in zip(table["key"], table["status"]) if s == "ok"]
    except RamlError:
        return out
    for key in keys:
        try:
            run = store.open(key)
        except RamlError:
            continue
        if run.model_fingerprint == fingerprint and run.trajectory:
            out.append(Example(run.question, run.answer, run.trajectory, source="cached"))
    return out


def build(
    loaded,
    examples: list[Example],
    *,
    tokens: int,
    generate: Callable[[str, int], str] | None = None,
    held_out_generations: int = 4,
) -> Corpus:
    """Tokenize ``examples`` into a ``Corpus``; then, while the training text is short of ``tokens``,
    add the model's own generations (``generate(prompt, seed)``) from the training questions'
    prompts, and ``held_out_generations`` from the held-out ones."""
    from backend.engine.trajectory import RAML_TEMPLATE, build_prompt, encode

    tok = loaded.tokenizer
    corpus = Corpus()

    def add(ex: Example, source: str) -> None:
        prompt = build_prompt(tok, ex.question, think=False)
        context = encode(tok, prompt + ex.trajectory + RAML_TEMPLATE)
        answer = encode(tok, ex.answer)
        if is_held_out(ex.question):
            corpus.held_out.append(context + answer)
            if not ex.trajectory:
                corpus.held_out_answers.append((context, answer))
        elif corpus.n_train < tokens:
            corpus.train.append(context + answer)
            corpus.tokens[source] = corpus.tokens.get(source, 0) + len(context) + len(answer)

    for ex in examples:
        add(ex, ex.source)
    if generate is None:
        return corpus
    prompts = sorted({ex.question for ex in examples}, key=text_sha256)
    train_q = [q for q in prompts if not is_held_out(q)]
    held_q = [q for q in prompts if is_held_out(q)]
    for i, q in enumerate(held_q[:held_out_generations]):
        prompt = build_prompt(tok, q, think=False)
        corpus.held_out.append(encode(tok, prompt + generate(prompt, 10_000 + i)))
    seed = 0
    while train_q and corpus.n_train < tokens:
        q = train_q[seed % len(train_q)]
        prompt = build_prompt(tok, q, think=False)
        ids = encode(tok, prompt + generate(prompt, seed))
        corpus.train.append(ids)
        corpus.tokens["generated"] = corpus.tokens.get("generated", 0) + len(ids)
        seed += 1
    return corpus
