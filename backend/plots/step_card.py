"""The step card: ΔL̂ over the step, step size and cosine in the path space, top answer tokens now.

Pure HTML from a run (``backend.store.runs.RunData``) and its step geometry; shared by Explore's
card (``app/panels/step_card.py``) and every exported run page (``backend/plots/run_page.py``).
"""

from __future__ import annotations

import html

import pandas as pd

from backend.plots import figures, fill

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


def card_facts(run) -> dict:
    """What every card reads, built once per run: L̂ at each boundary [B], the last layer's top
    tokens and probabilities at each boundary (``{b: (tokens, probs)}``), each step's reflection
    words and ΔL̂ [S]. Building all B cards from these is linear in the run (issue 23: 1,501 cards
    of a 1,500-step run took 24 s of CPU when each card searched the tables)."""
    lens = run.lens
    last = lens[lens["layer"] == lens["layer"].max()]
    tops = dict(zip(last["boundary"].astype(int), zip(last["top_tokens"], last["top_probs"])))
    steps = run.steps
    words = steps["reflection_words"] if "reflection_words" in steps else pd.Series([""] * len(steps))
    return {
        "losses": figures.boundary_losses(run.tokens, steps),
        "tops": tops,
        "words": [str(w or "") for w in words.fillna("")],
        "delta": steps["delta_loss"].to_numpy(dtype=float).tolist(),
    }


def geometry_columns(geometry: pd.DataFrame | None) -> tuple[list, list]:
    """Step size and cosine to the previous step per boundary, [B] each (None where undefined)."""
    if geometry is None:
        return [], []
    size = [None if pd.isna(v) else float(v) for v in geometry["step_size"]]
    cos = [None if pd.isna(v) else float(v) for v in geometry["cosine_prev"]]
    return size, cos


CELLS = (  # the card's four numbers: key, tooltip
    ("L̂ now", "answer loss at this boundary (nats)"),
    ("ΔL̂ over step", "nats; negative = closer to the answer"),
    ("step size ‖g‖", "distance moved in the path space"),
    ("cos to prev.", "cosine to the previous step: +1 momentum, −1 oscillation"),
)
CHIPS_TIP = "top next tokens where the answer starts (last layer)"


def _cell_open(key: str, tip: str) -> str:
    return f'<div title="{esc(tip)}"><div class="raml-k">{esc(key)}</div><div class="raml-v">'


# The card's fixed markup around its six values (head, the four numbers, the token chips): the
# template of the stepper's fill mark (backend/plots/fill.py) and of every card built here.
CARD_PARTS = [
    '<div class="raml-card" id="raml-step-card"><div class="raml-card-head">',  # … head
    '</div><div class="raml-grid">' + _cell_open(*CELLS[0]),  # … L̂ now
    *("</div></div>" + _cell_open(*cell) for cell in CELLS[1:]),  # … ΔL̂, step size, cosine
    "</div></div></div>",  # the grid closed … the token chips
    "</div>",
]


def all_cards(run, geometry: pd.DataFrame | None) -> list[str]:
    """The card of every boundary 0..S, [B], from tables read once (``card_facts``)."""
    facts = _with_geometry(card_facts(run), geometry)
    return [_join(card_values(facts, b)) for b in range(len(run.steps) + 1)]


def card_fill(run, geometry: pd.DataFrame | None) -> dict:
    """Every boundary's card as one fill mark (``backend.plots.fill``): the fixed markup once, the
    six values per boundary, the token chips pooled (a 1,500-step run: 1.86 MB of cards → a tenth)."""
    facts = _with_geometry(card_facts(run), geometry)
    values = [card_values(facts, b) for b in range(len(run.steps) + 1)]
    *texts, chips = zip(*values)  # per slot, [B]: the five text values, then the chips' pieces
    return fill.fill_mark(CARD_PARTS, [*(list(t) for t in texts), fill.pooled(chips)])


def card_html(run, cursor: int, geometry: pd.DataFrame | None, facts: dict | None = None) -> str:
    """The card at boundary ``cursor`` (0..S); ``geometry``: ``step_geometry`` rows [B] (or None);
    ``facts``: ``card_facts`` (with ``size``/``cos``) when building many cards."""
    facts = _with_geometry(facts if facts is not None else card_facts(run), geometry)
    return _join(card_values(facts, cursor))


def _with_geometry(facts: dict, geometry: pd.DataFrame | None) -> dict:
    if "size" in facts:
        return facts
    facts = dict(facts)
    facts["size"], facts["cos"] = geometry_columns(geometry)
    return facts


def _join(values: tuple) -> str:
    *texts, chips = values
    return fill.join(CARD_PARTS, [*texts, "".join(chips)])


def card_values(facts: dict, cursor: int) -> tuple[str, str, str, str, str, list[str]]:
    """The card's values at boundary ``cursor``: head, L̂, ΔL̂, step size, cosine (HTML), and the
    token chips as pieces (the opening, per chip its token then its probability, the closing)."""
    loss_now = facts["losses"][cursor]
    if cursor == 0:
        head, delta = "<b>Before any thinking</b>: the model sees only the question.", None
    else:
        words = facts["words"][cursor - 1]
        head = f"<b>Step {cursor}</b>" + (
            f' · reflection: <mark class="raml-refl">{esc(words)}</mark>' if words else ""
        )
        delta = float(facts["delta"][cursor - 1])
    size = facts["size"][cursor] if cursor < len(facts["size"]) else None
    cos = facts["cos"][cursor] if cursor < len(facts["cos"]) else None
    chips: list[str] = []
    if cursor in facts["tops"]:
        toks, probs = facts["tops"][cursor]
        chips.append(f'<div class="raml-tokens" title="{esc(CHIPS_TIP)}">next: ')
        for t, p in zip(toks, probs):
            chips.append(f'<span class="raml-chip" title="{esc(repr(str(t)))}"><code>{esc(visible_token(t))}</code> ')
            chips.append(f"{float(p):.2f}</span>")
        chips.append("</div>")
    return (
        head,
        f"{loss_now:.3f}",
        "—" if delta is None else f"{delta:+.3f}",
        "—" if size is None else f"{size:.3g}",
        "—" if cos is None else f"{cos:+.2f}",
        chips,
    )
