"""The one content-hash recipe (docs/architecture.md §5): run keys, request keys and every
derived-data key (projections, surfaces, landscapes, dataset statistics) hash a canonical JSON
encoding of their inputs. Run keys are pinned (``tests/unit/test_run_keys_pinned.py``): the encoding
below must never change.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

RUN_KEY_LENGTH = 32  # hex characters of a run or request key
DERIVED_KEY_LENGTH = 24  # hex characters of a derived-data file key


def canonical_json(payload) -> str:
    """Sorted keys, no whitespace, UTF-8 text kept as is: equal content -> equal string."""
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def content_hash(payload, length: int = RUN_KEY_LENGTH) -> str:
    """sha256 of ``canonical_json(payload)``, shortened to ``length`` hex characters."""
    if not 1 <= length <= 64:
        raise ValueError(f"hash length must be 1..64 hex characters, got {length}")
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:length]


def text_sha256(text: str) -> str:
    """Full sha256 hex digest of ``text`` encoded as UTF-8 (part of the pinned run key)."""
    return hashlib.sha256(text.encode()).hexdigest()


def bytes_sha256(data: bytes) -> str:
    """Full sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path) -> str:
    """Full sha256 hex digest of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
