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

ATTENTION_KEEP_BYTES = 64 << 20  # per-step masses of every cut [C, L, H, S] kept up to this (issue 23)
ATTENTION_WEIGHT_BYTES = 256 << 20  # attention weights held per chunk of probes [L, H, b·m_a, keys]


@dataclass
class AttentionResult:
    """Shapes with docs/architecture.md §3 letters; H heads per layer, S = K − 1 steps.

    ``per_step`` keeps every cut's ``[L, H, S]`` while C·L·H·S float32 fit ``ATTENTION_KEEP_BYTES``;
    above it (1,500 boundaries of a 30-layer model: 2.4 GB) only the last cut's, and ``kept_rows``
    says which cuts the rows are. The per-step mean over heads (``head_mean``) and the prompt and
    probe masses are kept for every cut, computed as the cuts stream by.
    """

    cuts: np.ndarray  # [C] cut points whose probe was read (n, or every boundary)
    per_step: np.ndarray  # [C', L, H, S] attention mass on each step's tokens (C' = C, or 1: the last cut)
    prompt_mass: np.ndarray  # [C, L, H] on the prompt
    probe_mass: np.ndarray  # [C, L, H] on the probe's own earlier tokens
    head_means: np.ndarray | None = None  # [C, S] per_step averaged over layers and heads
    kept_rows: np.ndarray | None = None  # [C'] rows of ``cuts`` held in ``per_step``

    @property
    def head_mean(self) -> np.ndarray:
        """``[C, S]`` per-step attention averaged over layers and heads (the bar per step)."""
        return self.per_step.mean(axis=(1, 2)) if self.head_means is None else self.head_means

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
    """weights ``[L, H, m_a, keys]`` of one probe -> (per_step [L, H, S], prompt [L, H], probe [L, H]),
    float64; per step the sum of its keys read so far (t[s:min(e, cut)]), by one cumulative sum."""
    mean = weights.mean(2).double()  # over the answer-predicting rows
    traj = mean[..., traj_offset : traj_offset + cut]  # [L, H, cut]
    totals = torch.nn.functional.pad(traj.cumsum(-1), (1, 0))  # [L, H, cut + 1]
    bounds = torch.tensor(steps, dtype=torch.long).clamp(max=cut).reshape(-1, 2)  # [S, 2]
    per_step = totals[..., bounds[:, 1]] - totals[..., bounds[:, 0]]
    return per_step, mean[..., :P].sum(-1), mean[..., probe_cols].sum(-1)


def _chunk_probes(model: torch.nn.Module, asked: int, m_a: int, m: int, context: int) -> int:
    """Probes per eager forward so that the kept weights ``[L, H, b·m_a, context + b·m]`` fit
    ``ATTENTION_WEIGHT_BYTES`` (at least one)."""
    per_probe = 4 * locate(model).n_layers * _heads(model) * m_a * (context + asked * m)
    return int(max(1, min(asked, ATTENTION_WEIGHT_BYTES // max(1, per_probe))))


@torch.inference_mode()
def probe_attention(
    model: torch.nn.Module,
    req: ProbeRequest,
    *,
    every_boundary: bool = False,
    chunk_probes: int = 16,
    keep_bytes: int = ATTENTION_KEEP_BYTES,
) -> AttentionResult:
    """Fast path: prefill with the model's own kernel, then the probes alone with eager attention.

    Memory is bounded by bytes: probes per forward from ``ATTENTION_WEIGHT_BYTES``, and every cut's
    ``[L, H, S]`` kept only while they fit ``keep_bytes`` (else only the last cut's; ``AttentionResult``)."""
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
    chunk_probes = _chunk_probes(model, chunk_probes, m - m_t, m, context.shape[1])
    keep_all = 4 * len(cuts) * arch.n_layers * _heads(model) * len(steps) <= keep_bytes
    out = _Streamed(len(cuts), keep_all)
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
    return out.result(cuts)


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


def _heads(model: torch.nn.Module) -> int:
    config = getattr(model.config, "get_text_config", lambda: model.config)()
    return int(getattr(config, "num_attention_heads", 1))


class _Streamed:
    """Per-cut masses as they come: prompt/probe masses and the head mean of every cut, the full
    ``[L, H, S]`` of every cut only when ``keep_all`` (else of the last one)."""

    def __init__(self, n_cuts: int, keep_all: bool):
        self.n_cuts, self.keep_all = n_cuts, keep_all
        self.per_step: list[np.ndarray] = []
        self.prompt: list[np.ndarray] = []
        self.probe: list[np.ndarray] = []
        self.head_means: list[np.ndarray] = []

    def append(self, masses: tuple) -> None:
        per_step, prompt, probe = (t.cpu().numpy().astype(np.float32) for t in masses)
        self.prompt.append(prompt)
        self.probe.append(probe)
        self.head_means.append(per_step.mean(axis=(0, 1)))
        if self.keep_all or len(self.prompt) == self.n_cuts:
            self.per_step.append(per_step)

    def result(self, cuts: list[int]) -> AttentionResult:
        kept = np.arange(len(cuts)) if self.keep_all else np.array([len(cuts) - 1])
        return AttentionResult(
            cuts=np.array(cuts, dtype=np.int64),
            per_step=np.stack(self.per_step),
            prompt_mass=np.stack(self.prompt),
            probe_mass=np.stack(self.probe),
            head_means=np.stack(self.head_means),
            kept_rows=kept.astype(np.int64),
        )


def _result(cuts: list[int], out: list[tuple]) -> AttentionResult:
    streamed = _Streamed(len(cuts), keep_all=True)
    for masses in out:
        streamed.append(masses)
    return streamed.result(cuts)
