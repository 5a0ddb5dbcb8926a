"""Tuned lenses in the cache, by model fingerprint (docs/lens.md): ``<root>/lenses/<fingerprint>/tuned/``
holds ``params.safetensors`` (the translators, float32, tuned-lens' ``layer_translators`` keys
``{i}.weight`` / ``{i}.bias``) and ``config.json`` (tuned-lens' ``TunedLensConfig`` fields, which its
loader reads, plus ``model_fingerprint``, ``params_sha256`` and how the lens was trained).

Loading never unpickles: safetensors and JSON only. The config is written last, so a folder without
one holds no lens; its checksum ties it to the params beside it. A lens whose config names another
model fingerprint, or whose file does not match its checksum, is refused with one line
(``LensError``). Arrays here are numpy: this module knows files, not models.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backend import readonly
from backend.errors import CacheError
from backend.store import atomic, schema
from backend.store.hashing import bytes_sha256

FORMAT = "raml-tuned-lens/1"
_FINGERPRINT = re.compile(r"^[0-9A-Za-z._-]{1,128}\Z")


class LensError(CacheError):
    """A stored or imported lens that cannot serve the model asked for (one line)."""


@dataclass(frozen=True)
class StoredLens:
    arrays: dict[str, np.ndarray]  # "{i}.weight" [d, d], "{i}.bias" [d], float32
    config: dict[str, Any]
    path: Path


def lens_dir(root: str | Path, fingerprint: str) -> Path:
    if not isinstance(fingerprint, str) or not _FINGERPRINT.match(fingerprint):
        raise LensError(f"model fingerprint {fingerprint!r} is not a fingerprint")
    return Path(root) / schema.LENSES_DIR / fingerprint / schema.TUNED_LENS_DIR


def _encode(arrays: dict[str, np.ndarray]) -> bytes:
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()})


def save_lens(root: str | Path, fingerprint: str, arrays: dict[str, np.ndarray], config: dict[str, Any]) -> Path:
    """Write a lens for ``fingerprint`` (params, then config: atomic each); returns its folder.
    Refused on a read-only server (``backend.readonly``)."""
    readonly.check("writing tuned lenses")
    folder = lens_dir(root, fingerprint)
    folder.mkdir(parents=True, exist_ok=True)
    blob = _encode(arrays)
    atomic.write_bytes(folder / schema.LENS_PARAMS_FILE, blob)
    full = {
        **config,
        "format": FORMAT,
        "model_fingerprint": fingerprint,
        "params_sha256": bytes_sha256(blob),
    }
    atomic.write_json(folder / schema.LENS_CONFIG_FILE, full, indent=1)
    return folder


def has_lens(root: str | Path, fingerprint: str) -> bool:
    try:
        return (lens_dir(root, fingerprint) / schema.LENS_CONFIG_FILE).is_file()
    except LensError:
        return False


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / schema.LENS_CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LensError(f"{path}: not a readable lens config ({type(exc).__name__})") from None
    if not isinstance(config, dict):
        raise LensError(f"{path}: a lens config is a JSON object")
    return config


def read_params(path: Path, expected_sha256: str | None = None) -> dict[str, np.ndarray]:
    """Translator arrays from a safetensors file (never a pickle); checksum checked when given."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise LensError(f"{path}: cannot read ({atomic.os_reason(exc)})") from None
    if expected_sha256 and bytes_sha256(blob) != expected_sha256:
        raise LensError(
            f"{path}: does not match the checksum in its config (damaged or replaced); train the lens again"
        )
    try:
        return dict(load(blob))
    except (SafetensorError, ValueError) as exc:
        raise LensError(f"{path}: not a safetensors file ({str(exc).splitlines()[0][:120]})") from None


def load_lens(root: str | Path, fingerprint: str) -> StoredLens | None:
    """The lens stored for ``fingerprint``, None when there is none; ``LensError`` when it is
    damaged or belongs to another model."""
    folder = lens_dir(root, fingerprint)
    if not (folder / schema.LENS_CONFIG_FILE).is_file():
        return None
    config = read_config(folder)
    owner = config.get("model_fingerprint")
    if owner != fingerprint:
        raise LensError(
            f"{folder}: this lens was trained for model {owner or 'unknown'}, not {fingerprint}; train one for this model"
        )
    arrays = read_params(folder / schema.LENS_PARAMS_FILE, config.get("params_sha256"))
    return StoredLens(arrays, config, folder)


def remove_lens(root: str | Path, fingerprint: str) -> bool:
    """Remove the tuned lens of ``fingerprint``; False if there was none. Refused on a read-only server."""
    readonly.check("removing tuned lenses")
    folder = lens_dir(root, fingerprint)
    found = False
    for name in (schema.LENS_CONFIG_FILE, schema.LENS_PARAMS_FILE):  # config first: no half lens is ever visible
        try:
            (folder / name).unlink()
            found = True
        except FileNotFoundError:
            pass
    return found
