"""The trajectory as an exact all-layer weight update (docs/exact_update.md).

For every step boundary c, one edit ΔW_c = {ΔW_o^ℓ} of the attention output projections W_o
(all layers ℓ) such that the model *without* the trajectory in context, with weights
θ + ΔW_c, gives the probe tokens exactly the residual streams they have *with* t[:c] in
context, so L(θ + ΔW_c) = L̂(c). Per layer, from the bottom:

    ΔW_o^ℓ = [W_o (V_c − V_0), 0] · pinv([V_0, V_P])          (minimum Frobenius norm)

V_c ``[H, m]``: o_proj input at the m probe tokens with context; V_0 ``[H, m]``: the same
without context, read from the network already edited below ℓ; V_P ``[H, P]``: the prompt
tokens' o_proj input (identical in both inputs). With V_0⊥ = (I − Π_P) V_0 the solution
factors as ΔW_o^ℓ = U · R with U = W_o (V_c − V_0) ``[d, m]`` and R = pinv(V_0⊥) ``[m, H]``:
rank ≤ m, rows of ΔW_o^ℓ orthogonal to span(V_P), so ΔW_o^ℓ V_P = 0. Only the factors are
stored (never the dense d × H matrices).

Cost per run: one prefill of prompt + trajectory (n tokens) and, per boundary, one
with-context forward of the m probe tokens over the cached prefix and one no-context
forward of the m probe tokens over the cached prompt (the prompt's keys are the first P
of the same cache, since the prompt precedes the trajectory).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from backend.analysis.exact.data import EXACT_STORE_BYTES, EXACT_VERSION, ExactUpdate, factor_bytes, stored_rows  # noqa: F401
from backend.engine import forward
from backend.engine.architecture import Architecture, locate, sliding_window_of
from backend.errors import InputError

MAX_CONDITION = 1e8  # cond([V_0, V_P]) above this: the constraints are numerically dependent
Progress = Callable[[int, int], None]  # (done, total) boundaries


class ExactUpdateError(InputError, ValueError):
    """The exact update cannot be built for this model or run (one-line message)."""


# ---------------------------------------------------------------------------- architecture checks
def output_projections(model: nn.Module, arch: Architecture | None = None) -> list[nn.Linear]:
    """The attention output projection W_o (``[d, H]``) of every layer, or ExactUpdateError.

    Refused: absolute position embeddings (the trajectory then shifts the probe tokens'
    input, not only what attention reads) and output projections that are not ``nn.Linear``.
    The modules are found by ``backend.engine.architecture``.
    """
    arch = arch or locate(model)
    name = arch.absolute_position_embedding()
    if name is not None:
        raise ExactUpdateError(
            f"{type(model).__name__} adds absolute position embeddings ({name}): the trajectory shifts the "
            "probe's input embeddings, so no attention-output edit reproduces it; exact update unsupported"
        )
    found = []
    for i in range(arch.n_layers):
        proj = arch.attention_output_projection(i)
        if not isinstance(proj, nn.Linear):
            what = "no attention module" if arch.attention_of(i) is None else f"output projection {type(proj).__name__}"
            raise ExactUpdateError(
                f"layer {i} of {type(model).__name__}: {what} (need an nn.Linear o_proj/dense/out_proj)"
            )
        found.append(proj)
    return found


class _Hooks:
    """What the hooks on every W_o see and do: record its input at the probe tokens; while
    ``solve`` is set, add the edit's output at the probe tokens. Attach with
    ``forward.hooks(h.specs())``."""

    def __init__(self, projections: list[nn.Linear], m: int = 0, keep_first: int | None = None):
        self.projections, self.m, self.keep_first = projections, m, keep_first
        self.inputs: list[torch.Tensor | None] = [None] * len(projections)
        self.solve: Callable[[int, torch.Tensor], torch.Tensor | None] | None = None

    def specs(self) -> list[forward.Hook]:
        return [forward.on_output(proj, self._hook(i)) for i, proj in enumerate(self.projections)]

    def _hook(self, index: int):
        def hook(_module, inputs, output):
            v = inputs[0][0]  # [T, H] (batch row 0)
            # the prefill keeps only its first tokens (a copy: a view would hold all L × [P + n, H])
            self.inputs[index] = v if self.keep_first is None else v[: self.keep_first].clone()
            if self.solve is not None:
                probe_v = v[-self.m :]  # [m, H]: the probe tokens are the last m of the query
                extra = self.solve(index, probe_v)  # [m, d] or None
                if extra is not None:
                    out = output.clone()
                    out[0, -self.m :] += extra.to(output.dtype)
                    return out
            return None

        return hook


def _prompt_basis(v_prompt: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis ``[H, P]`` of span(V_P), V_P given as rows ``[P, H]``."""
    q, _ = torch.linalg.qr(v_prompt.T)
    return q


