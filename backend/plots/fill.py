"""A per-boundary HTML element sent as a template and its values (the stepper's ``fill`` mark).

Sending every boundary's finished HTML repeats the element's fixed markup B times: the step card
of a 1,500-step run was 1.86 MB of the stepper's payload (issue 23). A fill mark is

    {"parts": [p0, p1, ..., pk], "slots": [slot_1, ..., slot_k]}

and the element at boundary b is ``p0 + v1(b) + p1 + ... + vk(b) + pk``, where a slot is either a
list ``[B]`` of strings (``v(b) = slot[b]``) or a pooled slot ``{"pool": [str], "at": [B] [int]}``
(``v(b)`` = the pool entries ``at[b]`` joined: the step card's token chips repeat a few hundred
chips over 1,500 boundaries). ``app/stepper.py`` joins them in the browser; ``html_at`` here is the
same join, for tests and for the server's fallback.
"""

from __future__ import annotations

from collections.abc import Sequence


def pooled(pieces: Sequence[Sequence[str]]) -> dict:
    """A pooled slot from each boundary's pieces, [B] lists of strings: every distinct piece once."""
    index: dict[str, int] = {}
    at = [[index.setdefault(piece, len(index)) for piece in row] for row in pieces]
    return {"pool": list(index), "at": at}


def fill_mark(parts: Sequence[str], slots: Sequence) -> dict:
    """The mark from the fixed ``parts`` (k + 1) and the ``slots`` (k) between them."""
    if len(parts) != len(slots) + 1:
        raise ValueError(f"a fill mark needs one more part than slots, got {len(parts)} parts, {len(slots)} slots")
    lengths = {len(slot) if isinstance(slot, list) else len(slot["at"]) for slot in slots}
    if len(lengths) > 1:
        raise ValueError(f"every slot of a fill mark holds one value per boundary, got lengths {sorted(lengths)}")
    return {"parts": list(parts), "slots": list(slots)}


def value_at(slot, b: int) -> str:
    if isinstance(slot, list):
        return slot[b]
    return "".join(slot["pool"][i] for i in slot["at"][b])


def html_at(mark: dict, b: int) -> str:
    """The element at boundary ``b`` (what the browser's ``fillAt`` builds)."""
    parts, slots = mark["parts"], mark["slots"]
    return parts[0] + "".join(value_at(slot, b) + part for slot, part in zip(slots, parts[1:]))


def n_boundaries(mark: dict) -> int:
    slot = mark["slots"][0] if mark["slots"] else []
    return len(slot) if isinstance(slot, list) else len(slot["at"])
