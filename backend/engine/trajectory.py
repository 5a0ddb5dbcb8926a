"""Trajectories: build the prompt, generate or import a chain of thought, split off the
``<think>`` part, tokenize it with character offsets, segment it into steps, and mark
reflection words.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

import torch

from backend.engine.specs import SEGMENTATIONS, parse_segmentation  # noqa: F401 (re-exported)
from backend.errors import InputError

RAML_TEMPLATE = "\n\n**Final Answer**\n\\boxed{"

# Reflection words (docs/architecture.md §1 plus common variants). Multi-word phrases first.
REFLECTION_PATTERN = re.compile(
    r"\b(let me (?:double[- ]?check|check|verify|re-?check)|(?:in )?any case|"
    r"wait|retry|recheck|re-check|however|alternatively|hmm+)\b",
    re.IGNORECASE,
)
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


@dataclass
class Step:
    index: int
    start: int  # first trajectory token of the step
    end: int  # one past its last token; the step's boundary cut point
    text: str
    reflection_words: list[str] = field(default_factory=list)


@dataclass
class ReflectionMark:
    word: str
    char_start: int
    cut_before: int  # cut point just before the word's first token
    cut_after: int  # cut point just after its last token


def split_thinking(text: str) -> tuple[str, str, bool]:
    """Split a response into (thinking, after_thinking, had_think_tags).

    ``<think>`` may be missing at the start (templates that put it in the prompt); a
    response with no ``</think>`` is all thinking.
    """
    if _THINK_CLOSE in text:
        thinking, after = text.split(_THINK_CLOSE, 1)
        if _THINK_OPEN in thinking:
            thinking = thinking.split(_THINK_OPEN, 1)[1]
        return thinking, after, True
    if _THINK_OPEN in text:
        return text.split(_THINK_OPEN, 1)[1], "", True
    return text, "", False


def build_prompt(tokenizer, question: str, think: bool) -> str:
    """Chat-formatted prompt that precedes the trajectory (ends with ``<think>`` if ``think``)."""
    if not question or not question.strip():
        raise InputError("question is empty")
    messages = [{"role": "user", "content": question.strip()}]
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        prompt = f"Question: {question.strip()}\nAnswer: "
    if think and not prompt.rstrip().endswith(_THINK_OPEN):
        prompt += _THINK_OPEN + "\n"
    return prompt


def encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_with_offsets(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of ``text`` and each token's (start, end) character span."""
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    except (NotImplementedError, TypeError, ValueError):  # slow tokenizers: decode prefixes
        ids = encode(tokenizer, text)
        offsets, prev = [], 0
        for i in range(len(ids)):
            end = min(len(tokenizer.decode(ids[: i + 1])), len(text))
            offsets.append((prev, end))
            prev = end
        return ids, offsets


def generate(loaded, question: str, settings: GenerationSettings) -> str:
    """Sample (or greedily decode) a response to ``question``; returns the decoded text."""
    tok, model = loaded.tokenizer, loaded.model
    prompt = build_prompt(tok, question, think=False)
    ids = torch.tensor([encode(tok, prompt)], device=loaded.device)
    kwargs = dict(max_new_tokens=settings.max_new_tokens, pad_token_id=tok.pad_token_id)
    if settings.greedy:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        torch.manual_seed(settings.seed)
        kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
    text = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=False)
    for special in {tok.eos_token, tok.pad_token} - {None}:
        text = text.split(special)[0]
    return text


def _step_boundaries_chars(text: str, mode: str) -> list[int]:
    """Character offsets where a new step starts (excluding 0)."""
    if mode == "lines":
        pattern = r"\n+"
    elif mode == "paragraphs":
        pattern = r"\n\s*\n+"
    else:  # sentences: line breaks and sentence ends followed by whitespace (Thought Anchors style)
        pattern = r"\n+|(?<=[.!?])[ \t]+(?=\S)"
    return [m.end() for m in re.finditer(pattern, text) if 0 < m.end() < len(text)]


def segment(text: str, offsets: list[tuple[int, int]], spec: str = "sentences") -> list[Step]:
    """Split the trajectory into steps that cover all its tokens, each ending at a cut point."""
    n = len(offsets)
    if n == 0:
        return []
    mode, window = parse_segmentation(spec)
    if mode == "tokens":
        token_starts = list(range(window, n, window))
    else:
        starts = [o[0] for o in offsets]
        # the token containing the boundary character starts the step (BPE glues spaces to the next word)
        token_starts = sorted({bisect.bisect_right(starts, c) - 1 for c in _step_boundaries_chars(text, mode)})
        token_starts = [t for t in token_starts if 0 < t < n]
    bounds = [0, *token_starts, n]
    char_at = [o[0] for o in offsets] + [len(text)]
    steps = []
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        chunk = text[char_at[a] if a else 0 : char_at[b]]
        words = [m.group(0) for m in REFLECTION_PATTERN.finditer(chunk)]
        steps.append(Step(i, a, b, chunk, words))
    return steps


def reflection_marks(text: str, offsets: list[tuple[int, int]]) -> list[ReflectionMark]:
    """Every reflection word with the cut points just before and after it."""
    starts = [o[0] for o in offsets]
    ends = [o[1] for o in offsets]
    marks = []
    for m in REFLECTION_PATTERN.finditer(text):
        before = max(0, bisect.bisect_right(starts, m.start()) - 1)
        after = bisect.bisect_left(ends, m.end()) + 1
        marks.append(ReflectionMark(m.group(0), m.start(), before, min(after, len(offsets))))
    return marks


def first_answer_cut(text: str, offsets: list[tuple[int, int]], answer: str) -> int | None:
    """Cut point after which the answer text already appears in the trajectory (None if never).

    Cut points beyond it are flagged and excluded from plots, as in the reference.
    """
    answer = answer.strip()
    if not answer:
        return None
    pattern = re.compile(r"(?<![\w.])" + re.escape(answer) + r"(?![\w])")
    m = pattern.search(text)
    if m is None:
        return None
    ends = [o[1] for o in offsets]
    return min(bisect.bisect_left(ends, m.end()) + 1, len(offsets))
