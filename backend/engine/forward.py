"""The one forward layer (docs/architecture.md §4): how the answer's loss is read from logits,
the teacher-forced loss of a token sequence, the hooks every analysis attaches to a model,
and the KV-cache views the engines share.

* ``answer_nll`` / ``answer_token_nll``: the loss that defines L̂. Logits ``[B, m_a, V]`` (the
  positions that *predict* the m_a answer tokens) and answer ids ``[m_a]`` or ``[B, m_a]`` give
  the NLL per answer token ``[B, m_a]`` and its mean ``[B]``, in nats. Computed as
  ``logsumexp(logits) − logits[answer]`` in float32 (float64 input stays float64), whatever the
  model's dtype; the logits must already be the model's own (logit transform included: take
  them from ``model(...).logits`` or through ``Architecture.lens``, never from a bare LM head).
* ``lens_answer_nll``: the same from residual-stream states, through ``Architecture.lens``.
* ``answer_readout`` / ``lens_readout``: what the engines keep of one LM-head batch (token NLL,
  first-token probability, and rank + entropy for the curve or the top-k for the lens grid),
  reading the ``[N, m_a, V]`` logits in as few passes as they need.
* ``log_probs``: float32 log-softmax over the vocabulary, for readouts that need the whole
  distribution (entropy, rank, the lens check).
* ``answer_logits`` / ``teacher_forced_nll``: one plain forward of ``ids`` ``[T]`` (or ``[B, T]``)
  whose last m_a tokens are the answer, read out with the model's own head: the naive reference
  of every engine (L_q(θ) when ``ids`` = prompt + template + answer, L̂(c) when the trajectory
  prefix t[:c] sits in between).
* ``hooks``: the one way to attach forward / forward-pre hooks. A context manager that
  registers ``on_output(module, fn)`` / ``on_input(module, fn)`` specs and removes every one
  of them on exit, also when the body (or a registration) raises.
* ``cache_prefix``: a KV cache shown to one forward as views of its first ``length`` positions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from backend.engine.lens import Lens

# ---------------------------------------------------------------------------- the answer's loss


def _readout_precision(logits: torch.Tensor) -> torch.Tensor:
    """float32 for every model dtype (bf16/fp16 logits upcast); float64 input is kept."""
    return logits if logits.dtype == torch.float64 else logits.float()


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Log-softmax over the last axis ``[..., V]`` in float32 (float64 input stays float64)."""
    return torch.log_softmax(_readout_precision(logits), dim=-1)


