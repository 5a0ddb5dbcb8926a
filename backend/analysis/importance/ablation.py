"""Step importance by ablation (docs/architecture.md §1, §3; issue 13 item 1).

For every step k (tokens ``t[s_k:e_k]``, between boundaries k and k+1) remove its tokens, keep
everything else, and score L̂ at the end of the trajectory (optionally at every later
boundary): ``importance_k = L̂(without k) − L̂(full)``. Removal is at the token level: the
ablated sequence is ``prompt + t[:s_k] + t[e_k:c] + template + answer`` with contiguous
position ids, exactly what the naive reference feeds the model.

* ``ablate`` (fast): encode prompt + t once into a KV cache. Ablation k shares the keys of
  ``prompt + t[:s_k]`` with the full run, so only its suffix ``t[e_k:n]`` and its probes are
  encoded, over a view of the first ``P + s_k`` cached keys. Several ablations are packed into
  one forward with a 4-D mask (each segment sees its own cached prefix, its own suffix
  causally, and each probe its suffix prefix + itself). Cost ≈ n + Σ_k (n − e_k) + probes
  (≈ S·n/2 tokens: quadratic in time at research length, so it states its estimate first). A
  suffix longer than the chunk is encoded alone in pieces of the chunk (``_score_long_segment``),
  so every mask is ``[chunk, keys]``: memory linear in n (issue 23).
* ``ablate_naive`` (reference): one plain prompt per (step, cut), scored from scratch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from backend.engine import forward
from backend.engine.architecture import locate
from backend.engine.probe import ProbeRequest
from backend.errors import OutOfMemoryError

Progress = Callable[[int, int], None]  # (done, total) ablations


@dataclass
class AblationResult:
    """L̂ with and without each step. S = K − 1 steps; K boundaries (docs/architecture.md §3)."""

    boundary_cuts: np.ndarray  # [K] int64
    full_loss: np.ndarray  # [K] L̂(c_b) of the unablated trajectory at every boundary
    ablated_loss: np.ndarray  # [S, K] L̂ at boundary b without step k; NaN where c_b < e_k (or not scored)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def final_full(self) -> float:
        return float(self.full_loss[-1])

    @property
    def importance(self) -> np.ndarray:
        """``[S]`` L̂(end, without step k) − L̂(end, full), nats."""
        return (self.ablated_loss[:, -1] - self.full_loss[-1]).astype(np.float32)

    @property
    def importance_at_boundaries(self) -> np.ndarray:
        """``[S, K]`` L̂(c_b without k) − L̂(c_b), NaN before the step ends or where not scored."""
        return (self.ablated_loss - self.full_loss[None, :]).astype(np.float32)


@dataclass
class _Segment:
    """One packed unit: a cached prefix, a suffix encoded fresh, probes after suffix prefixes."""

    row: int  # ablated step index, or -1 for the full (unablated) trajectory
    ctx_len: int  # cached keys visible: P + s_k
    suffix: list[int]  # token ids encoded in this forward
    probes: list[tuple[int, int]]  # (boundary index b, suffix length j before the probe)

    def n_tokens(self, m: int) -> int:
        return len(self.suffix) + len(self.probes) * m


def step_spans(req: ProbeRequest) -> list[tuple[int, int]]:
    bounds = sorted(set(int(c) for c in req.boundary_cuts))
    if len(bounds) < 2:
        raise ValueError("ablation needs at least one step (two boundary cuts)")
    n = len(req.trajectory_ids)
    if bounds[0] < 0 or bounds[-1] != n:
        raise ValueError(f"boundary cuts must lie in 0..{n} and end at n = {n}")
    if not req.template_ids or not req.answer_ids:
        raise ValueError("template and answer must each have at least one token")
    return list(zip(bounds[:-1], bounds[1:]))


def _segments(req: ProbeRequest, every_boundary: bool) -> list[_Segment]:
    P, traj = len(req.prompt_ids), list(req.trajectory_ids)
    bounds = sorted(set(int(c) for c in req.boundary_cuts))
    K, n = len(bounds), len(traj)
    full_targets = range(K) if every_boundary else [K - 1]
    segments = [_Segment(-1, P + bounds[b], [], [(b, 0)]) for b in full_targets]
    for k, (s, e) in enumerate(step_spans(req)):
        targets = [b for b in range(K) if bounds[b] >= e] if every_boundary else [K - 1]
        segments.append(_Segment(k, P + s, traj[e:n], [(b, bounds[b] - e) for b in targets]))
    return segments


def _pack(segments: list[_Segment], probe: list[int], m_t: int, device) -> dict:
    """Query ids, positions, boolean mask ``[Q, visible + Q]`` and answer-predicting rows of a chunk."""
    m = len(probe)
    visible = max(seg.ctx_len for seg in segments)
    Q = sum(seg.n_tokens(m) for seg in segments)
    allowed = torch.zeros(Q, visible + Q, dtype=torch.bool)
    ids, positions, answer_rows, owners = [], [], [], []
    causal_m = torch.tril(torch.ones(m, m, dtype=torch.bool))
    q = 0
    for seg_i, seg in enumerate(segments):
        u = len(seg.suffix)
        allowed[q : q + seg.n_tokens(m), : seg.ctx_len] = True
        if u:
            allowed[q : q + u, visible + q : visible + q + u] = torch.tril(torch.ones(u, u, dtype=torch.bool))
            ids += seg.suffix
            positions += range(seg.ctx_len, seg.ctx_len + u)
        suffix_start, q = q, q + u
        for b, j in seg.probes:
            allowed[q : q + m, visible + suffix_start : visible + suffix_start + j] = True
            allowed[q : q + m, visible + q : visible + q + m] = causal_m
            ids += probe
            positions += range(seg.ctx_len + j, seg.ctx_len + j + m)
            answer_rows.append(list(range(q + m_t - 1, q + m - 1)))
            owners.append((seg_i, b))
            q += m
    return {
        "ids": torch.tensor([ids], device=device),
        "positions": torch.tensor([positions], device=device),
        "allowed": allowed.to(device),
        "visible": visible,
        "answer_rows": torch.tensor(answer_rows, device=device),  # [probes, m_a]
        "owners": owners,
    }


def default_ablation_chunk_tokens(device: torch.device) -> int:
    """Query tokens per packed forward: fixed on CPU, from free memory on CUDA."""
    if device.type != "cuda":
        return 512
    free, _total = torch.cuda.mem_get_info(device)
    return int(max(1024, min(16384, free // (8 << 20))))


@torch.inference_mode()
def ablate(
    model: torch.nn.Module,
    req: ProbeRequest,
    *,
    every_boundary: bool = False,
    chunk_tokens: int | None = None,
    progress: Progress | None = None,
) -> AblationResult:
    """Fast ablation importance: shared-prefix KV cache, suffixes packed several per forward."""
    arch = locate(model)
    bounds = np.array(sorted(set(int(c) for c in req.boundary_cuts)), dtype=np.int64)
    steps = step_spans(req)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    m_t, probe = len(req.template_ids), req.probe_ids
    m = len(probe)
    answer = torch.tensor(req.answer_ids, device=device)
    K, S = len(bounds), len(steps)
    full = np.full(K, np.nan, dtype=np.float64)
    ablated = np.full((S, K), np.nan, dtype=np.float64)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    context = torch.tensor([req.prompt_ids + list(req.trajectory_ids)], device=device)
    prefix = forward.PrefixCache(arch.base(input_ids=context, use_cache=True).past_key_values)
    timings["prefill_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    # longest suffixes first keeps chunks similar in size
    pending = sorted(_segments(req, every_boundary), key=lambda seg: -seg.n_tokens(m))
    budget = chunk_tokens or default_ablation_chunk_tokens(device)
    done = 0
    while pending:
        if pending[0].n_tokens(m) > budget:  # longer than a chunk alone: its suffix in pieces (bounded memory)
            seg = pending.pop(0)
            try:
                scored = _score_long_segment(arch, model, prefix, seg, probe, m_t, answer, budget, dtype)
            except (RuntimeError, MemoryError) as exc:
                if not forward.is_out_of_memory(exc):
                    raise
                if budget <= m:
                    raise OutOfMemoryError(
                        f"out of memory on {device.type} ablating one step ({len(context[0])} context tokens): "
                        "use a shorter trajectory or a smaller model"
                    ) from None
                pending.insert(0, seg)
                budget //= 2  # retry smaller; the numbers are identical
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            for b, value in scored:
                if seg.row < 0:
                    full[b] = value
                else:
                    ablated[seg.row, b] = value
            done += 1 if seg.row >= 0 else 0
            if progress:
                progress(done, S)
            continue
        chunk, used = [], 0
        for seg in pending:
            if not chunk or used + seg.n_tokens(m) <= budget:
                chunk.append(seg)
                used += seg.n_tokens(m)
        packed = _pack(chunk, probe, m_t, device)
        mask = torch.zeros(packed["allowed"].shape, dtype=dtype, device=device)
        mask.masked_fill_(~packed["allowed"], torch.finfo(dtype).min)
        prefix.limit_to(packed["visible"])
        try:
            rows = packed["answer_rows"]
            logits = model(
                input_ids=packed["ids"],
                position_ids=packed["positions"],
                attention_mask=mask[None, None],
                past_key_values=prefix.cache,
                use_cache=True,
                logits_to_keep=rows.reshape(-1),
            ).logits[0]
        except (RuntimeError, MemoryError) as exc:
            prefix.restore()
            if not forward.is_out_of_memory(exc):
                raise
            if budget <= m:
                raise OutOfMemoryError(
                    f"out of memory on {device.type} ablating one step ({len(context[0])} context tokens): "
                    "use a shorter trajectory or a smaller model"
                ) from None
            budget //= 2  # retry smaller; the numbers are identical
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        prefix.restore()
        nll = forward.answer_nll(logits.view(rows.shape[0], rows.shape[1], -1), answer).cpu().numpy()
        for value, (seg_i, b) in zip(nll, packed["owners"]):
            row = chunk[seg_i].row
            if row < 0:
                full[b] = value
            else:
                ablated[row, b] = value
        chosen = {id(seg) for seg in chunk}
        pending = [seg for seg in pending if id(seg) not in chosen]
        done += sum(1 for seg in chunk if seg.row >= 0)
        if progress:
            progress(done, S)
    timings["ablate_s"] = time.perf_counter() - t0
    return AblationResult(bounds, full, ablated, timings)


def _score_long_segment(arch, model, prefix, seg: _Segment, probe: list[int], m_t: int, answer, budget: int, dtype):
    """One segment longer than the chunk budget: its suffix encoded in pieces of ``budget`` tokens over
    the cached prefix ``[0, P + s_k)`` (each piece's causal mask is ``[piece, keys]``: linear in n, where
    packing the whole suffix would be ``[u, u]``), then its probes in chunks over the grown cache, each
    probe seeing the first ``P + s_k + j`` keys. Returns (boundary index, L̂) per probe."""
    device = answer.device
    m, m_a = len(probe), len(answer)
    causal = torch.tril(torch.ones(m, m, dtype=torch.bool, device=device))
    prefix.limit_to(seg.ctx_len)
    try:
        pos = seg.ctx_len
        for start in range(0, len(seg.suffix), budget):
            piece = seg.suffix[start : start + budget]
            arch.base(
                input_ids=torch.tensor([piece], device=device),
                position_ids=torch.arange(pos, pos + len(piece), device=device)[None],
                past_key_values=prefix.cache,
                use_cache=True,
            )
            pos += len(piece)
        grown = forward.PrefixCache(prefix.cache)  # prompt + t[:s_k] + t[e_k:n], as this ablation reads it
        scored: list[tuple[int, float]] = []
        per = max(1, budget // m)
        for i in range(0, len(seg.probes), per):
            group = seg.probes[i : i + per]
            b = len(group)
            ends = torch.tensor([seg.ctx_len + j for _, j in group], device=device)  # keys each probe sees
            visible = int(ends.max())
            sees = torch.arange(visible, device=device)[None, :] < ends[:, None]
            allowed = torch.cat([sees.repeat_interleave(m, 0), torch.block_diag(*[causal] * b)], 1)
            mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
            mask.masked_fill_(~allowed, torch.finfo(dtype).min)
            positions = (ends[:, None] + torch.arange(m, device=device)[None, :]).reshape(1, -1)
            rows = torch.arange(b, device=device)[:, None] * m + torch.arange(m_t - 1, m - 1, device=device)[None, :]
            grown.limit_to(visible)
            try:
                logits = model(
                    input_ids=torch.tensor([probe * b], device=device),
                    position_ids=positions,
                    attention_mask=mask[None, None],
                    past_key_values=grown.cache,
                    use_cache=True,
                    logits_to_keep=rows.reshape(-1),
                ).logits[0]
            finally:
                grown.restore()
            nll = forward.answer_nll(logits.view(b, m_a, -1), answer).cpu().numpy()
            scored += [(bidx, float(v)) for (bidx, _j), v in zip(group, nll)]
        return scored
    finally:
        prefix.restore()


@torch.inference_mode()
def ablate_naive(model: torch.nn.Module, req: ProbeRequest, *, every_boundary: bool = False) -> AblationResult:
    """Reference: rebuild ``prompt + t[:s_k] + t[e_k:c] + template + answer`` and score it from scratch."""
    bounds = np.array(sorted(set(int(c) for c in req.boundary_cuts)), dtype=np.int64)
    steps = step_spans(req)
    m_a = len(req.answer_ids)
    traj, K = list(req.trajectory_ids), len(bounds)

    def score(tokens: list[int]) -> float:
        return forward.teacher_forced_loss(model, req.prompt_ids + tokens + req.probe_ids, m_a)

    t0 = time.perf_counter()
    targets = list(range(K)) if every_boundary else [K - 1]
    full = np.full(K, np.nan)
    for b in targets:
        full[b] = score(traj[: bounds[b]])
    ablated = np.full((len(steps), K), np.nan)
    for k, (s, e) in enumerate(steps):
        for b in targets:
            if bounds[b] >= e:
                ablated[k, b] = score(traj[:s] + traj[e : bounds[b]])
    return AblationResult(bounds, full, ablated, {"naive_s": time.perf_counter() - t0})
