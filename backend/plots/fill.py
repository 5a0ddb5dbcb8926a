"""A per-boundary HTML element sent as a template and its values (the stepper's ``fill`` mark).

Sending every boundary's finished HTML repeats the element's fixed markup K times: the step card
of a 1,500-step run was 1.86 MB of the stepper's payload (issue 23). A fill mark is

    {"parts": [p_0, p_1, ..., p_j], "slots": [slot_1, ..., slot_j]}

and the element at boundary k (0..K−1, docs/architecture.md §3) is
``p_0 + v_1(k) + p_1 + ... + v_j(k) + p_j``, where a slot is either a list ``[K]`` of strings
(``v(k) = slot[k]``) or a pooled slot ``{"pool": [str], "at": [K] [int]}`` (``v(k)`` = the pool
entries ``at[k]`` joined: the step card's token chips repeat a few hundred chips over 1,500
boundaries). The browser's join is ``ramlFillAt`` of ``static/raml_fill.js`` (``FILL_JS``: in
Explore's stepper and in every run page's script); ``html_at`` here is the same join, for tests and
for the cards the server draws itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

FILL_JS = (Path(__file__).resolve().parent / "static" / "raml_fill.js").read_text(encoding="utf-8")


def pooled(pieces: Sequence[Sequence[str]]) -> dict:
    """A pooled slot from each boundary's pieces, [K] lists of strings: every distinct piece once."""
    index: dict[str, int] = {}
    at = [[index.setdefault(piece, len(index)) for piece in row] for row in pieces]
    return {"pool": list(index), "at": at}


def fill_mark(parts: Sequence[str], slots: Sequence) -> dict:
    """The mark from the fixed ``parts`` (j + 1) and the ``slots`` (j) between them."""
    if len(parts) != len(slots) + 1:
        raise ValueError(f"a fill mark needs one more part than slots, got {len(parts)} parts, {len(slots)} slots")
    lengths = {_slot_len(slot) for slot in slots}
    if len(lengths) > 1:
        raise ValueError(f"every slot of a fill mark holds one value per boundary, got lengths {sorted(lengths)}")
    return {"parts": list(parts), "slots": list(slots)}


def join(parts: Sequence[str], values: Sequence[str]) -> str:
    """``parts[0] + values[0] + parts[1] + ... + parts[j]``: one element from its template."""
    return parts[0] + "".join(value + part for value, part in zip(values, parts[1:]))


def value_at(slot, k: int) -> str:
    if isinstance(slot, list):
        return slot[k]
    return "".join(slot["pool"][i] for i in slot["at"][k])


def html_at(mark: dict, k: int) -> str:
    """The element at boundary ``k`` (what the browser's ``ramlFillAt`` builds)."""
    return join(mark["parts"], [value_at(slot, k) for slot in mark["slots"]])


def n_boundaries(mark: dict) -> int:
    """K: the boundaries the mark holds a value for."""
    return _slot_len(mark["slots"][0]) if mark["slots"] else 0


def _slot_len(slot) -> int:
    return len(slot) if isinstance(slot, list) else len(slot["at"])