def answer_token_nll(logits: torch.Tensor, answer_ids: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """NLL of each answer token ``[B, m_a]`` (nats).

    logits ``[B, m_a, V]``: row j predicts answer token j (the model's own logits);
    answer_ids ``[m_a]`` (the same answer for every row) or ``[B, m_a]``.
    """
    if logits.ndim != 3:
        raise ValueError(f"logits must be [B, m_a, V], got shape {tuple(logits.shape)}")
    x = _readout_precision(logits)
    answer = torch.as_tensor(answer_ids, device=x.device, dtype=torch.long)
    B, m_a = x.shape[0], x.shape[1]
    if answer.ndim == 1:
        answer = answer[None].expand(B, -1)
    if tuple(answer.shape) != (B, m_a):
        raise ValueError(f"answer ids must be [{m_a}] or [{B}, {m_a}], got shape {tuple(answer.shape)}")
    picked = x.gather(-1, answer[..., None]).squeeze(-1)  # [B, m_a]
    return torch.logsumexp(x, dim=-1) - picked


def answer_readout(logits: torch.Tensor, answer: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The curve's readout of one LM-head batch: logits ``[N, m_a, V]`` (the model's own), answer
    ids ``[m_a]`` -> (token NLL ``[N, m_a]``, p(first answer token) ``[N]``, its rank ``[N]``
    (1 = top; ties do not count), the entropy ``[N]`` at the probe position), float32.

    One logsumexp serves the NLL, one log-softmax the first position's entropy; the rank compares
    raw logits (exact) and is counted by a matmul, since a sum over a boolean ``[N, V]`` costs
    more than the comparison itself. Values are ``answer_token_nll``'s and ``log_probs``'.
    """
    x, lse, picked = _lse_and_picked(logits, answer)
    x0, first = x[:, 0], torch.log_softmax(x[:, 0], dim=-1)  # [N, V]: logits and log-probabilities at the probe
    target = x0[:, answer[0]]
    above = (x0 - target[:, None]).gt_(0)  # [N, V] 1.0 where a token beats the answer's first
    rank = (above @ torch.ones(x0.shape[-1], dtype=above.dtype, device=above.device)).long() + 1
    del above
    entropy = -(first.exp() * first).sum(-1)  # log_softmax's and a pairwise sum: stable to 1e-6 across batchings
    return lse - picked, (target - lse[:, 0]).exp(), rank, entropy


def lens_readout(logits: torch.Tensor, answer: torch.Tensor, top_k: int) -> tuple[torch.Tensor, ...]:
    """The lens grid's readout of one LM-head batch: logits ``[N, m_a, V]`` through the lens ->
    (token NLL ``[N, m_a]``, p(first answer token) ``[N]``, the top-``top_k`` ids ``[N, k]`` and
    their probabilities at the probe position). Rank and entropy are not kept per layer, so they
    are not computed: a logsumexp and a top-k are the only passes over V.
    """
    x, lse, picked = _lse_and_picked(logits, answer)
    top = x[:, 0].topk(top_k, -1)
    return lse - picked, (x[:, 0, answer[0]] - lse[:, 0]).exp(), top.indices, (top.values - lse[:, :1]).exp()


def _lse_and_picked(logits: torch.Tensor, answer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits in readout precision, their logsumexp ``[N, m_a]`` and the answer tokens' logits ``[N, m_a]``."""
    x = _readout_precision(logits)
    picked = x.gather(-1, answer[None, :, None].expand(x.shape[0], -1, 1)).squeeze(-1)
    return x, torch.logsumexp(x, dim=-1), picked


def answer_nll(logits: torch.Tensor, answer_ids: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """Mean NLL of the answer tokens per row ``[B]`` (nats): L̂ for one probe per row.

    logits ``[B, m_a, V]``, answer_ids ``[m_a]`` or ``[B, m_a]`` (see ``answer_token_nll``).
    """
    return answer_token_nll(logits, answer_ids).mean(-1)


def lens_answer_nll(
    lens: Lens, hidden: torch.Tensor, answer_ids: torch.Tensor | Sequence[int], *, normed: bool = False
) -> torch.Tensor:
    """Mean answer NLL ``[B]`` of residual-stream states ``[B, m_a, d]`` read out through the lens
    (final norm, LM head and the family's logit transform; ``normed``: the final norm was already
    applied, as in a decoder stack's ``last_hidden_state``)."""
    logits = lens.head(hidden) if normed else lens(hidden)
    return answer_nll(logits, answer_ids)


def _as_batch(ids: torch.Tensor | Sequence[int], device: torch.device) -> torch.Tensor:
    x = torch.as_tensor(ids, device=device, dtype=torch.long)
    return x[None] if x.ndim == 1 else x


@torch.inference_mode()
def answer_logits(model: nn.Module, ids: torch.Tensor | Sequence[int], m_a: int) -> torch.Tensor:
    """The model's own logits ``[B, m_a, V]`` predicting the last ``m_a`` tokens of ``ids`` ``[T]`` or
    ``[B, T]`` (one plain forward; the LM head runs on the m_a + 1 last positions only)."""
    x = _as_batch(ids, next(model.parameters()).device)
    if not 1 <= m_a < x.shape[-1]:
        raise ValueError(f"the answer ({m_a} tokens) must be preceded by at least one token of {x.shape[-1]}")
    return model(input_ids=x, logits_to_keep=m_a + 1).logits[:, :-1]


@torch.inference_mode()
def teacher_forced_nll(model: nn.Module, ids: torch.Tensor | Sequence[int], m_a: int) -> torch.Tensor:
    """Mean answer NLL ``[B]`` of one plain forward of ``ids`` ``[T]`` / ``[B, T]`` whose last ``m_a``
    tokens are the answer (the naive reference: prompt [+ t[:c]] + template + answer)."""
    x = _as_batch(ids, next(model.parameters()).device)
    return answer_nll(answer_logits(model, x, m_a), x[:, -m_a:])


def teacher_forced_loss(model: nn.Module, ids: torch.Tensor | Sequence[int], m_a: int) -> float:
    """``teacher_forced_nll`` of one sequence ``[T]`` as a float (nats)."""
    return float(teacher_forced_nll(model, ids, m_a)[0])


# ---------------------------------------------------------------------------- hooks


@dataclass(frozen=True)
class Hook:
    """One hook to attach: ``fn(module, inputs, output)`` after ``module`` runs (``on_output``), or
    ``fn(module, inputs)`` / ``fn(module, args, kwargs)`` before it (``on_input``). A returned
    value replaces the output (or the inputs), as in torch."""

    module: nn.Module
    fn: Callable[..., Any]
    before: bool = False
    with_kwargs: bool = False


def on_output(module: nn.Module, fn: Callable[..., Any]) -> Hook:
    """``fn(module, inputs, output)`` after ``module``'s forward; a non-None return replaces the output."""
    return Hook(module, fn)


def on_input(module: nn.Module, fn: Callable[..., Any], *, with_kwargs: bool = False) -> Hook:
    """``fn(module, inputs)`` (``fn(module, args, kwargs)`` with ``with_kwargs``) before ``module`` runs."""
    return Hook(module, fn, before=True, with_kwargs=with_kwargs)


def _flatten(specs: Iterable[Hook | Iterable[Hook]]) -> Iterator[Hook]:
    for spec in specs:
        if isinstance(spec, Hook):
            yield spec
        else:
            yield from _flatten(spec)


@contextmanager
def hooks(*specs: Hook | Iterable[Hook]) -> Iterator[list[Any]]:
    """Attach every hook in ``specs`` (``Hook``s or iterables of them) for the body; all of them are
    removed on exit, on an exception in the body and when a later registration fails."""
    handles: list[Any] = []
    try:
        for spec in _flatten(specs):
            if spec.before:
                handles.append(spec.module.register_forward_pre_hook(spec.fn, with_kwargs=spec.with_kwargs))
            else:
                handles.append(spec.module.register_forward_hook(spec.fn))
        yield handles
    finally:
        for handle in handles:
            handle.remove()


# ---------------------------------------------------------------------------- KV-cache views


def has_layer_views(cache: Any) -> bool:
    """Whether ``cache`` keeps per-layer ``keys`` / ``values`` tensors (transformers' ``DynamicCache``)."""
    layers = getattr(cache, "layers", None) or []
    return bool(layers) and all(hasattr(layer, "keys") and hasattr(layer, "values") for layer in layers)


class PrefixCache:
    """A prefill's KV cache shown to one forward as views of its first ``length`` keys (no copy);
    ``restore`` brings back exactly the prefill (and drops what a forward appended).

    ``read_only``: a forward attends to the prefix and its own keys but appends nothing: each
    layer's ``update`` returns the concatenation without keeping it, so the copy lives only while
    that layer attends (one layer's keys at a time) instead of every layer's until ``restore``
    (SmolLM2 at 4k tokens: 190 MB). For forwards whose keys no later forward reads (the engine's
    probe chunks); a cache whose keys must grow (ablation's suffixes) leaves it off.
    """

    def __init__(self, cache: Any, *, read_only: bool = False):
        if not has_layer_views(cache):
            raise TypeError(f"{type(cache).__name__} has no per-layer keys/values to share")
        self.cache = cache
        self.full = [(layer.keys, layer.values) for layer in cache.layers]
        # only transformers' plain dynamic layers: a quantized or offloaded layer's update does more
        self.read_only = read_only and all(_concatenates(layer) for layer in cache.layers)

    def limit_to(self, length: int) -> None:
        for layer, (keys, values) in zip(self.cache.layers, self.full):
            layer.keys, layer.values = keys[..., :length, :], values[..., :length, :]
            if self.read_only:  # an instance attribute shadows the class's update until restore
                layer.update = _attend_without_appending(layer.keys, layer.values)

    def restore(self) -> None:
        for layer, (keys, values) in zip(self.cache.layers, self.full):
            layer.keys, layer.values = keys, values
            vars(layer).pop("update", None)


def _concatenates(layer: Any) -> bool:
    """Whether ``layer``'s update is transformers' plain concatenation (full or sliding window)."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    return type(layer).update in (DynamicLayer.update, DynamicSlidingWindowLayer.update)


def _attend_without_appending(
    keys: torch.Tensor, values: torch.Tensor
) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    def update(key_states: torch.Tensor, value_states: torch.Tensor, *_args, **_kwargs):
        return torch.cat([keys, key_states], dim=-2), torch.cat([values, value_states], dim=-2)

    return update


@contextmanager
def cache_prefix(cache: Any, length: int) -> Iterator[Any]:
    """``cache`` limited to its first ``length`` positions for the body, then restored."""
    view = PrefixCache(cache)
    view.limit_to(length)
    try:
        yield cache
    finally:
        view.restore()


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA / host out-of-memory error (the engines retry with smaller chunks)."""
    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(exc).lower()
