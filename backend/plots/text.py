"""The trajectory as HTML: current step highlighted, earlier steps dimmed, reflection words marked.

Pure string building (no Streamlit); every piece of run text is HTML-escaped.
"""

from __future__ import annotations

import html

import pandas as pd

TEXT_CSS = """
<style>
.raml-traj { display: flex; flex-direction: column-reverse; overflow-y: auto; max-height: var(--raml-h, 340px);
  border: 1px solid #e2e8f0; border-radius: 8px; padding: 0.6rem 0.9rem; background: #fcfcfd; }
.raml-traj-inner { white-space: pre-wrap; line-height: 1.6; font-size: var(--raml-fs, 0.95rem); color: #1f2937; }
.raml-step.past { color: #7b8794; }
.raml-step.current { background: #fff1c2; color: #111827; border-radius: 3px; box-shadow: 0 0 0 2px #f5c542;
  font-weight: 500; }
.raml-step.future { color: #c0c7d1; }
.raml-refl { background: #fde3c4; color: #9a3412; border-radius: 3px; padding: 0 2px; font-weight: 600; }
.raml-step.future .raml-refl { background: transparent; color: #e0a878; }
.raml-more { color: #94a3b8; font-style: italic; }
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


def trajectory_html(
    steps: pd.DataFrame,
    reflections: list[dict],
    cursor: int,
    *,
    future_chars: int = 360,
    height_px: int = 340,
    font_rem: float = 0.95,
) -> str:
    """HTML of the trajectory with boundary ``cursor`` (0..S): step ``cursor`` is the current one.

    ``steps``: rows with ``text`` (S rows, concatenating to the trajectory); ``reflections``:
    meta ``reflections`` entries (``word``, ``char_start``). Text after the current step is
    shown dimmed up to ``future_chars`` characters; the box scrolls and starts at its bottom,
    so the current step is always in view.
    """
    spans = step_char_spans(steps)
    marks = sorted((int(r["char_start"]), int(r["char_start"]) + len(str(r["word"]))) for r in reflections)
    current = cursor - 1  # step index being read at this boundary; -1 = before any thinking
    parts: list[str] = []
    future_left = future_chars
    hidden_steps = 0
    for i, (text, (start, _)) in enumerate(zip(steps["text"].astype(str), spans)):
        if i < current:
            cls = "past"
        elif i == current:
            cls = "current"
        else:
            if future_left <= 0:
                hidden_steps += 1
                continue
            cls = "future"
            if len(text) > future_left:
                text = text[:future_left] + "…"
            future_left -= len(text)
        ident = ' id="raml-current"' if cls == "current" else ""
        parts.append(f'<span class="raml-step {cls}" data-step="{i + 1}"{ident}>{_marked(text, start, marks)}</span>')
    if current < 0:
        parts.insert(0, '<span class="raml-more">(before any thinking: the model sees only the question)\n</span>')
    if hidden_steps:
        parts.append(f'<span class="raml-more">\n… {hidden_steps} more step{"s" if hidden_steps > 1 else ""}</span>')
    style = f"--raml-h: {int(height_px)}px; --raml-fs: {font_rem:g}rem;"
    return f'{TEXT_CSS}<div class="raml-traj" style="{style}"><div class="raml-traj-inner">{"".join(parts)}</div></div>'
