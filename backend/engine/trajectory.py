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


# Think markers of the families that have them (open, close): Qwen3 / DeepSeek-R1 / QwQ, ``<thinking>``
# tags, Bespoke-Stratos / OpenThinker, Kimi, Seed-OSS. The first pair the tokenizer knows (its chat template
# or its added tokens) is the model's own; ``<think>`` / ``</think>`` otherwise.
THINK_MARKERS = (
    (_THINK_OPEN, _THINK_CLOSE),
    ("<thinking>", "</thinking>"),
    ("<|begin_of_thought|>", "<|end_of_thought|>"),
    ("\u25c1think\u25b7", "\u25c1/think\u25b7"),
    ("<seed:think>", "</seed:think>"),
)
THINKING_SWITCH = "enable_thinking"  # the chat-template variable of Qwen3 (and templates copying it)
NO_THINKING_TEMPLATE, NO_THINKING_PREFILL = "template-switch", "prefill"  # how the thinking part was emptied


@dataclass(frozen=True)
class NoThinkingPrompt:
    """The prompt of the no-thinking condition (RaML's "nothinking" mode): the chat prompt with
    an empty thinking part, so that the model answers at once. ``method``: ``template-switch``
    (the template's own ``enable_thinking=False``) or ``prefill`` (``open + "\\n\\n" + close``
    appended to the generation prompt); ``markers``: the (open, close) pair used or found."""

    prompt: str
    method: str
    markers: tuple[str, str]

    def as_meta(self) -> dict:
        return {"method": self.method, "markers": list(self.markers)}


def _template_text(tokenizer) -> str:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates
        return "\n".join(str(v) for v in template.values())
    return template if isinstance(template, str) else ""


def think_markers(tokenizer) -> tuple[str, str]:
    """The model's own (open, close) think markers: the first known pair whose closing marker its
    chat template or its added tokens hold; ``<think>`` / ``</think>`` when none does."""
    text = _template_text(tokenizer)
    try:
        added = set(tokenizer.get_added_vocab())
    except (AttributeError, TypeError, NotImplementedError):
        added = set()
    for pair in THINK_MARKERS:
        if pair[1] in text or pair[1] in added:
            return pair
    return _THINK_OPEN, _THINK_CLOSE


def has_thinking_switch(tokenizer) -> bool:
    """Whether the chat template has its own thinking switch (``enable_thinking``, as Qwen3's)."""
    return THINKING_SWITCH in _template_text(tokenizer)


def _ends_with_empty_thinking(prompt: str, markers: tuple[str, str]) -> bool:
    open_, close = (re.escape(m) for m in markers)
    return re.search(open_ + r"\s*" + close + r"\s*\Z", prompt) is not None


def build_no_thinking_prompt(tokenizer, question: str) -> NoThinkingPrompt:
    """The chat prompt with an empty thinking part: the template's own switch where it has one
    (``enable_thinking=False``; used only if the rendered prompt really ends with an empty think
    block), else the generation prompt followed by ``open + "\\n\\n" + close + "\\n\\n"`` with the
    model's own markers (a prompt that already opens the thinking part gets only the rest)."""
    base = build_prompt(tokenizer, question, think=False)
    markers = think_markers(tokenizer)
    if has_thinking_switch(tokenizer):
        messages = [{"role": "user", "content": question.strip()}]
        switched = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **{THINKING_SWITCH: False}
        )
        if switched != base and _ends_with_empty_thinking(switched, markers):
            return NoThinkingPrompt(switched, NO_THINKING_TEMPLATE, markers)
    open_, close = markers
    stripped = base.rstrip()
    if stripped.endswith(open_):  # templates that open the thinking part themselves (DeepSeek-R1 distills)
        return NoThinkingPrompt(stripped + "\n\n" + close + "\n\n", NO_THINKING_PREFILL, markers)
    return NoThinkingPrompt(base + open_ + "\n\n" + close + "\n\n", NO_THINKING_PREFILL, markers)


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


FINISH_EOS, FINISH_ANSWER, FINISH_CAP, FINISH_CONTEXT = "eos", "answer", "cap", "context"
ENDED = (FINISH_EOS, FINISH_ANSWER)  # the model ended its reasoning and answer by itself


@dataclass(frozen=True)
class Generation:
    """What ``generate_until_done`` produced and why it stopped (``finish``): ``eos`` (the model's
    end token), ``answer`` (a closed final ``\\boxed{…}``), ``cap`` (the stated token cap) or
    ``context`` (the model's context is full)."""

    text: str
    finish: str
    n_tokens: int
    max_new_tokens: int

    @property
    def ended(self) -> bool:
        return self.finish in ENDED


