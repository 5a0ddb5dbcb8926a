"""The trajectory as HTML: current step highlighted, earlier steps dimmed, reflection words marked.

Pure string building (no Streamlit); every piece of run text is HTML-escaped.
"""

from __future__ import annotations

import bisect
import html

import numpy as np
import pandas as pd

TEXT_CSS = """
<style>
.raml-traj { display: flex; flex-direction: column-reverse; overflow-y: auto; max-height: var(--raml-h, 340px);
  border: 1px solid #e2e8f0; border-radius: 8px; padding: 0.6rem 0.9rem; background: #fcfcfd; }
.raml-traj.from-top { display: block; }
.raml-traj-inner { white-space: pre-wrap; line-height: 1.6; font-size: var(--raml-fs, 0.95rem); color: #1f2937; }
.raml-step.past { color: #7b8794; }
.raml-step.current { background: #fff1c2; color: #111827; border-radius: 3px; box-shadow: 0 0 0 2px #f5c542;
  font-weight: 500; }
.raml-step.future { color: #c0c7d1; }
.raml-refl { background: #fde3c4; color: #9a3412; border-radius: 3px; padding: 0 2px; font-weight: 600; }
.raml-step.future .raml-refl { background: transparent; color: #e0a878; }
.raml-more { color: #94a3b8; font-style: italic; }
.raml-more.hidden { display: none; }
.raml-tok { border-radius: 2px; }
</style>
"""


def step_char_spans(steps: pd.DataFrame) -> list[tuple[int, int]]:
    """Character span of each step in the trajectory (steps cover the text in order), [S]."""
    spans, pos = [], 0
    for text in steps["text"].astype(str):
        spans.append((pos, pos + len(text)))
        pos += len(text)
    return spans


def _marked(text: str, offset: int, marks: list[tuple[int, int]]) -> str:
    """Escape ``text`` (starting at char ``offset`` of the trajectory), wrapping reflection words."""
    out, pos = [], 0
    for start, end in marks:
        a, b = max(start - offset, 0), min(end - offset, len(text))
        if b <= 0 or a >= len(text) or a < pos:
            continue
        out.append(html.escape(text[pos:a]))
        out.append(f'<mark class="raml-refl" title="reflection word">{html.escape(text[a:b])}</mark>')
        pos = b
    out.append(html.escape(text[pos:]))
    return "".join(out)


PAST_CHARS = 4000  # text before the current step kept in the box (it scrolls up to about this much)
MAX_PAST_STEPS = 80
MAX_FUTURE_STEPS = 40
BEFORE_NOTE = "(before any thinking: the model sees only the question)\n"


def text_window(
    chars: list[int],
    boundary: int,
    *,
    future_chars: int = 360,
    past_chars: int = PAST_CHARS,
    max_past: int = MAX_PAST_STEPS,
    max_future: int = MAX_FUTURE_STEPS,
) -> tuple[int, int]:
    """The steps the text box holds at ``boundary`` (0..S): ``(lo, hi)``, steps lo..hi (1..S,
    inclusive). ``chars`` [S]: characters of each step. Before the current step: earlier steps
    while fewer than ``past_chars`` characters (at most ``max_past`` steps); after it: steps while
    the ``future_chars`` budget is not spent (a step is shown whole; at most ``max_future``). So
    the box holds at most ``max_past + 1 + max_future`` spans at any length of run."""
    S = len(chars)
    if S == 0:
        return 1, 0
    b = int(min(max(boundary, 0), S))
    lo = max(b, 1)
    if b >= 1:
        acc = 0
        while lo > 1 and b - lo < max_past and acc < past_chars:
            lo -= 1
            acc += int(chars[lo - 1])
    hi, left = b, future_chars
    while hi < S and left > 0 and hi - b < max_future:
        hi += 1
        left -= int(chars[hi - 1])
    return lo, max(hi, lo - 1)


def text_windows(chars: list[int], future_chars: int = 360) -> list[list[int]]:
    """``text_window`` at every boundary 0..S, [B] of ``[lo, hi]`` (the browser's stepper reads them)."""
    return [list(text_window(chars, b, future_chars=future_chars)) for b in range(len(chars) + 1)]


