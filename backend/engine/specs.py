"""The small text options of a run, parsed in one place with one-line errors that name the
option: cut points (``--cuts all|stride:K|steps``) and segmentation
(``--segmentation sentences|lines|paragraphs|thought-anchors|tokens:K``). See docs/architecture.md §3 (C, K).
"""

from __future__ import annotations

from backend.errors import InputError

SEGMENTATIONS = ("sentences", "lines", "paragraphs", "tokens", "thought-anchors")
CUT_KINDS = ("all", "stride", "steps")


def parse_cuts(spec: str, n: int, boundaries: list[int] | None = None) -> list[int] | None:
    """Cut points for ``spec`` over a trajectory of ``n`` tokens (None = every token, C = n + 1).

    ``stride:K`` is every K-th token plus the end; ``steps`` the step boundaries (given)."""
    kind, sep, k = str(spec).partition(":")
    if kind == "all" and not sep:
        return None
    if kind == "steps" and not sep:
        return list(boundaries or [0, n])
    if kind == "stride":
        if not k.isdigit() or int(k) < 1:
            raise InputError(
                f"cut-point option {spec!r} (--cuts): stride needs a positive whole number of tokens, e.g. stride:8"
            )
        return sorted(set(range(0, n + 1, int(k))) | {n})
    raise InputError(f"unknown cut-point option {spec!r} (--cuts): use all, stride:K or steps")


def parse_segmentation(spec: str) -> tuple[str, int]:
    """``"sentences"``, ``"lines"``, ``"paragraphs"``, ``"thought-anchors"`` or ``"tokens:K"`` -> (mode, K; 0 unless tokens)."""
    mode, sep, k = str(spec).partition(":")
    if mode not in SEGMENTATIONS or (sep and mode != "tokens"):
        raise InputError(
            f"unknown segmentation {spec!r} (--segmentation): use one of sentences, lines, paragraphs, thought-anchors, tokens:K"
        )
    if mode == "tokens":
        if not k.isdigit() or int(k) < 1:
            raise InputError(f"segmentation {spec!r} (--segmentation): tokens needs a positive window, e.g. tokens:32")
        return mode, int(k)
    return mode, 0