def boxed_closed(text: str) -> bool:
    """Whether the last ``\\boxed{`` of ``text`` has its closing brace (nested braces counted)."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return False
    depth = 0
    for ch in text[start + len("\\boxed") :]:
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0:
            return True
    return False


class _AnswerGiven:
    """A stopping criterion: stop once the new text holds a closed ``\\boxed{…}`` (the final answer).
    Tokens are decoded one at a time (O(n)); braces and backslashes are plain ASCII in every vocabulary."""

    def __init__(self, tokenizer, start: int):
        self.tokenizer, self.start, self.text, self.seen, self.hit = tokenizer, start, "", start, False

    def __call__(self, input_ids, scores, **kwargs):
        row = input_ids[0].tolist()
        if len(row) > self.seen:
            self.text += self.tokenizer.decode(row[self.seen :], skip_special_tokens=True)
            self.seen = len(row)
            self.hit = "}" in self.text[-16:] and boxed_closed(self.text)
        import torch

        return torch.full((input_ids.shape[0],), self.hit, dtype=torch.bool, device=input_ids.device)


def _generate(
    loaded, prompt: str, settings: GenerationSettings, prefix: str, *, until_answer: bool, reserve: int
) -> Generation:
    import torch  # here, not at import: reading settings and templates stays torch-free (fast CLI start-up)

    tok, model = loaded.tokenizer, loaded.model
    prefix_ids = encode_with_offsets(tok, prefix)[0] if prefix else []
    ids = torch.tensor([encode(tok, prompt) + prefix_ids], device=loaded.device)
    budget = settings.max_new_tokens
    context = getattr(loaded, "max_context", None)
    room = None if not context else int(context) - ids.shape[1] - max(int(reserve), 0)
    if room is not None and room < 1:
        raise InputError(
            f"no room left in the model's {context}-token context to continue (prefix {ids.shape[1]} tokens)"
        )
    limit = budget if room is None else min(budget, room)
    kwargs = dict(max_new_tokens=limit, pad_token_id=tok.pad_token_id)
    stop = None
    if until_answer:
        from transformers import StoppingCriteriaList

        stop = _AnswerGiven(tok, ids.shape[1])
        kwargs["stopping_criteria"] = StoppingCriteriaList([stop])
    if settings.greedy:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        torch.manual_seed(settings.seed)
        kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=None)
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
    new = out[0, ids.shape[1] :].tolist()
    specials = {tok.eos_token_id, tok.pad_token_id} - {None}
    eos_at = next((i for i, t in enumerate(new) if t in specials), None)
    text = tok.decode(new if eos_at is None else new[:eos_at], skip_special_tokens=False)
    for special in {tok.eos_token, tok.pad_token} - {None}:
        text = text.split(special)[0]
    if eos_at is not None:
        finish = FINISH_EOS
    elif stop is not None and stop.hit:
        finish = FINISH_ANSWER
    elif len(new) >= limit and limit < budget:
        finish = FINISH_CONTEXT
    else:
        finish = FINISH_CAP
    return Generation(text, finish, len(new) if eos_at is None else eos_at, budget)


def generate(loaded, prompt: str, settings: GenerationSettings, prefix: str = "") -> str:
    """Sample (or greedily decode) what follows ``prompt + prefix``; returns the decoded new text.

    ``prompt``: the chat-formatted prompt (``build_prompt``; a run's stored ``prompt``); ``prefix``:
    the start of the response to continue (a branch's trajectory before step k), tokenized as the
    run pipeline tokenizes a trajectory. Sampling uses exactly ``settings.temperature`` and
    ``settings.top_p`` (no hidden top-k), seeded with ``settings.seed``. The text stops before the
    first EOS / pad token.
    """
    return _generate(loaded, prompt, settings, prefix, until_answer=False, reserve=0).text


def generate_until_done(
    loaded, prompt: str, settings: GenerationSettings, prefix: str = "", *, reserve: int = 0
) -> Generation:
    """Continue ``prompt + prefix`` until the model ends its reasoning and answer: its end token
    or a closed final ``\\boxed{…}``, bounded by ``settings.max_new_tokens`` (the stated cap) and
    the model's context (less ``reserve`` tokens kept for the probe of the analysis). ``</think>``
    ends only the reasoning: the answer after it is still generated (branches compare answers).
    Same sampling as ``generate``; the result says why it stopped."""
    return _generate(loaded, prompt, settings, prefix, until_answer=True, reserve=reserve)


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
