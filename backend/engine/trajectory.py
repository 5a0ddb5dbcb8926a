"""Trajectories: build the prompt, generate or import a chain of thought, split off the
``<think>`` part, tokenize it with character offsets, segment it into steps, and mark
reflection words.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from backend.engine.specs import SEGMENTATIONS, parse_segmentation  # noqa: F401 (re-exported)
from backend.errors import InputError

RAML_TEMPLATE = "\n\n**Final Answer**\n\\boxed{"

# Version of the text segmenters, recorded in each run's meta. 2: sentences keep enumerations
# ("1. "), abbreviations ("Dr. ", "e.g. ", "i.e. ") and decimals whole and merge fragments under
# MIN_STEP_CHARS characters; the thought-anchors mode was added.
SEGMENTER_VERSION = 2
MIN_STEP_CHARS = 10
# a period after these words does not end a sentence
_ABBREVIATION_END = re.compile(
    r"(?:\b(?:dr|mr|mrs|ms|prof|sr|jr|st|vs|etc|approx|fig|figs|eq|eqs|no|cf|resp)|\be\.g|\bi\.e)\.\Z",
    re.IGNORECASE,
)
# a line that so far is only an enumeration marker: "1.", "  a.", "iv."
_ENUMERATION_HEAD = re.compile(r"[ \t>*_-]*(?:\d{1,3}|[a-z]|[ivx]{1,4})\.", re.IGNORECASE)

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


def generate(loaded, prompt: str, settings: GenerationSettings, prefix: str = "") -> str:
    """Sample (or greedily decode) what follows ``prompt + prefix``; returns the decoded new text.

    ``prompt``: the chat-formatted prompt (``build_prompt``; a run's stored ``prompt``); ``prefix``:
    the start of the response to continue (a branch's trajectory before step k), tokenized as the
    run pipeline tokenizes a trajectory. Sampling uses exactly ``settings.temperature`` and
    ``settings.top_p`` (no hidden top-k), seeded with ``settings.seed``. The text stops before the
    first EOS / pad token.
    """
    import torch  # here, not at import: reading settings and templates stays torch-free (fast CLI start-up)

    tok, model = loaded.tokenizer, loaded.model
    prefix_ids = encode_with_offsets(tok, prefix)[0] if prefix else []
    ids = torch.tensor([encode(tok, prompt) + prefix_ids], device=loaded.device)
    kwargs = dict(max_new_tokens=settings.max_new_tokens, pad_token_id=tok.pad_token_id)
    if settings.greedy:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        torch.manual_seed(settings.seed)
        kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=None)
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
    text = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=False)
    for special in {tok.eos_token, tok.pad_token} - {None}:
        text = text.split(special)[0]
    return text


def _sentence_ends_here(text: str, space_at: int) -> bool:
    """Is the ``.``/``!``/``?`` just before ``space_at`` a sentence end (not "Dr.", "e.g.", "1.")?"""
    if text[space_at - 1] != ".":
        return True
    if _ABBREVIATION_END.search(text[max(0, space_at - 8) : space_at]):
        return False
    line_start = text.rfind("\n", 0, space_at) + 1
    return not _ENUMERATION_HEAD.fullmatch(text, line_start, space_at)


def _merge_short(text: str, starts: list[int], min_chars: int = MIN_STEP_CHARS) -> list[int]:
    """Drop step starts so that no step has fewer than ``min_chars`` non-blank characters: a short
    step joins the next one, a short last step joins the one before (Thought Anchors' rule)."""
    bounds = [0, *starts, len(text)]
    pieces = [[a, b] for a, b in zip(bounds[:-1], bounds[1:])]
    i = 0
    while i < len(pieces) and len(pieces) > 1:
        a, b = pieces[i]
        if len(text[a:b].strip()) >= min_chars:
            i += 1
        elif i == len(pieces) - 1:
            pieces[i - 1][1] = b
            pieces.pop(i)
        else:
            pieces[i + 1][0] = a
            pieces.pop(i)
    return [a for a, _ in pieces[1:]]


def _step_boundaries_chars(text: str, mode: str) -> list[int]:
    """Character offsets where a new step starts (excluding 0)."""
    if mode == "thought-anchors":
        return [start for start, _, _ in thought_anchors_spans(text)[1:]]
    if mode == "lines":
        pattern = r"\n+"
    elif mode == "paragraphs":
        pattern = r"\n\s*\n+"
    else:  # sentences: line breaks and sentence ends followed by whitespace
        pattern = r"\n+|(?<=[.!?])[ \t]+(?=\S)"
    starts = [
        m.end()
        for m in re.finditer(pattern, text)
        if 0 < m.end() < len(text)
        and (mode != "sentences" or "\n" in m.group(0) or _sentence_ends_here(text, m.start()))
    ]
    return _merge_short(text, starts) if mode == "sentences" else starts


def thought_anchors_spans(text: str) -> list[tuple[int, int, str]]:
    """Thought Anchors' chunking (``split_solution_into_chunks`` in their ``utils.py``), with where
    each chunk lies in ``text``: ``(start, end, chunk)``.

    Their rule: a chunk ends after ``.``, ``?`` or ``!`` followed by a space or newline, or at the
    first newline of a blank line (``\\n\\n``); chunks are stripped; a chunk under 10 characters is
    glued to the next one with a space (the last one to the previous). ``chunk`` is their string
    exactly; ``[start, end)`` covers it and the whitespace before it, so the spans tile ``text``.
    """
    if "<think>" in text or "</think>" in text:
        raise InputError("thought-anchors segmentation takes the thinking text without <think> tags")
    pieces: list[list] = []  # [start, end, stripped text]
    start = 0
    for i, ch in enumerate(text):
        blank_line = text.startswith("\n\n", i) or text.startswith("\r\n\r\n", i)
        sentence_end = ch in ".?!" and i + 1 < len(text) and text[i + 1] in " \n"
        if (blank_line or sentence_end) and text[start : i + 1].strip():
            pieces.append([start, i + 1, text[start : i + 1].strip()])
            start = i + 1
    if text[start:].strip():
        pieces.append([start, len(text), text[start:].strip()])
    elif pieces:
        pieces[-1][1] = len(text)
    i = 0
    while i < len(pieces):
        if len(pieces[i][2]) >= MIN_STEP_CHARS:
            i += 1
        elif i == len(pieces) - 1:
            if i > 0:
                prev = pieces.pop(i - 1)
                pieces[i - 1] = [prev[0], pieces[i - 1][1], prev[2] + " " + pieces[i - 1][2]]
            break
        else:
            short = pieces.pop(i)
            pieces[i] = [short[0], pieces[i][1], short[2] + " " + pieces[i][2]]
    return [(a, b, chunk) for a, b, chunk in pieces]


def thought_anchors_chunks(text: str) -> list[str]:
    """The chunk strings of ``thought_anchors_spans``."""
    return [chunk for _, _, chunk in thought_anchors_spans(text)]


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
