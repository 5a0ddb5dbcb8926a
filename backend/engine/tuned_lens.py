"""The tuned lens (Belrose et al. 2023, arXiv 2303.08112; AlignmentResearch/tuned-lens): one learned
affine translator per layer in front of the logit lens (docs/architecture.md §4, docs/lens.md).

Layout (the reference's, so a lens trained with ``tuned-lens`` loads here and one trained here loads
there): translator ``i`` (``{i}.weight [d, d]``, ``{i}.bias [d]``) acts on the model's
``hidden_states[i]`` (0 = the embeddings, ``i`` = the output of decoder layer ``i − 1``) for
i = 0..L−1; the last layer's output has no translator (the model's own readout). The translator is
residual, ``h + W h + b``, and starts at W = 0, b = 0: at init the tuned lens *is* the logit lens.
This module's layer index ℓ is a decoder layer (its output), so layer ℓ < L − 1 uses translator
ℓ + 1 and layer L − 1 none.

Training (``train``) follows the reference's objective and optimiser: for every layer, the KL
divergence from the final layer's next-token distribution to the lens's at the same position
(mean over positions), back-propagated one layer at a time; Adam (lr 1e-3, the reference's
``--optimizer adam``) by default, or the reference's default SGD with Nesterov momentum 0.9, lr
(1 − 0.9) · lr_scale; weight decay 1e-3, linear decay to zero, gradient norm clipped to 1. The
translator of the embeddings (index 0) stays the identity: the lens grid shows decoder layers only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch
from torch import nn

from backend.engine.architecture import Architecture
from backend.engine.lens import LogitLens

Progress = Callable[[int, int], None]  # (steps done, total); raising from it stops training

MOMENTUM = 0.9
WEIGHT_DECAY = 1e-3
CLIP_NORM = 1.0


class TunedLens:
    """Translators ``[L, d, d]`` + ``[L, d]`` (float32) in front of the model's logit lens."""

    kind = "tuned"

    def __init__(self, base: LogitLens, n_layers: int, d: int, *, bias: bool = True):
        self.base, self.n_layers, self.d, self.bias = base, n_layers, d, bias
        linears = [nn.Linear(d, d, bias=bias) for _ in range(n_layers)]
        self.translators = nn.ModuleList(linears)
        for t in linears:
            nn.init.zeros_(t.weight)
            if bias:
                nn.init.zeros_(t.bias)

    @classmethod
    def identity(cls, arch: Architecture) -> TunedLens:
        """The untrained lens of a model: every translator zero (= the logit lens)."""
        base = arch.lens if isinstance(arch.lens, LogitLens) else LogitLens(arch.final_norm, arch.lm_head)
        weight = getattr(arch.lm_head, "weight", None)
        d = int(weight.shape[1]) if isinstance(weight, torch.Tensor) else int(arch.base.config.hidden_size)  # type: ignore[union-attr, arg-type]
        return cls(base, arch.n_layers, d)

    # ------------------------------------------------------------------ the Lens protocol
    def translate(self, hidden: torch.Tensor, layer: int | None) -> torch.Tensor:
        """The output of decoder layer ``layer`` ``[..., d]`` moved to the last layer's basis (the last
        layer and ``None``, i.e. the model's own final state, pass through unchanged)."""
        if layer is None or layer >= self.n_layers - 1:
            return hidden
        translator = cast(nn.Linear, self.translators[layer + 1])
        x = hidden.to(translator.weight.dtype)
        return (x + translator(x)).to(hidden.dtype)

    def __call__(self, hidden: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        return self.base.head(self.base.final_norm(self.translate(hidden, layer)))

    def head(self, normed: torch.Tensor) -> torch.Tensor:
        return self.base.head(normed)

    # ------------------------------------------------------------------ tensors in the reference layout
    def state_arrays(self) -> dict[str, np.ndarray]:
        """``{"{i}.weight": [d, d], "{i}.bias": [d]}`` float32 (tuned-lens' ``layer_translators`` keys)."""
        return {name: t.detach().cpu().numpy().copy() for name, t in self.translators.state_dict().items()}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> TunedLens:
        """Set the translators from ``state_arrays``' layout; ValueError naming a missing or misshapen key."""
        expected = self.translators.state_dict()
        missing = sorted(set(expected) - set(arrays), key=_key_order)
        extra = sorted(set(arrays) - set(expected), key=_key_order)
        if missing or extra:
            what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
            raise ValueError(f"translators for {self.n_layers} layers of width {self.d}: {what}")
        tensors = {}
        for name, ref in expected.items():
            value = np.asarray(arrays[name])
            if tuple(value.shape) != tuple(ref.shape):
                raise ValueError(f"{name} has shape {tuple(value.shape)}, the model needs {tuple(ref.shape)}")
            tensors[name] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        self.translators.load_state_dict(tensors)
        return self

    def to(self, device: torch.device) -> TunedLens:
        self.translators.to(device)
        return self


def _key_order(name: str) -> tuple[int, str]:
    head, _, tail = name.partition(".")
    return (int(head) if head.isdigit() else -1, tail)


# ---------------------------------------------------------------------------- objective


def kl_to_final(final_log_probs: torch.Tensor, lens_logits: torch.Tensor) -> torch.Tensor:
    """Mean over positions of KL(p_final ‖ p_lens) (nats): ``[N, V]`` log-probs, ``[N, V]`` logits."""
    from backend.engine import forward

    lens_log_probs = forward.log_probs(lens_logits)
    return (final_log_probs.exp() * (final_log_probs - lens_log_probs)).sum(-1).mean()


def _windows(sequences: Sequence[Sequence[int]], length: int) -> list[list[int]]:
    """Texts packed end to end and cut into windows of ``length`` tokens (the last one may be shorter)."""
    flat = [int(t) for seq in sequences for t in seq]
    return [flat[i : i + length] for i in range(0, len(flat), length) if len(flat[i : i + length]) > 1]


@dataclass(frozen=True)
class TrainSettings:
    """The training budget and the optimiser settings (tuned-lens ``train``'s, except the budget —
    they use 250 steps of 2^18 tokens on a GPU — and the optimiser, Adam by default)."""

    steps: int = 48
    window: int = 128  # tokens per packed window
    batch_windows: int = 2  # windows per optimiser step
    lr_scale: float = 1.0  # lr = lr_scale * (1 - momentum), as in tuned-lens
    seed: int = 0
    # "adam" (lr ``adam_lr``; tuned-lens' ``--optimizer adam``) or "sgd" (the reference's default:
    # Nesterov, lr 0.1). Adam is the default here: with the few steps a CPU budget allows, SGD from
    # the identity barely moves (SmolLM2, 1024 tokens: held-out KL 12.5 -> 8.6 nats with SGD's 5
    # steps, -> 5.6 with Adam's 9; docs/lens.md).
    optimizer: str = "adam"
    adam_lr: float = 1e-3


@dataclass
class TrainReport:
    steps: int
    tokens_seen: int
    train_kl: list[float] = field(default_factory=list)  # mean KL over the trained layers, per step


@torch.no_grad()
def _layer_states(arch: Architecture, model: nn.Module, ids: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Decoder-layer outputs ``L x [B, T, d]`` (before the final norm, as the engine's hooks see them:
    ``output_hidden_states``' last entry is already normed) and the final log-probs ``[B, T, V]``."""
    from backend.engine import forward

    states: list[torch.Tensor] = [None] * arch.n_layers  # type: ignore[list-item]

    def keep(index: int):
        def hook(_module, _inputs, output):
            states[index] = (output[0] if isinstance(output, tuple) else output).detach()

        return hook

    with forward.hooks([forward.on_output(layer, keep(i)) for i, layer in enumerate(arch.layers)]):
        out = model(input_ids=ids)
    return states, forward.log_probs(out.logits)


class _FrozenModel:
    """The model's parameters out of autograd while the translators train (restored on exit)."""

    def __init__(self, model: nn.Module):
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __enter__(self):
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc):
        for p in self.params:
            p.requires_grad_(True)


def train(
    model: nn.Module,
    arch: Architecture,
    sequences: Sequence[Sequence[int]],
    settings: TrainSettings = TrainSettings(),
    *,
    lens: TunedLens | None = None,
    progress: Progress | None = None,
) -> tuple[TunedLens, TrainReport]:
    """Train a tuned lens on token ``sequences`` (packed into windows, cycled for ``settings.steps``)."""
    windows = _windows(sequences, settings.window)
    if not windows:
        raise ValueError("no training text: need at least two tokens")
    device = next(model.parameters()).device
    lens = (lens or TunedLens.identity(arch)).to(device)
    trained = [t for i, t in enumerate(lens.translators) if 1 <= i < lens.n_layers]  # not the embeddings'
    params = [p for t in trained for p in t.parameters()]
    if settings.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=settings.adam_lr, weight_decay=WEIGHT_DECAY)
    else:
        opt = torch.optim.SGD(
            params, lr=settings.lr_scale * (1 - MOMENTUM), momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY
        )
    total = max(1, settings.steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / total))
    order = np.random.default_rng(settings.seed).permutation(len(windows))
    report = TrainReport(steps=0, tokens_seen=0)
    cursor = 0
    if progress:
        progress(0, total)
    with _FrozenModel(model):
        for step in range(total):
            batch = []
            for _ in range(settings.batch_windows):
                batch.append(windows[order[cursor % len(windows)]])
                cursor += 1
            losses = []
            opt.zero_grad(set_to_none=False)
            for window in batch:  # one window per forward: windows may differ in length
                ids = torch.tensor([window], device=device)
                states, target = _layer_states(arch, model, ids)
                flat_target = target.reshape(-1, target.shape[-1])
                for layer in range(arch.n_layers - 1):
                    logits = lens(states[layer], layer).reshape(flat_target.shape)
                    loss = kl_to_final(flat_target, logits) / len(batch)
                    loss.backward()
                    losses.append(float(loss.detach()) * len(batch))
                report.tokens_seen += len(window)
            torch.nn.utils.clip_grad_norm_(params, CLIP_NORM)
            opt.step()
            schedule.step()
            report.steps = step + 1
            report.train_kl.append(float(np.mean(losses)))
            if progress:
                progress(step + 1, total)
    return lens, report