@torch.inference_mode()
def compute(
    model: nn.Module,
    prompt_ids: list[int],
    trajectory_ids: list[int],
    probe_ids: list[int],
    m_a: int,
    boundary_cuts: list[int] | np.ndarray,
    *,
    solve_dtype: torch.dtype = torch.float64,
    progress: Progress | None = None,
    store_bytes: int = EXACT_STORE_BYTES,
) -> ExactUpdate:
    """Factors of ΔW_c at the boundary cuts (see the module docstring), kept for the boundaries
    ``stored_rows`` picks under ``store_bytes`` (all of them while they fit). Every boundary gets
    L̂(c), the hook-applied edit's loss, condition, rank and the inner products with its two
    predecessors per layer (``path_grams``), computed as the boundaries stream by, so memory is
    bounded by the budget plus O(K·L), never K × K or every boundary's factors at once."""
    arch = locate(model)
    projections = output_projections(model, arch)
    P, m, n = len(prompt_ids), len(probe_ids), len(trajectory_ids)
    L = arch.n_layers
    d, H = projections[0].out_features, projections[0].in_features
    cuts = np.array(sorted(set(int(c) for c in boundary_cuts)), dtype=np.int64)
    if not len(cuts) or cuts[0] < 0 or cuts[-1] > n:
        raise ExactUpdateError(f"boundary cuts must lie in 0..{n}")
    if not 1 <= m_a < m:
        raise ExactUpdateError(f"the probe needs at least one template token before the {m_a} answer tokens")
    if P + m > H:
        raise ExactUpdateError(
            f"prompt ({P} tokens) + probe ({m} tokens) = {P + m} constraints exceed the attention width H = {H}: "
            "no exact attention-output edit leaves the prompt untouched; use a shorter question or template"
        )
    device = next(model.parameters()).device
    probe = torch.tensor([probe_ids], device=device)
    answer = torch.tensor(probe_ids[m - m_a :], device=device)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    hooks = _Hooks(projections, keep_first=P)  # the prompt's o_proj inputs V_P only
    with forward.hooks(hooks.specs()):
        prefill = arch.base(input_ids=torch.tensor([prompt_ids + trajectory_ids], device=device), use_cache=True)
        cache = prefill.past_key_values
        prompt_v = [v[:P].to(solve_dtype) for v in hooks.inputs if v is not None]  # L × [P, H]
        bases = [_prompt_basis(v) for v in prompt_v]
    timings["prefill_s"] = time.perf_counter() - t0
    weights = [p.weight.detach().to(solve_dtype) for p in projections]  # [d, H] each

    K = len(cuts)
    kept = stored_rows(K, factor_bytes(L, d, H, m), store_bytes)  # [B] rows whose factors are stored
    slot_of = np.full(K, -1, dtype=np.int64)
    slot_of[kept] = np.arange(len(kept))
    left = np.zeros((len(kept), L, d, m), dtype=np.float32)
    right = np.zeros((len(kept), L, m, H), dtype=np.float32)
    condition = np.full((K, L), np.nan)
    rank = np.zeros((K, L), dtype=np.int64)
    target = np.zeros(K)
    construction = np.zeros(K)
    path_grams = np.zeros((L, K, 3))  # ⟨ΔW_k, ΔW_k⟩, ⟨ΔW_k, ΔW_k−1⟩, ⟨ΔW_k, ΔW_k−2⟩ per layer
    recent: list[list[tuple[torch.Tensor, torch.Tensor] | None]] = []  # factors (U [m, d], R [m, H]) of k−2, k−1
    t_ctx = t_solve = t_free = 0.0

    def inner(a, b) -> float:
        """⟨U_a R_a, U_b R_b⟩_F from the factors (m × m products; 0 when either edit is zero)."""
        if a is None or b is None:
            return 0.0
        return float(((a[0] @ b[0].T) * (a[1] @ b[1].T)).sum())

    def readout(out) -> float:
        """L of the answer from the stack's output (final norm applied) through the lens."""
        return float(forward.lens_answer_nll(arch.lens, out.last_hidden_state[:, -m_a - 1 : -1], answer, normed=True))

    sliding = sliding_window_of(model.config) is not None
    hooks = _Hooks(projections, m)
    with forward.hooks(hooks.specs()):
        for k, c in enumerate(cuts):
            t0 = time.perf_counter()
            if sliding:  # cached prefixes are not exact under sliding-window caches: plain forwards
                ids = torch.tensor([prompt_ids + trajectory_ids[: int(c)] + probe_ids], device=device)
                out = arch.base(input_ids=ids, use_cache=False)
            else:
                positions = torch.arange(P + c, P + c + m, device=device)[None]
                with forward.cache_prefix(cache, P + int(c)) as prefix:
                    out = arch.base(input_ids=probe, position_ids=positions, past_key_values=prefix, use_cache=True)
            target[k] = readout(out)
            v_ctx = [v[-m:].to(solve_dtype) for v in hooks.inputs if v is not None]  # L × [m, H]
            t_ctx += time.perf_counter() - t0

            t0 = time.perf_counter()
            solve_s = 0.0
            current: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * L

            def solve(i: int, v0: torch.Tensor, k=k, v_ctx=v_ctx, current=current):
                nonlocal solve_s
                ts = time.perf_counter()
                v0 = v0.to(solve_dtype)  # [m, H] from the network already edited below ℓ
                delta = v_ctx[i] - v0  # [m, H]
                if not bool(delta.abs().max() > 0):
                    solve_s += time.perf_counter() - ts
                    return None
                q = bases[i]
                v_perp = v0 - (v0 @ q) @ q.T  # [m, H] rows: (I − Π_P) V_0 columns
                u_, s_, vh_ = torch.linalg.svd(v_perp, full_matrices=False)
                tol = s_.max() * max(m, H) * torch.finfo(solve_dtype).eps
                r_ = int((s_ > tol).sum())
                pinv = (vh_[:r_].T / s_[:r_]) @ u_[:, :r_].T  # [H, m] = pinv(V_0⊥ as [H, m])
                R = pinv.T  # [m, H]
                U = delta @ weights[i].T  # [m, d] rows: W_o (v_c − v_0)
                current[i] = (U, R)
                if slot_of[k] >= 0:
                    left[slot_of[k], i] = U.T.cpu().numpy()
                    right[slot_of[k], i] = R.cpu().numpy()
                sv = torch.linalg.svdvals(torch.cat([v0, prompt_v[i]]))  # cond([V_0, V_P])
                condition[k, i] = float(sv.max() / sv.min()) if float(sv.min()) > 0 else float("inf")
                rank[k, i] = r_
                solve_s += time.perf_counter() - ts
                return (v0 @ R.T) @ U  # [m, d] = ΔW_o V_0 (probe columns)

            hooks.solve = solve
            try:
                if sliding:
                    out = arch.base(input_ids=torch.tensor([prompt_ids + probe_ids], device=device), use_cache=False)
                else:
                    with forward.cache_prefix(cache, P) as prefix:
                        positions = torch.arange(P, P + m, device=device)[None]
                        out = arch.base(input_ids=probe, position_ids=positions, past_key_values=prefix, use_cache=True)
            finally:
                hooks.solve = None
            construction[k] = readout(out)
            t_free += time.perf_counter() - t0 - solve_s
            ts = time.perf_counter()
            for i in range(L):
                path_grams[i, k, 0] = inner(current[i], current[i])
                for back, prev in enumerate(reversed(recent), start=1):
                    path_grams[i, k, back] = inner(current[i], prev[i])
            recent = [*recent[-1:], current]
            t_solve += solve_s + time.perf_counter() - ts
            if progress:
                progress(k + 1, K)
    worst = np.nanmax(condition) if np.isfinite(condition).any() else 0.0
    if worst > MAX_CONDITION:
        k, i = np.unravel_index(np.nanargmax(condition), condition.shape)
        raise ExactUpdateError(
            f"constraints [V_0, V_P] are numerically dependent at layer {i}, boundary {k} (condition {worst:.2e} > "
            f"{MAX_CONDITION:.0e}): the probe's attention output lies in the prompt's span; no stable exact update"
        )
    timings.update(with_context_s=t_ctx, no_context_s=t_free, solve_s=t_solve)
    return ExactUpdate(
        cuts[kept],
        left,
        right,
        condition[kept],
        rank[kept],
        target[kept],
        construction[kept],
        P,
        m,
        m_a,
        timings,
        path_cuts=cuts,
        path_target_loss=target,
        path_construction_loss=construction,
        path_grams=path_grams,
        path_condition=condition,
        path_rank=rank,
        stored=kept,
        store_bytes=int(store_bytes),
    )


