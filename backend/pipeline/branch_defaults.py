"""The one set of branch defaults (issue 25 item 3): the page's form, ``raml branch`` and the
``branch`` job kind read them here. A light module (no torch), so the CLI's start-up stays quick."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BranchDefaults:
    samples: int = 2
    temperature: float = 0.7
    top_p: float = 0.95
    # the stated cap: a resample stops earlier when the model ends its answer (end token or a
    # closed final \boxed{}), and never runs past the model's context
    max_new_tokens: int = 1024


DEFAULTS = BranchDefaults()
