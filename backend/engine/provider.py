"""The one way to get a model by name (docs/architecture.md, "model provider").

A model registered in memory under its name (tests, notebooks, the app's page tests) wins;
otherwise ``load_model`` loads it from disk once per process and keeps it. Every job kind,
the run pipeline and every analysis ask here; nothing else keeps a registry of overrides.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from backend.errors import InputError

if TYPE_CHECKING:  # torch stays unimported until a model is really needed
    from backend.engine.models import LoadedModel

_registered: dict[str, LoadedModel] = {}
_lock = threading.Lock()


def register(loaded: LoadedModel, name: str | None = None) -> None:
    """Serve ``loaded`` for ``name`` (default: its own name) instead of loading from disk."""
    with _lock:
        _registered[name or loaded.name] = loaded


def unregister(name: str) -> None:
    with _lock:
        _registered.pop(name, None)


def registered(name: str) -> LoadedModel | None:
    """The in-memory model registered under ``name``, else None."""
    with _lock:
        return _registered.get(name)


def is_in_memory(name: str) -> bool:
    """Whether asking for ``name`` costs no load (registered, or already loaded in this process)."""
    if registered(name) is not None:
        return True
    from backend.engine.models import is_loaded

    return is_loaded(name)


def provide(
    name: str,
    *,
    loaded: LoadedModel | None = None,
    trust_remote_code: bool = False,
    device: str | None = None,
    dtype: str | None = None,
) -> LoadedModel:
    """``loaded`` if given, else the model registered under ``name``, else ``load_model(name)``."""
    if loaded is not None:
        return loaded
    hit = registered(name)
    if hit is not None:
        return hit
    from backend.engine.models import load_model

    return load_model(name, trust_remote_code=trust_remote_code, device=device, dtype=dtype)


def provide_for_run(
    name: str, fingerprint: str | None, run_key: str, *, loaded: LoadedModel | None = None
) -> LoadedModel:
    """The model a stored run was analysed with; refuses other weights (a one-line ``InputError``)."""
    model = provide(name, loaded=loaded)
    if fingerprint and model.fingerprint != fingerprint:
        raise InputError(
            f"run {run_key} was analysed with {name} ({fingerprint}), not with {model.name} ({model.fingerprint})"
        )
    return model