# ---------------------------------------------------------------------------- explicit edits
@contextmanager
def edited_weights(model: nn.Module, update: ExactUpdate, k: int, layers: list[int] | None = None):
    """The model with W_o^ℓ += ΔW_o^ℓ(c_k) written into its weights (``layers``: default all);
    the original weights are restored from a copy on exit."""
    projections = output_projections(model)
    layers = list(range(update.n_layers)) if layers is None else list(layers)
    saved = {i: projections[i].weight.detach().clone() for i in layers}
    try:
        with torch.no_grad():
            for i in layers:
                w = projections[i].weight
                delta = torch.from_numpy(update.dense(k, i)).to(w.device)
                w.copy_((w.double() + delta).to(w.dtype))
        yield model
    finally:
        with torch.no_grad():
            for i, w in saved.items():
                projections[i].weight.copy_(w)


def edited_losses(
    model: nn.Module,
    update: ExactUpdate,
    prompt_ids: list[int],
    probe_ids: list[int],
    layers_per_boundary: list[list[int] | None] | None = None,
) -> np.ndarray:
    """L(θ + ΔW_c) ``[K]`` by a plain forward of prompt + probe with the edit written into W_o
    (row k uses the layers ``layers_per_boundary[k]``, default all)."""
    out = np.zeros(update.K)
    for k in range(update.K):
        layers = layers_per_boundary[k] if layers_per_boundary is not None else None
        with edited_weights(model, update, k, layers):
            out[k] = forward.teacher_forced_loss(model, list(prompt_ids) + list(probe_ids), update.m_a)
    return out
