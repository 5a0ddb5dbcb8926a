"""Where things live inside a Hugging Face causal LM: decoder layers, final norm, LM head,
the MLP input projections used by the parameter-proxy space, each layer's attention module and
its output projection W_o (importance, exact update), embeddings, position embeddings and the
attention window.

One place knows module names, so the engine and every analysis work on Llama, Qwen2/3,
Mistral, Phi-3, Gemma and GPT-NeoX-style models alike.
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
_ATTENTION = ("self_attn", "attention", "attn")  # the attention sub-module of a decoder layer
_ATTENTION_OUTPUT = ("o_proj", "dense", "out_proj")  # its output projection W_o ([d, H])
_ABSOLUTE_POSITIONS = ("wpe", "embed_positions", "position_embeddings")  # learned/absolute position tables


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

    def attention_of(self, layer_index: int) -> nn.Module | None:
        """The attention module of a decoder layer (``self_attn`` / ``attention`` / ``attn``), or None."""
        layer = self.layers[layer_index]
        return next((getattr(layer, n) for n in _ATTENTION if getattr(layer, n, None) is not None), None)

    def attention_modules(self) -> list[nn.Module]:
        """Every layer's attention module, in order (TypeError naming the layer class if one is missing)."""
        modules = []
        for i in range(self.n_layers):
            attn = self.attention_of(i)
            if attn is None:
                raise TypeError(f"cannot find the attention module of {type(self.layers[i]).__name__}")
            modules.append(attn)
        return modules

    def attention_output_projection(self, layer_index: int) -> nn.Module | None:
        """W_o of a layer's attention (``o_proj`` / ``dense`` / ``out_proj``; any module type), or None."""
        attn = self.attention_of(layer_index)
        if attn is None:
            return None
        return next((getattr(attn, n) for n in _ATTENTION_OUTPUT if getattr(attn, n, None) is not None), None)

    def absolute_position_embedding(self) -> str | None:
        """The name of an absolute position-embedding table of the decoder stack (GPT-2 ``wpe``, OPT
        ``embed_positions``, ...), or None for rotary / relative positions."""
        return next((n for n in _ABSOLUTE_POSITIONS if isinstance(getattr(self.base, n, None), nn.Module)), None)

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


def embedding_weights(model: Any) -> list[torch.Tensor]:
    """The input-embedding and LM-head weight tensors (one tensor when they are tied)."""
    out: list[torch.Tensor] = []
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        module = getattr(model, getter, lambda: None)()
        weight = getattr(module, "weight", None) if module is not None else None
        if isinstance(weight, torch.Tensor) and all(weight is not w for w in out):
            out.append(weight)
    return out


def sliding_window_of(config: Any) -> int | None:
    """The attention window of a config whose layers (some or all) use sliding-window attention."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    window = getattr(cfg, "sliding_window", None)
    if not isinstance(window, int) or window <= 0 or getattr(cfg, "use_sliding_window", True) is False:
        return None
    layer_types = getattr(cfg, "layer_types", None)
    if layer_types and not any("sliding" in str(t) for t in layer_types):
        return None
    return window


def default_proxy_layers(n_layers: int, n_evenly_spaced: int = 4) -> list[int]:
    """4 evenly spaced layers plus the last one (docs/architecture.md §4), de-duplicated, sorted."""
    if n_layers <= 0:
        return []
    picks = {round(i * (n_layers - 1) / n_evenly_spaced) for i in range(n_evenly_spaced)}
    picks.add(n_layers - 1)
    return sorted(picks)