def step_html(steps: pd.DataFrame, reflections: list[dict]) -> list[str]:
    """Each step's text, escaped, reflection words marked, [S] (what a ``.raml-step`` span holds).
    Each step gets only the marks that touch it (found by bisection), so this is linear in the run."""
    spans = step_char_spans(steps)
    marks = sorted((int(r["char_start"]), int(r["char_start"]) + len(str(r["word"]))) for r in reflections)
    starts = [a for a, _ in marks]
    out = []
    for text, (start, end) in zip(steps["text"].astype(str), spans):
        # marks that start before the step ends, from the last one starting at or before its start
        first = max(bisect.bisect_right(starts, start) - 1, 0)
        out.append(_marked(text, start, marks[first : bisect.bisect_left(starts, end)]))
    return out


def more_note(hidden_steps: int) -> str:
    return f"\n… {hidden_steps} more step{'s' if hidden_steps != 1 else ''}" if hidden_steps else ""


def earlier_note(earlier_steps: int) -> str:
    return f"… {earlier_steps} earlier step{'s' if earlier_steps != 1 else ''}\n" if earlier_steps else ""


def trajectory_html(
    steps: pd.DataFrame,
    reflections: list[dict],
    cursor: int,
    *,
    future_chars: int = 360,
    height_px: int = 340,
    font_rem: float = 0.95,
    every_step: bool = False,
    step_inner_html: list[str] | None = None,
) -> str:
    """HTML of the trajectory with boundary ``cursor`` (0..S): step ``cursor`` is the current one.

    ``steps``: rows with ``text`` (S rows, concatenating to the trajectory); ``reflections``:
    meta ``reflections`` entries (``word``, ``char_start``). Text after the current step is
    shown dimmed up to ``future_chars`` characters; the box scrolls: at the start (``cursor`` 0)
    and with ``every_step`` it starts at its beginning (a browser scrolls it to the current step),
    otherwise at its bottom, so the current step is in view. Only a window around the cursor is
    emitted (``text_window``: about ``PAST_CHARS`` before, ``future_chars`` after), with a note of
    the steps left out on either side, so a 1,500-step run puts a bounded number of spans on the page.

    ``every_step``: the window a browser that moves the cursor itself re-renders
    (``app/stepper.py``): whole future steps, and the notes present (hidden) when empty.
    ``step_inner_html`` [S]: ready HTML of each step's text (e.g. :func:`token_delta_html`) instead
    of the escaped text with reflection marks.
    """
    texts = steps["text"].astype(str).tolist()
    S = len(texts)
    inner = step_inner_html
    spans = step_char_spans(steps)
    marks = sorted((int(r["char_start"]), int(r["char_start"]) + len(str(r["word"]))) for r in reflections)
    lo, hi = text_window([len(t) for t in texts], cursor, future_chars=future_chars)
    if not every_step:
        hi = S  # the server-drawn text cuts the last future step mid-way instead (below)
    current = cursor - 1  # step index being read at this boundary; -1 = before any thinking
    parts: list[str] = []
    future_left = future_chars
    hidden_steps = 0
    for i in range(lo - 1, S):
        text, (start, _) = texts[i], spans[i]
        if i >= hi:
            hidden_steps += 1
            continue
        if i < current:
            cls = "past"
        elif i == current:
            cls = "current"
        else:
            cls = "future"
            if future_left <= 0:
                hidden_steps += 1
                continue
            elif not every_step and len(text) > future_left:
                text = text[:future_left] + "…"
            future_left -= len(text)
        ident = ' id="raml-current"' if cls == "current" else ""
        body = inner[i] if inner is not None else _marked(text, start, marks)
        parts.append(f'<span class="raml-step {cls}" data-step="{i + 1}"{ident}>{body}</span>')
    if lo > 1:
        parts.insert(0, f'<span class="raml-more" id="raml-earlier">{earlier_note(lo - 1)}</span>')
    elif every_step:
        parts.insert(0, '<span class="raml-more hidden" id="raml-earlier"></span>')
    before = f'<span class="raml-more" id="raml-before">{BEFORE_NOTE}</span>'
    if current < 0:
        parts.insert(0, before)
    elif every_step:
        parts.insert(0, before.replace('class="raml-more"', 'class="raml-more hidden"'))
    if hidden_steps:
        parts.append(f'<span class="raml-more" id="raml-more">{more_note(hidden_steps)}</span>')
    elif every_step:
        parts.append('<span class="raml-more hidden" id="raml-more"></span>')
    style = f"--raml-h: {int(height_px)}px; --raml-fs: {font_rem:g}rem;"
    # from its beginning at the start and wherever a browser scrolls the box itself (app/stepper.py);
    # otherwise from its bottom, where the current step is
    cls = "raml-traj from-top" if every_step or current < 0 else "raml-traj"
    return f'{TEXT_CSS}<div class="{cls}" style="{style}"><div class="raml-traj-inner">{"".join(parts)}</div></div>'


