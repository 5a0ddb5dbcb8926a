"""The step card: ΔL̂ over the step, step size and cosine in the path space, top answer tokens now.

Pure HTML from a run (``backend.store.runs.RunData``) and its step geometry; shared by Explore's
card (``app/panels/step_card.py``) and every exported run page (``backend/plots/run_page.py``).
"""

from __future__ import annotations

import html

import pandas as pd

from backend.plots import figures

WHITESPACE = {" ": "␣", "\n": "⏎", "\t": "→", "\r": "␍"}

CARD_CSS = """
.raml-card { border: 1px solid #e2e8f0; border-radius: 8px; padding: 0.35rem 0.7rem; font-size: 0.9rem; }
.raml-card-head { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.raml-grid { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 0.3rem; margin: 0.15rem 0; }
.raml-k { color: #64748b; font-size: 0.75rem; white-space: nowrap; }
.raml-v { font-size: 1.05rem; font-weight: 600; color: #1f2937; }
.raml-tokens { color: #475569; font-size: 0.82rem; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.raml-chip { display: inline-block; background: #eef2ff; border-radius: 6px; padding: 0 0.4em; margin-right: 0.3em; }
.raml-chip code { background: transparent; color: #2a3f7a; font-size: 0.92em; padding: 0; }
"""


def esc(value) -> str:
    return html.escape(str(value))


def visible_token(token: str) -> str:
    """A token with its whitespace drawn (``'\\n'`` → ``⏎``, ``'\\n '`` → ``⏎␣``), so chips never look alike."""
    return "".join(WHITESPACE.get(ch, ch) for ch in str(token)) or "∅"


def card_html(run, cursor: int, geometry: pd.DataFrame | None) -> str:
    """The card at boundary ``cursor`` (0..S); ``geometry``: ``step_geometry`` rows [B] (or None)."""
    steps = run.steps
    loss_now = figures.boundary_losses(run.tokens, steps)[cursor]
    if cursor == 0:
        head, delta = "<b>Before any thinking</b>: the model sees only the question.", None
    else:
        row = steps.iloc[cursor - 1]
        words = str(row.get("reflection_words", "") or "")
        head = f"<b>Step {cursor}</b>" + (
            f' · reflection: <mark class="raml-refl">{esc(words)}</mark>' if words else ""
        )
        delta = float(row["delta_loss"])
    size = cos = None
    if geometry is not None and cursor < len(geometry):
        g = geometry.iloc[cursor]
        size = None if pd.isna(g["step_size"]) else float(g["step_size"])
        cos = None if pd.isna(g["cosine_prev"]) else float(g["cosine_prev"])
    cells = [
        ("L̂ now", f"{loss_now:.3f}", "answer loss at this boundary (nats)"),
        ("ΔL̂ over step", "—" if delta is None else f"{delta:+.3f}", "nats; negative = closer to the answer"),
        ("step size ‖g‖", "—" if size is None else f"{size:.3g}", "distance moved in the path space"),
        (
            "cos to prev.",
            "—" if cos is None else f"{cos:+.2f}",
            "cosine to the previous step: +1 momentum, −1 oscillation",
        ),
    ]
    grid = "".join(
        f'<div title="{esc(tip)}"><div class="raml-k">{esc(k)}</div><div class="raml-v">{v}</div></div>'
        for k, v, tip in cells
    )
    lens = run.lens
    last = lens[(lens["boundary"] == cursor) & (lens["layer"] == lens["layer"].max())]
    chips = ""
    if not last.empty:
        toks, probs = last.iloc[0]["top_tokens"], last.iloc[0]["top_probs"]
        chips = "".join(
            f'<span class="raml-chip" title="{esc(repr(str(t)))}"><code>{esc(visible_token(t))}</code> {float(p):.2f}</span>'
            for t, p in zip(toks, probs)
        )
        chips = (
            f'<div class="raml-tokens" title="top next tokens where the answer starts (last layer)">next: {chips}</div>'
        )
    return f'<div class="raml-card" id="raml-step-card"><div class="raml-card-head">{head}</div><div class="raml-grid">{grid}</div>{chips}</div>'
