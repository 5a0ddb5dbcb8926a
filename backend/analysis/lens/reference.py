"""Lenses in tuned-lens' own layout (AlignmentResearch/tuned-lens 0.2.0, ``TunedLens.save``): a folder
with ``config.json`` (``TunedLensConfig``) and ``params.pt`` (``torch.save`` of the translators' state
dict, keys ``{i}.weight`` / ``{i}.bias``). docs/lens.md.

``import_reference`` reads such a folder *without unpickling* (``backend.store.torch_checkpoint``; a
``params.safetensors`` beside it is preferred), checks it against the model (layers, width and
tuned-lens' own unembedding hash) and stores it by the model's fingerprint; ``export_reference``
writes the stored lens back in that layout (``params.pt`` by ``torch.save`` of plain tensors, which
tuned-lens' ``torch.load`` reads, also with ``weights_only=True``).
"""

from __future__ import annotations

import json
from pathlib import Path

REFERENCE_FIELDS = (
    "base_model_name_or_path",
    "d_model",
    "num_hidden_layers",
    "bias",
    "base_model_revision",
    "unembed_hash",
    "lens_type",
)


def import_reference(root, loaded, folder) -> Path:
    from backend.engine import tuned_lens as tl
    from backend.engine.architecture import locate
    from backend.store.lenses import LensError, read_params, save_lens
    from backend.store.torch_checkpoint import CheckpointError, read_state_dict

    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LensError(f"{folder / 'config.json'}: not a readable tuned-lens config ({type(exc).__name__})") from None
    if not isinstance(config, dict):
        raise LensError(f"{folder / 'config.json'}: a tuned-lens config is a JSON object")
    if (folder / "params.safetensors").is_file():
        arrays = read_params(folder / "params.safetensors")
    else:
        try:
            arrays = read_state_dict(folder / "params.pt")
        except CheckpointError as exc:
            raise LensError(str(exc)) from None
    arch = locate(loaded.model)
    ours = tl.unembed_hash(arch.lm_head)
    if config.get("unembed_hash") and config["unembed_hash"] != ours:
        raise LensError(
            f"{folder}: trained on another unembedding (tuned-lens hash {str(config['unembed_hash'])[:12]}…, "
            f"{loaded.name} has {ours[:12]}…): a lens of another model"
        )
    try:
        lens = tl.from_arrays(arch, arrays, config, str(folder))
    except ValueError as exc:
        raise LensError(str(exc)) from None
    stored = {**tl.reference_config(loaded, lens), **{k: config[k] for k in REFERENCE_FIELDS if k in config}}
    stored["unembed_hash"] = ours
    stored["bias"] = True  # a weight-only lens is stored with zero biases
    stored["imported_from"] = str(folder.resolve())
    return save_lens(root, loaded.fingerprint, lens.state_arrays(), stored)


def export_reference(root, loaded, folder) -> Path:
    import torch

    from backend.errors import InputError
    from backend.store import atomic
    from backend.store.lenses import load_lens

    stored = load_lens(root, loaded.fingerprint)
    if stored is None:
        raise InputError(f"no tuned lens for {loaded.name} ({loaded.fingerprint}) to export: train one first")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: torch.from_numpy(v.copy()) for k, v in sorted(stored.arrays.items(), key=lambda kv: _order(kv[0]))}
    tmp = folder / ".params.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(folder / "params.pt")
    atomic.write_json(folder / "config.json", {k: stored.config.get(k) for k in REFERENCE_FIELDS})
    return folder


def _order(name: str) -> tuple[int, str]:
    head, _, tail = name.partition(".")
    return (int(head) if head.isdigit() else -1, tail)
