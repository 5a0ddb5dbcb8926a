"""Where the answer looks: the answer probe's attention to each step (issue 13 item 3).

At a cut c (the final cut by default, optionally every boundary) the probe tokens that
predict answer tokens (m_a query rows) attend over the prompt (P keys), the steps read so far
and the probe itself. Per layer and head the weights are averaged over those m_a rows and
summed over each step's tokens, so ``prompt + Σ steps + probe = 1`` for every head.

Only the probe runs with eager attention (the one kernel that returns weights): the prompt +
trajectory prefill keeps the model's fast kernel, and the engine (``backend/engine/probe.py``)
is untouched. Receiver heads follow Thought Anchors (Bogdan et al. 2025): the heads whose
per-step attention has the highest kurtosis across steps (Fisher, biased, as their code).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from backend.analysis.importance.ablation import step_spans
from backend.engine import forward
from backend.engine.architecture import locate
from backend.engine.probe import ProbeRequest


@dataclass
class AttentionResult:
    """Shapes with docs/architecture.md §3 letters; H heads per layer, S = K − 1 steps."""

    cuts: np.ndarray  # [C] cut points whose probe was read (n, or every boundary)
    per_step: np.ndarray  # [C, L, H, S] attention mass on each step's tokens
    prompt_mass: np.ndarray  # [C, L, H] on the prompt
    probe_mass: np.ndarray  # [C, L, H] on the probe's own earlier tokens

    @property
    def head_mean(self) -> np.ndarray:
        """``[C, S]`` per-step attention averaged over layers and heads (the bar per step)."""
        return self.per_step.mean(axis=(1, 2))

    def kurtosis(self, cut_row: int = -1) -> np.ndarray:
        """``[L, H]`` kurtosis of each head's per-step attention at one cut (NaN if < 2 steps)."""
        scores = self.per_step[cut_row]
        if scores.shape[-1] < 2:
            return np.full(scores.shape[:2], np.nan)
        return stats.kurtosis(scores, axis=-1, fisher=True, bias=True, nan_policy="omit")

    def receiver_heads(self, top: int = 5, cut_row: int = -1) -> list[tuple[int, int, float]]:
        """The ``top`` (layer, head, kurtosis) with the most concentrated attention across steps."""
        kurt = np.nan_to_num(self.kurtosis(cut_row), nan=-np.inf)
        order = np.argsort(kurt, axis=None)[::-1][:top]
        return [(int(i // kurt.shape[1]), int(i % kurt.shape[1]), float(kurt.flat[i])) for i in order]


@contextmanager
def eager_attention(model: torch.nn.Module):
    """Switch the model to eager attention (weights returned) for the body, then back."""
    previous = getattr(model.config, "_attn_implementation", None)
    switch = previous not in (None, "eager")
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(previous)


class _WeightCapture:
    """Each layer's attention weights at chosen query rows ``[H, R, keys]``, kept by forward hooks on
    the attention modules (attach with ``forward.hooks(cap.specs())``)."""

    def __init__(self, model: torch.nn.Module):
        self.modules = locate(model).attention_modules()
        self.rows: torch.Tensor | None = None
        self.weights: list[torch.Tensor | None] = [None] * len(self.modules)

    def specs(self) -> list[forward.Hook]:
        return [forward.on_output(module, self._hook(i)) for i, module in enumerate(self.modules)]

    def _hook(self, index: int):
        def hook(_module, _inputs, output):
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if weights is None:
                raise RuntimeError("attention weights were not returned (eager attention is required)")
            self.weights[index] = weights[0][:, self.rows].float()

        return hook

    def stacked(self) -> torch.Tensor:
        assert all(w is not None for w in self.weights), "every layer's attention hook fired"
        return torch.stack([w for w in self.weights if w is not None])  # [L, H, R, keys]


def _masses(weights: torch.Tensor, P: int, steps, cut: int, probe_cols: slice, traj_offset: int) -> tuple:
    """weights ``[L, H, m_a, keys]`` of one probe -> (per_step [L, H, S], prompt [L, H], probe [L, H])."""
    mean = weights.mean(2)  # over the answer-predicting rows
    per_step = torch.zeros(*mean.shape[:2], len(steps), dtype=torch.float64)
    for k, (s, e) in enumerate(steps):
        if s < cut:
            per_step[..., k] = mean[..., traj_offset + s : traj_offset + min(e, cut)].double().sum(-1)
    return per_step, mean[..., :P].double().sum(-1), mean[..., probe_cols].double().sum(-1)


@torch.inference_mode()
def probe_attention(
    model: torch.nn.Module, req: ProbeRequest, *, every_boundary: bool = False, chunk_probes: int = 16
) -> AttentionResult:
    """Fast path: prefill with the model's own kernel, then the probes alone with eager attention."""
    arch = locate(model)
    steps = step_spans(req)
    bounds = sorted(set(int(c) for c in req.boundary_cuts))
    cuts = bounds if every_boundary else [bounds[-1]]
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    P, m_t, probe = len(req.prompt_ids), len(req.template_ids), req.probe_ids
    m = len(probe)
    context = torch.tensor([req.prompt_ids + list(req.trajectory_ids)], device=device)
    prefix = forward.PrefixCache(arch.base(input_ids=context, use_cache=True).past_key_values)
    out = []
    cap = _WeightCapture(model)
    with eager_attention(model), forward.hooks(cap.specs()):
        for start in range(0, len(cuts), chunk_probes):
            chunk = cuts[start : start + chunk_probes]
            b, visible = len(chunk), P + max(chunk)
            key_index = torch.arange(visible, device=device)
            sees = key_index[None, :] < (P + torch.tensor(chunk, device=device))[:, None]
            causal = torch.tril(torch.ones(m, m, dtype=torch.bool, device=device))
            allowed = torch.cat([sees.repeat_interleave(m, 0), torch.block_diag(*[causal] * b)], 1)
            mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
            mask.masked_fill_(~allowed, torch.finfo(dtype).min)
            positions = torch.tensor([[P + c + i for c in chunk for i in range(m)]], device=device)
            cap.rows = (torch.arange(b, device=device)[:, None] * m + torch.arange(m_t - 1, m - 1, device=device)).view(
                -1
            )
            prefix.limit_to(visible)
            try:
                arch.base(
                    input_ids=torch.tensor([probe * b], device=device),
                    position_ids=positions,
                    attention_mask=mask[None, None],
                    past_key_values=prefix.cache,
                    use_cache=True,
                )
            finally:
                prefix.restore()
            weights = cap.stacked()  # [L, H, b*m_a, visible + b*m]
            m_a = m - m_t
            for j, c in enumerate(chunk):
                w = weights[:, :, j * m_a : (j + 1) * m_a]
                out.append(_masses(w, P, steps, c, slice(visible + j * m, visible + (j + 1) * m), P))
    return _result(cuts, out)


@torch.inference_mode()
def probe_attention_naive(
    model: torch.nn.Module, req: ProbeRequest, *, every_boundary: bool = False
) -> AttentionResult:
    """Reference: one eager forward over ``prompt + t[:c] + template + answer`` per cut."""
    steps = step_spans(req)
    bounds = sorted(set(int(c) for c in req.boundary_cuts))
    cuts = bounds if every_boundary else [bounds[-1]]
    device = next(model.parameters()).device
    P, m_t, m = len(req.prompt_ids), len(req.template_ids), len(req.probe_ids)
    out = []
    cap = _WeightCapture(model)
    with eager_attention(model), forward.hooks(cap.specs()):
        for c in cuts:
            ids = req.prompt_ids + list(req.trajectory_ids[:c]) + req.probe_ids
            cap.rows = torch.arange(P + c + m_t - 1, P + c + m - 1, device=device)
            model(input_ids=torch.tensor([ids], device=device), logits_to_keep=1)
            out.append(_masses(cap.stacked(), P, steps, c, slice(P + c, P + c + m), P))
    return _result(cuts, out)


def _result(cuts: list[int], out: list[tuple]) -> AttentionResult:
    return AttentionResult(
        cuts=np.array(cuts, dtype=np.int64),
        per_step=np.stack([o[0].cpu().numpy() for o in out]).astype(np.float32),
        prompt_mass=np.stack([o[1].cpu().numpy() for o in out]).astype(np.float32),
        probe_mass=np.stack([o[2].cpu().numpy() for o in out]).astype(np.float32),
    )