def token_deltas(tokens: pd.DataFrame) -> np.ndarray:
    """Loss change each trajectory token caused, [n]: L̂(c) − L̂(c − 1) for the token read at cut c."""
    loss = tokens.sort_values("cut")["loss"].to_numpy(dtype=np.float64)
    return np.diff(loss)


DELTA_RGB = {"fell": "37, 99, 235", "rose": "220, 38, 38"}  # blue: L̂ fell (answer more likely); red: it rose
DELTA_ALPHA = 0.55  # the strongest tint


def every_cut(tokens: pd.DataFrame) -> bool:
    """Whether ``tokens`` holds L̂ at every cut point of a stretch (what per-token colours need)."""
    cuts = tokens.sort_values("cut")["cut"].to_numpy()
    return len(cuts) >= 2 and bool(np.array_equal(cuts, np.arange(cuts[0], cuts[0] + len(cuts))))


def token_delta_scale(tokens: pd.DataFrame) -> float:
    """|ΔL̂| (nats) at which a token's tint saturates: the 95th percentile over the run (1 if none)."""
    delta = token_deltas(tokens)
    finite = np.abs(delta[np.isfinite(delta)])
    top = float(np.percentile(finite, 95)) if finite.size else 1.0
    return top if top > 0 else 1.0


def token_delta_legend_html(tokens: pd.DataFrame) -> str:
    """The key of :func:`token_delta_html`'s colours: what blue and red mean and where they saturate."""
    if not every_cut(tokens):
        return (
            '<div class="raml-delta-key" id="raml-delta-key" style="font-size: 0.8rem; color: #475569">'
            "token colours need L̂ at every cut point; this run was scored at fewer</div>"
        )
    top = token_delta_scale(tokens)

    def swatch(kind: str) -> str:
        return f'<span class="raml-swatch" style="background: rgba({DELTA_RGB[kind]}, {DELTA_ALPHA})"></span>'

    return (
        '<div class="raml-delta-key" id="raml-delta-key">'
        "<style>.raml-delta-key { font-size: 0.8rem; color: #475569; margin: 0 0 0.25rem 0; }"
        ".raml-swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px;"
        " vertical-align: -0.12em; margin: 0 0.25em 0 0.1em; }</style>"
        f'<span title="each token tinted by the change of L̂ it caused; blue: the answer got more likely">'
        f"token colour = its ΔL̂: {swatch('fell')}L̂ fell · {swatch('rose')}L̂ rose · full at ±{top:.2g} nats</span></div>"
    )


def token_delta_html(tokens: pd.DataFrame, steps: pd.DataFrame) -> list[str]:
    """Each step's text as token spans coloured by the loss change the token caused, [S].

    Blue = the answer got more likely (L̂ fell), red = less likely; the colour saturates at the
    95th percentile of |ΔL̂| over the run. ``tokens`` needs every cut point (``cut``, ``loss``,
    ``token``); with a sparser cut grid the steps are returned uncoloured.
    """
    ordered = tokens.sort_values("cut")
    cuts = ordered["cut"].to_numpy()
    texts = ordered["token"].astype(str).tolist()
    if not every_cut(ordered):
        return [html.escape(t) for t in steps["text"].astype(str)]
    delta = token_deltas(ordered)
    top = token_delta_scale(ordered)
    out = []
    for start, end in zip(steps["start"].astype(int), steps["end"].astype(int)):
        spans = []
        for c in range(start + 1, end + 1):  # the token read at cut c moved L̂ from c − 1 to c
            j = c - int(cuts[0])
            if j <= 0 or j >= len(texts):
                continue
            d = float(delta[j - 1])
            a = 0.0 if not np.isfinite(d) else min(abs(d) / top, 1.0) * DELTA_ALPHA
            rgb = DELTA_RGB["fell" if d < 0 else "rose"]
            spans.append(
                f'<span class="raml-tok" style="background: rgba({rgb}, {a:.2f})" '
                f'title="ΔL̂ {d:+.3f} nats">{html.escape(texts[j])}</span>'
            )
        out.append("".join(spans))
    return out
