"""How the dataset tables group runs and spell reflection words (one rule for every table)."""

from __future__ import annotations

import re

import numpy as np


def canonical_word(word: str) -> str:
    """Group spellings of one reflection word: "Wait" -> "wait", "Hmmm" -> "hmm"."""
    word = re.sub(r"\s+", " ", word.strip().lower())
    return re.sub(r"^hmm+$", "hmm", word).replace("re-check", "recheck")


def group_of(correct) -> str:
    """ "correct", "incorrect" or "unknown" (no reference answer, or not graded)."""
    if correct is None or (isinstance(correct, float) and np.isnan(correct)):
        return "unknown"
    return "correct" if bool(correct) else "incorrect"
