"""Where things live inside a Hugging Face causal LM: decoder layers, final norm, LM head,
and the MLP input projections used by the parameter-proxy space.

One place knows module names, so the engine works on Llama, Qwen2/3, Mistral, Phi-3, Gemma
and GPT-NeoX-style models alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from backend.engine.lens import Lens, LogitLens, logit_transform_of

# MLP sub-modules whose weights multiply the MLP input z (the "W" of docs/architecture.md §1), by family.
_MLP_INPUT_PROJECTIONS = (
    ("gate_proj", "up_proj"),  # Llama, Qwen2/3, Mistral, Gemma, SmolLM
    ("gate_up_proj",),  # Phi-3 (fused)
    ("w1", "w3"),  # some Mixtral-style naming
    ("fc1",),  # Phi-1/2, OPT-like
    ("dense_h_to_4h",),  # GPT-NeoX, Pythia
)


@dataclass
class Architecture:
    """Handles to the parts of a causal LM the probe engine reads from."""

    base: nn.Module  # the decoder stack without LM head (called with past_key_values etc.)
    layers: list[nn.Module]  # decoder layers, in order; their outputs are the residual stream
    final_norm: nn.Module  # applied before the LM head
    lm_head: nn.Module  # hidden -> vocabulary logits
    lens: Lens  # every unembedding goes through it (backend.engine.lens)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def mlp_of(self, layer_index: int) -> nn.Module | None:
        layer = self.layers[layer_index]
        return getattr(layer, "mlp", None) or getattr(layer, "feed_forward", None)

    def mlp_input_projections(self, layer_index: int) -> list[nn.Linear]:
        """The linear maps W applied to the MLP input (gate and up), or [] if unknown."""
        mlp = self.mlp_of(layer_index)
        if mlp is None:
            return []
        for names in _MLP_INPUT_PROJECTIONS:
            mods = [getattr(mlp, n, None) for n in names]
            linears = [m for m in mods if isinstance(m, nn.Linear)]
            if len(linears) == len(mods):
                return linears
        return []

    def unembed(self, hidden: torch.Tensor) -> torch.Tensor:
        """Residual stream ``[..., d]`` -> logits ``[..., V]`` (float32) through the lens (logit transform included)."""
        return self.lens(hidden)


def locate(model: Any) -> Architecture:
    """Find the decoder stack, final norm and LM head of a ``*ForCausalLM`` model."""
    base = model.get_decoder() if hasattr(model, "get_decoder") else getattr(model, "model", None)
    lm_head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if base is None or lm_head is None:
        raise TypeError(f"{type(model).__name__} has no decoder stack / LM head")
    layers = getattr(base, "layers", None) or getattr(base, "h", None) or getattr(base, "blocks", None)
    norm = (
        getattr(base, "norm", None)
        or getattr(base, "final_layernorm", None)
        or getattr(base, "ln_f", None)
        or getattr(base, "final_layer_norm", None)
    )
    if layers is None or norm is None:
        raise TypeError(f"cannot find decoder layers / final norm in {type(base).__name__}")
    lens = LogitLens(norm, lm_head, logit_transform_of(model.config))
    return Architecture(base=base, layers=list(layers), final_norm=norm, lm_head=lm_head, lens=lens)


def default_proxy_layers(n_layers: int, n_evenly_spaced: int = 4) -> list[int]:
    """4 evenly spaced layers plus the last one (docs/architecture.md §4), de-duplicated, sorted."""
    if n_layers <= 0:
        return []
    picks = {round(i * (n_layers - 1) / n_evenly_spaced) for i in range(n_evenly_spaced)}
    picks.add(n_layers - 1)
    return sorted(picks)
