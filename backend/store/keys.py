"""Run keys as people type them (issue 26): a full key or any unique prefix of one, like git's
abbreviated commits. The UI shows 12 characters ("Open run a7b71cee23ed"); every command and
the app's URL handling resolve what they are given here, so one rule holds everywhere:

- at least ``MIN_PREFIX`` lowercase hex characters (0-9, a-f), as keys are written;
- a prefix of exactly one run resolves to that run's full key;
- a prefix of several runs is refused in one line naming how many match and a few of them;
- a prefix of none is ``RunNotFoundError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from backend.errors import InputError, RunNotFoundError
from backend.store.schema import KEY_PATTERN

MIN_PREFIX = 4  # git's shortest abbreviation
SHOWN_MATCHES = 3  # keys named in an "ambiguous" message
_PREFIX = re.compile(r"^[0-9a-f]+\Z")


class AmbiguousKeyError(InputError):
    """A key prefix matches more than one run."""


def normalize_prefix(text: object) -> str:
    """``text`` as a key prefix (stripped), or a one-line ``InputError`` saying why not."""
    if not isinstance(text, str):
        raise InputError(f"{text!r} is not a run key")
    prefix = text.strip()
    shown = prefix if len(prefix) <= 80 else f"{prefix[:80]}..."
    if not _PREFIX.match(prefix) or len(prefix) > 64:
        raise RunNotFoundError(
            f"'{shown}' is not a run key (lowercase hex 0-9 a-f: a full key or its first {MIN_PREFIX} or more characters)"
        )
    if len(prefix) < MIN_PREFIX:
        raise InputError(f"'{shown}' is too short for a run key: give at least {MIN_PREFIX} of its characters")
    return prefix


def match_key(text: object, keys: Iterable[str], where: str = "the cache") -> str:
    """The one key of ``keys`` that ``text`` is (or begins); one-line errors otherwise."""
    prefix = normalize_prefix(text)
    matches = sorted({k for k in keys if k.startswith(prefix) and KEY_PATTERN.match(k)})
    if prefix in matches:
        return prefix
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunNotFoundError(f"no run {prefix} in {where}")
    width = max(12, _distinct_width(matches))  # as long as it takes to tell them apart, like git
    named = ", ".join(k[:width] for k in matches[:SHOWN_MATCHES])
    more = ", ..." if len(matches) > SHOWN_MATCHES else ""
    raise AmbiguousKeyError(f"'{prefix}' matches {len(matches)} runs ({named}{more}): give more of the key")


def _distinct_width(sorted_keys: list[str]) -> int:
    """Characters that tell every key of a sorted list apart (longest shared neighbour prefix + 1)."""
    width = 1
    for a, b in zip(sorted_keys, sorted_keys[1:]):
        shared = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        width = max(width, shared + 1)
    return width
