"""The analysis engine (docs/architecture.md §4): the answer's loss at every cut point of a trajectory
in about the time of one forward pass over the probe tokens.

Notation: P prompt tokens, trajectory t of n tokens, probe = template (m_t tokens) + answer
(m_a tokens), m = m_t + m_a. Cut point c in 0..n means "the model has read t[:c]".

* ``analyze`` (engine): encode prompt + t once into a KV cache; then score probes for many
  cut points at once. A chunk of b probes is packed into one query of b*m tokens whose 4-D
  mask lets probe j see cached keys [0, P + c_j) and its own earlier probe tokens only;
  position ids start at P + c_j. The cache is cropped back after each chunk and reused, and
  the LM head runs only where an answer token is predicted.
* ``analyze_naive`` (reference, as in the RaML notebook): one plain prompt per cut point.

Both return a ``ProbeResult``; tests assert they agree to 1e-4 nats in float32.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from backend.engine import forward, heap
from backend.engine.architecture import Architecture, locate, sliding_window_of
from backend.engine.lens import Lens
from backend.errors import InputError, OutOfMemoryError

Progress = Callable[[int, int], None]  # (done, total) cut points


@dataclass
class ProbeRequest:
    """Token-level inputs of one analysis. All ids are plain ``int`` lists."""

    prompt_ids: list[int]  # [P] chat prompt (ends with <think> for thinking formats)
    trajectory_ids: list[int]  # [n] the thinking text
    template_ids: list[int]  # [m_t >= 1] e.g. "\n\n**Final Answer**\n\\boxed{"
    answer_ids: list[int]  # [m_a >= 1] reference answer
    cuts: list[int] | None = None  # cut points to score; default every token 0..n
    boundary_cuts: list[int] = field(default_factory=list)  # cuts that also get lens/hidden/proxy
    proxy_layers: list[int] = field(default_factory=list)
    top_k: int = 5

    @property
    def all_cuts(self) -> np.ndarray:
        cuts = range(len(self.trajectory_ids) + 1) if self.cuts is None else self.cuts
        return np.array(sorted(set(int(c) for c in cuts) | set(self.boundary_cuts)), dtype=np.int64)

    @property
    def probe_ids(self) -> list[int]:
        return list(self.template_ids) + list(self.answer_ids)


@dataclass
class ProbeResult:
    """Per cut point ``[C]`` and per boundary ``[K]`` readouts; shapes in the comments (docs/architecture.md)."""

    cuts: np.ndarray  # [C] int64, sorted
    answer_nll: np.ndarray  # [C] float32: L̂(c), mean NLL of the answer tokens (nats)
    answer_token_nll: np.ndarray  # [C, m_a] float32
    p_first: np.ndarray  # [C] p(first answer token) at the probe position
    rank_first: np.ndarray  # [C] int32, 1 = the model's top token
    entropy: np.ndarray  # [C] entropy (nats) of the next-token distribution at the probe position
    boundary_cuts: np.ndarray  # [K] int64
    lens_nll: np.ndarray  # [K, L] answer NLL read through final norm + LM head after each layer
    lens_p_first: np.ndarray  # [K, L]
    lens_top_ids: np.ndarray  # [K, L, k] int64 top tokens at the probe position per layer
    lens_top_probs: np.ndarray  # [K, L, k]
    hidden: np.ndarray  # [K, L, d] residual stream after each layer at the probe position
    proxy_input: dict[int, np.ndarray]  # layer -> [K, d] MLP input z_c at the probe position
    proxy_preact: dict[int, np.ndarray]  # layer -> [K, 2*d_ff] W z_c (gate and up outputs, concatenated)
    timings: dict[str, float] = field(default_factory=dict)


class _Capture:
    """Residual-stream and MLP activations gathered at chosen positions by forward hooks.

    ``specs()`` are the hooks to attach (``with forward.hooks(cap.specs()):``). Positions index
    the query tokens of the current forward (batch row 0). Hooks do nothing while positions are
    unset (e.g. during the trajectory prefill).
    """

    def __init__(self, arch: Architecture, proxy_layers: list[int], want_final: bool):
        self.arch, self.proxy_layers, self.want_final = arch, proxy_layers, want_final
        self.final_pos: torch.Tensor | None = None  # answer-predicting positions of all cuts
        self.lens_pos: torch.Tensor | None = None  # answer-predicting positions of boundary cuts
        self.probe_pos: torch.Tensor | None = None  # probe position of boundary cuts
        self.reset()

    def reset(self) -> None:
        L = self.arch.n_layers
        self.final: torch.Tensor | None = None
        self.layers: list[torch.Tensor | None] = [None] * L
        self.z: dict[int, torch.Tensor] = {}
        self.pre: dict[int, list[torch.Tensor]] = {i: [] for i in self.proxy_layers}

    def specs(self) -> list[forward.Hook]:
        last = self.arch.n_layers - 1
        out = [forward.on_output(layer, self._layer_hook(i, i == last)) for i, layer in enumerate(self.arch.layers)]
        for i in self.proxy_layers:
            projections = self.arch.mlp_input_projections(i)
            out.append(forward.on_input(projections[0], self._z_hook(i)))
            out += [forward.on_output(proj, self._pre_hook(i)) for proj in projections]
        return out

    def set_positions(self, final_pos, lens_pos, probe_pos) -> None:
        self.final_pos, self.lens_pos, self.probe_pos = final_pos, lens_pos, probe_pos
        self.reset()

    def _layer_hook(self, index: int, is_last: bool):
        def hook(_module, _inputs, output):
            hs = output[0] if isinstance(output, tuple) else output  # [1, T, d]
            if is_last and self.want_final and self.final_pos is not None:
                self.final = hs[0, self.final_pos]
            if self.lens_pos is not None and len(self.lens_pos):
                self.layers[index] = hs[0, self.lens_pos]

        return hook

    def _z_hook(self, index: int):
        def hook(_module, inputs):
            if self.probe_pos is not None and len(self.probe_pos):
                self.z[index] = inputs[0][0, self.probe_pos].float()

        return hook

    def _pre_hook(self, index: int):
        def hook(_module, _inputs, output):
            if self.probe_pos is not None and len(self.probe_pos):
                self.pre[index].append(output[0, self.probe_pos].float())

        return hook


READOUT_BYTES = 256 << 20  # logits in flight per LM-head batch (bounded memory, issue 15 item 1)
_LOGIT_COPIES = 4  # logits, their transform, log-softmax, exp: float32 tensors alive at once per row


def readout_rows(m_a: int, vocab: int, budget_bytes: int = READOUT_BYTES) -> int:
    """Rows ``[m_a, V]`` per LM-head batch so that its logits and their copies fit ``budget_bytes``."""
    return max(1, budget_bytes // (m_a * vocab * 4 * _LOGIT_COPIES))


class _RowReadout:
    """Unembeds rows of states ``[m_a, d]`` through the lens in batches sized by bytes.

    Rows are queued as they come (chunk by chunk) and read out as soon as a batch is full, so
    the states waiting and the logits in flight both stay under the byte budget whatever the
    answer length; only the small readouts (NLL per answer token, first-token statistics) are kept.
    """

    def __init__(self, arch: Architecture, batch_rows: int, read: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]):
        self.arch, self.batch_rows, self.read = arch, batch_rows, read
        self.pending: list[torch.Tensor] = []
        self.n_pending = 0
        self.parts: list[tuple[torch.Tensor, ...]] = []

    def add(self, hidden: torch.Tensor) -> None:
        self.pending.append(hidden)
        self.n_pending += hidden.shape[0]
        if self.n_pending >= self.batch_rows:
            self._flush(keep_partial=True)

    def _flush(self, keep_partial: bool) -> None:
        if not self.pending:
            return
        rows = torch.cat(self.pending) if len(self.pending) > 1 else self.pending[0]
        n_full = (rows.shape[0] // self.batch_rows) * self.batch_rows if keep_partial else rows.shape[0]
        for batch in torch.split(rows[:n_full], self.batch_rows):
            logits = self.arch.unembed(batch)  # [rows, m_a, V] through the lens
            out = self.read(logits)
            del logits
            self.parts.append(tuple(t.cpu() for t in out))
            heap.trim()  # the batch's logits freed: their pages back to the system (backend.engine.heap)
        rest = rows[n_full:]
        self.pending, self.n_pending = ([rest.clone()] if len(rest) else []), len(rest)

    def results(self) -> list[torch.Tensor]:
        self._flush(keep_partial=False)
        return [torch.cat(ts) for ts in zip(*self.parts)]


class _Accumulator:
    """Collects chunk outputs in cut order and assembles a ``ProbeResult``.

    The engine hands over residual-stream states, not logits: unembedding (final norm + LM
    head + logit transform, through ``arch.lens``) runs in batches of as many rows as fit the
    byte budget, because one small matmul per chunk and layer would stream the whole LM head
    from memory each time, and one batch of fixed row count grows with the answer length.
    """

    def __init__(self, arch: Architecture, req: ProbeRequest, answer: torch.Tensor, readout_bytes: int):
        self.arch, self.req, self.answer = arch, req, answer
        weight = getattr(arch.lm_head, "weight", None)
        vocab = int(weight.shape[0]) if isinstance(weight, torch.Tensor) else 1
        rows = readout_rows(len(req.answer_ids), vocab, readout_bytes)
        self.final_logits: list[tuple[torch.Tensor, ...]] = []  # naive path: readouts per cut
        # engine path: [b, m_a, d] per chunk; the lens grid: [nb * L, m_a, d] per chunk
        self.final = _RowReadout(arch, rows, lambda logits: forward.answer_readout(logits, answer))
        self.lens = _RowReadout(arch, rows, lambda logits: forward.lens_readout(logits, answer, req.top_k))
        self.hidden: list[torch.Tensor] = []  # [nb, L, d] at the probe position per chunk
        self.z: dict[int, list[torch.Tensor]] = {i: [] for i in req.proxy_layers}
        self.pre: dict[int, list[torch.Tensor]] = {i: [] for i in req.proxy_layers}

    def add_final_logits(self, logits: torch.Tensor) -> None:
        self.final_logits.append(tuple(t.cpu() for t in forward.answer_readout(logits, self.answer)))

    def add_final_hidden(self, hidden: torch.Tensor) -> None:
        self.final.add(hidden)

    def add_boundaries(self, cap: _Capture, n_boundary: int) -> None:
        if n_boundary == 0:
            return
        m_a = len(self.req.answer_ids)
        layers = [hs for hs in cap.layers if hs is not None]
        assert len(layers) == len(cap.layers), "every layer's hook fired"
        lens_h = torch.stack([hs.view(n_boundary, m_a, -1) for hs in layers], 1)  # [nb, L, m_a, d]
        self.hidden.append(lens_h[:, :, 0].float().cpu())
        if self.arch.lens.kind != "logit":  # a tuned lens: each layer's translator before the readout
            lens_h = torch.stack([self.arch.lens.translate(lens_h[:, i], i) for i in range(len(layers))], 1)
        self.lens.add(lens_h.reshape(n_boundary * len(layers), m_a, -1))
        for i in self.req.proxy_layers:
            self.z[i].append(cap.z[i].cpu())
            self.pre[i].append(torch.cat(cap.pre[i], -1).cpu())

    def result(self, cuts: np.ndarray, boundary: np.ndarray, timings: dict) -> ProbeResult:
        t0 = time.perf_counter()
        if self.final_logits:
            token_nll, p_first, rank, entropy = [torch.cat([r[i] for r in self.final_logits]) for i in range(4)]
        else:
            token_nll, p_first, rank, entropy = self.final.results()
        L, k = self.arch.n_layers, self.req.top_k
        hidden = torch.cat(self.hidden)  # [K, L, d]
        K = hidden.shape[0]
        lens_nll, lens_p, top_ids, top_probs = self.lens.results()
        timings["readout_s"] = time.perf_counter() - t0
        f32 = lambda t: t.float().numpy()  # noqa: E731
        return ProbeResult(
            cuts=cuts,
            answer_nll=f32(token_nll.mean(-1)),
            answer_token_nll=f32(token_nll),
            p_first=f32(p_first),
            rank_first=rank.numpy().astype(np.int32),
            entropy=f32(entropy),
            boundary_cuts=boundary,
            lens_nll=f32(lens_nll.mean(-1)).reshape(K, L),
            lens_p_first=f32(lens_p).reshape(K, L),
            lens_top_ids=top_ids.numpy().astype(np.int64).reshape(K, L, k),
            lens_top_probs=f32(top_probs).reshape(K, L, k),
            hidden=f32(hidden),
            proxy_input={i: torch.cat(v).numpy().astype(np.float32) for i, v in self.z.items()},
            proxy_preact={i: torch.cat(v).numpy().astype(np.float32) for i, v in self.pre.items()},
            timings=timings,
        )


def _with_lens(arch: Architecture, lens: Lens | None) -> Architecture:
    if lens is not None:
        arch.lens = lens
    return arch


def _validate(req: ProbeRequest, arch: Architecture) -> None:
    if not req.template_ids:
        raise ValueError("template tokenizes to nothing: the probe needs at least one template token")
    if not req.answer_ids:
        raise ValueError("answer tokenizes to nothing")
    if not req.boundary_cuts:
        raise ValueError("boundary_cuts is empty: the lens/hidden/proxy readouts need at least one (e.g. cut 0)")
    n = len(req.trajectory_ids)
    cuts = req.all_cuts
    if len(cuts) and (cuts[0] < 0 or cuts[-1] > n):
        raise ValueError(f"cut points must lie in 0..{n}")
    for i in req.proxy_layers:
        if not 0 <= i < arch.n_layers or not arch.mlp_input_projections(i):
            raise ValueError(f"layer {i} has no recognised MLP input projection for the proxy space")


def _check_attention_window(model: torch.nn.Module, req: ProbeRequest) -> None:
    """The engine's 4-D mask gives full causal attention; a sliding window shorter than the
    sequence would be ignored (wrong losses), so that case is refused by name."""
    window = sliding_window_of(model.config)
    total = len(req.prompt_ids) + len(req.trajectory_ids) + len(req.probe_ids)
    if window is not None and total > window:
        raise InputError(
            f"the model attends through a sliding window of {window} tokens, and prompt + trajectory + probe "
            f"are {total}: the single-pass engine reproduces full attention only; use a trajectory under "
            f"{max(window - total + len(req.trajectory_ids), 0)} tokens"
        )


class _ContextWindow:
    """Shows the cached trajectory to one chunk only up to the keys it needs.

    Probes of a chunk with largest cut c_max attend to at most P + c_max cached keys, so the
    cache layers are set to views of the first P + c_max positions before each forward (no
    copy, ``forward.PrefixCache``; read-only, so the chunk's keys are not kept past their layer)
    and restored to the full prefill afterwards. Falls back to cropping for cache classes
    without per-layer ``keys``/``values``.
    """

    def __init__(self, cache, n_ctx: int):
        self.cache, self.n_ctx = cache, n_ctx
        self.view = forward.PrefixCache(cache, read_only=True) if forward.has_layer_views(cache) else None

    def limit_to(self, length: int) -> int:
        """Expose the first ``length`` cached positions; returns how many keys are visible."""
        if self.view is None:
            self.restore()
            return self.n_ctx
        self.view.limit_to(length)
        return length

    def restore(self) -> None:
        """Back to exactly the prefill (drops whatever a forward appended)."""
        if self.view is not None:
            self.view.restore()
            return
        for layer in getattr(self.cache, "layers", []):
            current = layer.get_seq_length()
            if current > self.n_ctx:
                layer.crop(self.n_ctx - current)


def default_chunk_tokens(device: torch.device) -> int:
    """Probe tokens per forward: fixed on CPU (measured best), from free memory on CUDA."""
    if device.type != "cuda":
        return 384
    free, _total = torch.cuda.mem_get_info(device)
    return int(max(512, min(16384, free // (8 << 20))))


def chunk_mask(P: int, chunk: list[int], visible: int, probe_block: torch.Tensor) -> torch.Tensor:
    """The additive attention mask ``[b*m, visible + b*m]`` of one chunk of probes (cut points
    ``chunk``, sorted): probe j's m rows see the cached keys [0, P + c_j) and, causally, its own
    m tokens (``probe_block``: 0 on and below the diagonal, the dtype's min above), nothing else.

    Written in place, a probe's rows at a time, since at long contexts the boolean version
    (compare, repeat, block-diagonal, concatenate, fill) cost a third of the chunk's attention.
    A float mask works with eager and SDPA attention alike (a boolean one measured no faster).
    """
    m, b = probe_block.shape[0], len(chunk)
    common = P + chunk[0]  # every probe of the chunk sees this much
    mask = torch.empty(b * m, visible + b * m, dtype=probe_block.dtype, device=probe_block.device)
    mask[:, :common] = 0
    mask[:, common:] = torch.finfo(mask.dtype).min
    for j, c in enumerate(chunk):
        rows = mask[j * m : (j + 1) * m]
        rows[:, common : P + c] = 0
        rows[:, visible + j * m : visible + (j + 1) * m] = probe_block
    return mask


@torch.inference_mode()
def analyze(
    model: torch.nn.Module,
    req: ProbeRequest,
    *,
    chunk_tokens: int | None = None,
    readout_bytes: int = READOUT_BYTES,
    progress: Progress | None = None,
    lens: Lens | None = None,
) -> ProbeResult:
    """Single-pass engine: trajectory encoded once, probes scored in chunks over its KV cache.

    ``readout_bytes`` bounds the logits in flight in the LM-head readout (rows x m_a x V x 4 bytes).
    ``lens`` reads the lens grid (default the logit lens; a ``TunedLens`` translates each layer
    first); L̂ and the first-token statistics always come from the model's own readout.
    """
    arch = _with_lens(locate(model), lens)
    _validate(req, arch)
    _check_attention_window(model, req)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    cuts, boundary = req.all_cuts, np.array(sorted(set(req.boundary_cuts)), dtype=np.int64)
    is_boundary = np.isin(cuts, boundary)
    P, m_t, m_a = len(req.prompt_ids), len(req.template_ids), len(req.answer_ids)
    m = m_t + m_a
    probe = torch.tensor(req.probe_ids, device=device)
    answer = torch.tensor(req.answer_ids, device=device)
    context = torch.tensor([req.prompt_ids + req.trajectory_ids], device=device)
    n_ctx = context.shape[1]
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    prefill = arch.base(input_ids=context, use_cache=True)
    cache = prefill.past_key_values
    window = _ContextWindow(cache, n_ctx)
    timings["prefill_s"] = time.perf_counter() - t0

    acc = _Accumulator(arch, req, answer, readout_bytes)
    per_chunk = max(1, (chunk_tokens or default_chunk_tokens(device)) // m)
    arange_m = torch.arange(m, device=device)
    probe_block = torch.full((m, m), torch.finfo(dtype).min, dtype=dtype, device=device).triu_(1)
    answer_offsets = torch.arange(m_t - 1, m - 1, device=device)  # positions predicting answer tokens
    t0 = time.perf_counter()
    cap = _Capture(arch, req.proxy_layers, want_final=True)
    with forward.hooks(cap.specs()):
        start = 0
        while start < len(cuts):
            chunk = torch.from_numpy(cuts[start : start + per_chunk]).to(device)
            chunk_boundary = torch.from_numpy(np.flatnonzero(is_boundary[start : start + per_chunk])).to(device)
            b = len(chunk)
            visible = window.limit_to(P + int(chunk.max()))
            mask = chunk_mask(P, cuts[start : start + b].tolist(), visible, probe_block)  # [b*m, visible + b*m]
            positions = (P + chunk[:, None] + arange_m[None, :]).reshape(1, -1)
            answer_pos = torch.arange(b, device=device)[:, None] * m + answer_offsets[None, :]  # [b, m_a]
            cap.set_positions(
                answer_pos.reshape(-1), answer_pos[chunk_boundary].reshape(-1), answer_pos[chunk_boundary, 0]
            )
            try:
                arch.base(
                    input_ids=probe.repeat(b)[None],
                    position_ids=positions,
                    attention_mask=mask[None, None],
                    past_key_values=cache,
                    use_cache=True,
                )
            except (RuntimeError, MemoryError) as exc:
                window.restore()
                if not forward.is_out_of_memory(exc):
                    raise
                if per_chunk == 1:
                    raise OutOfMemoryError(
                        f"out of memory on {device.type} even with one probe per forward "
                        f"({n_ctx} context tokens): use --cuts stride:K, a shorter trajectory, or a smaller model"
                    ) from None
                per_chunk = max(1, per_chunk // 2)  # retry this chunk smaller; results are identical
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            window.restore()
            assert cap.final is not None  # want_final=True for engine chunks
            acc.add_final_hidden(cap.final.view(b, m_a, -1))
            acc.add_boundaries(cap, len(chunk_boundary))
            heap.trim()  # the chunk's mask, attention and cache views freed
            start += b
            if progress:
                progress(start, len(cuts))
    timings["probe_s"] = time.perf_counter() - t0
    timings["chunk_probes"] = per_chunk
    return acc.result(cuts, boundary, timings)


@torch.inference_mode()
def analyze_naive(
    model: torch.nn.Module, req: ProbeRequest, *, progress: Progress | None = None, lens: Lens | None = None
) -> ProbeResult:
    """Reference method: one plain prompt ``prompt + t[:c] + template + answer`` per cut point."""
    arch = _with_lens(locate(model), lens)
    _validate(req, arch)
    device = next(model.parameters()).device
    cuts, boundary = req.all_cuts, np.array(sorted(set(req.boundary_cuts)), dtype=np.int64)
    P, m_t, m_a = len(req.prompt_ids), len(req.template_ids), len(req.answer_ids)
    m = m_t + m_a
    answer = torch.tensor(req.answer_ids, device=device)
    acc = _Accumulator(arch, req, answer, READOUT_BYTES)
    t0 = time.perf_counter()
    cap = _Capture(arch, req.proxy_layers, want_final=False)
    with forward.hooks(cap.specs()):
        for i, c in enumerate(cuts):
            ids = torch.tensor([req.prompt_ids + req.trajectory_ids[:c] + req.probe_ids], device=device)
            answer_pos = torch.arange(P + c + m_t - 1, P + c + m - 1, device=device)
            if c in boundary:
                cap.set_positions(None, answer_pos, answer_pos[:1])
            else:
                cap.set_positions(None, None, None)
            logits = model(input_ids=ids, logits_to_keep=m).logits[0, m_t - 1 : m - 1]  # [m_a, V]
            acc.add_final_logits(logits[None].float())
            acc.add_boundaries(cap, 1 if c in boundary else 0)
            if progress:
                progress(i + 1, len(cuts))
    return acc.result(cuts, boundary, {"naive_s": time.perf_counter() - t0})


@torch.inference_mode()
def forward_seconds(model: torch.nn.Module, ids: list[int]) -> float:
    """Time of one plain forward pass over ``ids`` (the benchmark's unit of cost)."""
    device = next(model.parameters()).device
    t0 = time.perf_counter()
    model(input_ids=torch.tensor([ids], device=device), logits_to_keep=1)
    return time.perf_counter() - t0
