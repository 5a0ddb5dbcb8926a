"""The lens seam: how a residual-stream state becomes next-token logits (docs/architecture.md §4).

Every place that unembeds goes through a ``Lens``: the engine's deferred readout, the lens grid
and the landscapes. Today's lens is the logit lens, the model's own readout: final norm, LM head
and whatever the family applies to the logits afterwards (``LogitTransform``: Gemma 2/3
``final_logit_softcapping``, Cohere ``logit_scale``, Granite ``logits_scaling``, ...). A tuned lens
(one learned affine map per layer before the readout, ``backend.engine.tuned_lens``) plugs in
through ``translate``: the engine moves each layer's state with ``translate(h, layer)`` and reads it
out with the lens; ``layer=None`` is the model's own final state (never translated).

``check_readout`` runs once at model load: the lens applied to the last layer's output must give
the model's own logits (1e-4 nats in float32), otherwise the model is refused by name, because
every loss this tool shows would be wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from backend.engine import forward
from backend.errors import ModelLoadError

READOUT_TOLERANCE_NATS = 1e-4  # float32; lower precisions get a tolerance scaled to their epsilon


@dataclass(frozen=True)
class LogitTransform:
    """What a family does to ``lm_head(final_norm(h))`` before its logits leave the model.

    ``logits * scale``, then ``cap * tanh(logits / cap)`` when ``softcap`` is set.
    """

    scale: float = 1.0
    softcap: float | None = None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if self.scale != 1.0:
            logits = logits * self.scale
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    @property
    def is_identity(self) -> bool:
        return self.scale == 1.0 and not self.softcap

    def describe(self) -> str:
        parts = [f"x{self.scale:g}"] if self.scale != 1.0 else []
        if self.softcap:
            parts.append(f"softcap {self.softcap:g}")
        return ", ".join(parts) or "none"


def _positive_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def logit_transform_of(config: Any) -> LogitTransform:
    """The logit transform a config declares (the text config of a multimodal wrapper included).

    - ``final_logit_softcapping`` (Gemma 2, Gemma 3): ``cap * tanh(logits / cap)``
    - ``logit_scale`` (Cohere, Cohere 2): ``logits * logit_scale``
    - ``logits_scaling`` (Granite, GraniteMoE): ``logits / logits_scaling``
    - ``output_multiplier_scale`` / ``lm_head_multiplier`` (some muP-style families): ``logits * value``
    """
    configs = [config]
    text = config.get_text_config() if hasattr(config, "get_text_config") else None
    if text is not None and text is not config:
        configs.insert(0, text)
    scale, softcap = 1.0, None
    for cfg in configs:
        get = (lambda name, c=cfg: getattr(c, name, None)) if not isinstance(cfg, dict) else cfg.get
        if (value := _positive_number(get("logit_scale"))) is not None:
            scale *= value
        if (value := _positive_number(get("logits_scaling"))) is not None:
            scale /= value
        for name in ("output_multiplier_scale", "lm_head_multiplier"):
            if (value := _positive_number(get(name))) is not None:
                scale *= value
        softcap = softcap or _positive_number(get("final_logit_softcapping"))
        if scale != 1.0 or softcap:
            break
    return LogitTransform(scale=scale, softcap=softcap)


class Lens(Protocol):
    """Residual stream after a layer ``[..., d]`` -> next-token logits ``[..., V]`` (float32)."""

    kind: str  # "logit" | "tuned": what the lens grid says it shows

    def translate(self, hidden: torch.Tensor, layer: int | None) -> torch.Tensor:
        """The state after decoder layer ``layer`` in the basis the readout expects (identity for the
        logit lens; ``None``: the model's own final state, never moved)."""
        ...

    def __call__(self, hidden: torch.Tensor, layer: int | None = None) -> torch.Tensor: ...

    def head(self, normed: torch.Tensor) -> torch.Tensor:
        """Logits from a state the final norm was already applied to (e.g. ``last_hidden_state``)."""
        ...


@dataclass
class LogitLens:
    """The model's own readout applied to any layer: final norm, LM head, logit transform."""

    final_norm: nn.Module
    lm_head: nn.Module
    transform: LogitTransform = LogitTransform()
    kind = "logit"

    def translate(self, hidden: torch.Tensor, layer: int | None) -> torch.Tensor:
        return hidden

    def __call__(self, hidden: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        return self.head(self.final_norm(hidden))

    def head(self, normed: torch.Tensor) -> torch.Tensor:
        return self.transform(self.lm_head(normed).float())


def _tolerance(dtype: torch.dtype) -> float:
    if dtype == torch.float32 or dtype == torch.float64:
        return READOUT_TOLERANCE_NATS
    return max(READOUT_TOLERANCE_NATS, 50 * torch.finfo(dtype).eps)


@torch.inference_mode()
def readout_gap(model: nn.Module, lens: Lens, last_layer: nn.Module, n_tokens: int = 6) -> float:
    """Max |log p_lens − log p_model| (nats) over ``n_tokens`` fixed tokens: the lens applied to the
    last layer's output against the model's own logits."""
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)

    config: Any = model.config
    vocab = int(getattr(config, "vocab_size", 0) or getattr(config.get_text_config(), "vocab_size", 0))
    device = next(model.parameters()).device
    ids = (torch.arange(1, n_tokens + 1, device=device) * 7919 % max(vocab, 2))[None]
    with forward.hooks(forward.on_output(last_layer, hook)):
        own = model(input_ids=ids).logits  # [1, T, V]
    ours = lens(captured[-1])  # [1, T, V]
    gap = (forward.log_probs(ours) - forward.log_probs(own)).abs().max()
    return float(gap)


def check_readout(name: str, model: nn.Module, lens: Lens, last_layer: nn.Module) -> None:
    """Refuse a model whose logits the lens does not reproduce (raises ``ModelLoadError``)."""
    dtype = next(model.parameters()).dtype
    try:
        gap = readout_gap(model, lens, last_layer)
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(
            f"{name}: the readout check's forward pass failed ({type(exc).__name__}: {msg[:200]})"
        ) from None
    transform = getattr(lens, "transform", None)
    if not gap <= _tolerance(dtype):  # also catches NaN
        raise ModelLoadError(
            f"{name} ({type(model).__name__}) applies something to its logits this tool does not reproduce: "
            f"final norm + LM head (logit transform: {transform.describe() if transform else 'n/a'}) differ from the model's own "
            f"log-probabilities by {gap:.2g} nats (bar {_tolerance(dtype):g}); its losses would be wrong"
        )
