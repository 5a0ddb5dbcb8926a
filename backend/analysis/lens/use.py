"""The lens a model's readouts use (docs/lens.md): ``"logit"`` (the model's own readout) or
``"tuned"`` (the model's stored tuned lens, refused in one line when there is none)."""

from __future__ import annotations

from backend.analysis.lens.grid import LENS_KINDS, check_kind
from backend.errors import InputError

__all__ = ["LENS_KINDS", "check_kind", "lens_for", "tuned_lens_for"]


def tuned_lens_for(root, loaded):
    """The stored tuned lens of ``loaded`` as an engine ``TunedLens``, or None when none is stored.
    A lens of another model (fingerprint, shape, unembedding) raises ``LensError`` (one line)."""
    from backend.engine import tuned_lens as tl
    from backend.engine.architecture import locate
    from backend.store.lenses import LensError, load_lens

    stored = load_lens(root, loaded.fingerprint)
    if stored is None:
        return None
    arch = locate(loaded.model)
    try:
        return tl.from_arrays(arch, stored.arrays, stored.config, str(stored.path))
    except ValueError as exc:
        raise LensError(str(exc)) from None


def lens_for(root, loaded, kind: str):
    """The engine lens of ``kind`` for ``loaded`` (``InputError`` when ``tuned`` is asked and none is stored)."""
    check_kind(kind)
    if kind == "logit":
        return None  # the engine's default readout
    lens = tuned_lens_for(root, loaded)
    if lens is None:
        raise InputError(
            f"no tuned lens for {loaded.name} ({loaded.fingerprint}) yet: run `raml lens train --model {loaded.name}`"
        )
    return lens