# ---------------------------------------------------------------------------- quality


@torch.no_grad()
def layer_kl(
    model: nn.Module, arch: Architecture, lens, sequences: Sequence[Sequence[int]], window: int = 128
) -> np.ndarray:
    """Per-layer KL(p_final ‖ p_lens) ``[L]`` (nats), averaged over every position of ``sequences``
    (the reference's evaluation: ``tuned-lens eval``'s ``kl`` per layer). The last layer is 0 for both lenses."""
    device = next(model.parameters()).device
    total = np.zeros(arch.n_layers)
    count = 0
    for w in _windows(sequences, window):
        ids = torch.tensor([w], device=device)
        states, target = _layer_states(arch, model, ids)
        flat = target.reshape(-1, target.shape[-1])
        for layer in range(arch.n_layers):
            logits = lens(states[layer], layer).reshape(flat.shape)
            total[layer] += float(kl_to_final(flat, logits)) * flat.shape[0]
        count += flat.shape[0]
    return total / max(count, 1)


@torch.no_grad()
def answer_lens_by_layer(
    model: nn.Module, arch: Architecture, lens, examples: Sequence[tuple[list[int], list[int]]]
) -> np.ndarray:
    """Per-layer answer NLL ``[L]`` (nats) through ``lens``: for each (context ids, answer ids) the mean
    NLL of the answer tokens read out after every layer, averaged over the examples (the lens grid's
    number at cut 0)."""
    from backend.engine import forward

    device = next(model.parameters()).device
    out = np.zeros(arch.n_layers)
    for context, answer in examples:
        ids = torch.tensor([list(context) + list(answer)], device=device)
        states, _ = _layer_states(arch, model, ids)
        m_a = len(answer)
        for layer in range(arch.n_layers):
            h = states[layer][:, -m_a - 1 : -1]  # [1, m_a, d]: the positions predicting the answer
            out[layer] += float(forward.answer_nll(lens(h, layer), answer)[0])
    return out / max(len(examples), 1)


# ---------------------------------------------------------------------------- the reference's config


def unembed_hash(lm_head: nn.Module) -> str:
    """tuned-lens' ``Unembed.unembedding_hash``: sha256 of ``np.array_str(W, precision=1)`` of the LM head."""
    import hashlib

    weight = cast(torch.Tensor, lm_head.weight).detach().cpu().float().numpy()
    return hashlib.sha256(np.array_str(weight, precision=1).encode()).hexdigest()


def reference_config(loaded, lens: TunedLens) -> dict:
    """tuned-lens' ``TunedLensConfig`` fields for ``lens`` (its loader reads these and ignores the rest)."""
    from backend.engine.architecture import locate

    return {
        "base_model_name_or_path": str(getattr(loaded.model.config, "name_or_path", "") or loaded.name),
        "d_model": lens.d,
        "num_hidden_layers": lens.n_layers,
        "bias": lens.bias,
        "base_model_revision": None,
        "unembed_hash": unembed_hash(locate(loaded.model).lm_head),
        "lens_type": "linear_tuned_lens",
    }


def from_arrays(arch: Architecture, arrays: dict[str, np.ndarray], config: dict, where: str) -> TunedLens:
    """A ``TunedLens`` for ``arch`` from stored arrays and config; ValueError (one line naming ``where``)
    when it was made for a model of another shape or with another lens type."""
    lens = TunedLens.identity(arch)
    lens_type = config.get("lens_type", "linear_tuned_lens")
    if lens_type != "linear_tuned_lens":
        raise ValueError(f"{where}: lens type {lens_type!r} is not a linear tuned lens")
    shape = (config.get("num_hidden_layers"), config.get("d_model"))
    if shape != (lens.n_layers, lens.d):
        raise ValueError(
            f"{where}: made for {shape[0]} layers of width {shape[1]}, this model has {lens.n_layers} of width {lens.d}"
        )
    if config.get("bias") is False:  # a weight-only lens: zero biases
        arrays = {**arrays, **{f"{i}.bias": np.zeros(lens.d, np.float32) for i in range(lens.n_layers)}}
    try:
        lens.load_arrays(arrays)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    device = next(arch.lm_head.parameters()).device
    return lens.to(device)
