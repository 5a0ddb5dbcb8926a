"""Loss of the answer around the model's weights θ, with no trajectory in context.

L_q(θ) = mean NLL of the answer tokens after ``prompt + template`` (the run's cut point 0).

* ``loss_surface``: the single-layer proxy plane (docs/architecture.md §1). D1, D2 = the top-2 PCA
  directions of the run's proxy path at layer ℓ, as rank-1 weight matrices d_k ẑ_0ᵀ; the
  surface is L_q(θ + αD1 + βD2) on a grid, plus L_q(θ + ΔW_c) and L_q(θ + proj ΔW_c) at
  every step. Only layer ℓ's gate/up weights change, so the residual stream entering ℓ is
  computed once and layers ℓ..L−1 run for a batch of grid points at a time. The edit
  (W + u ẑ_0ᵀ) h = W h + u (ẑ_0·h) is applied by a hook, without touching the model's weights.
* ``random_landscape``: as in the RaML reference (Li et al. 2018): two random directions,
  each tensor's direction scaled to that tensor's norm, embeddings and LM head excluded;
  L_q on a grid, evaluated on a private copy of the model.

Both are cached as derived data of the run (``backend.store.derived``), so reopening is instant.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from backend.analysis.spaces.proxy import ProxyError, project, proxy_factors
from backend.engine import forward, provider
from backend.engine.architecture import embedding_weights, locate
from backend.engine.models import LoadedModel
from backend.store import derived, schema
from backend.store.runs import RunData

SURFACE_VERSION = schema.SURFACE.version
Progress = Callable[[int, int], None]  # (done, total) loss evaluations


def _tqdm(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=None)


# ---------------------------------------------------------------------------- L_q(θ)
def question_ids(run: RunData, tokenizer) -> tuple[list[int], int]:
    """Token ids ``prompt + template + answer`` ``[T]`` of the run (no trajectory), and m_a.

    Same construction as ``backend.pipeline.run``: the stored prompt text, template and answer ids.
    """
    from backend.engine.trajectory import encode

    prompt_ids = encode(tokenizer, run.prompt)
    template_ids = encode(tokenizer, run.template)
    answer_ids = run.answer_ids or encode(tokenizer, run.answer)
    if not template_ids or not answer_ids:
        raise ProxyError(f"run {run.key}: template or answer tokenizes to nothing")
    return prompt_ids + template_ids + answer_ids, len(answer_ids)


# ---------------------------------------------------------------------------- layer-edit engine
class LayerEditEvaluator:
    """L_q(θ + u ẑ_0ᵀ) at layer ``layer`` for many u at once, with no trajectory in context.

    ``losses(U)`` takes U ``[G, F]`` (F = total out-features of the layer's MLP input
    projections, gate rows first, as stored in ``proxy_preact``) and returns ``[G]``.
    The residual stream entering ``layer`` and every later layer's call arguments are
    captured in one plain forward; the model's weights are never modified.
    """

    def __init__(self, loaded: LoadedModel, ids: list[int], m_a: int, layer: int, z_hat: np.ndarray):
        self.model = loaded.model
        self.arch = locate(self.model)
        if not 0 <= layer < self.arch.n_layers:
            raise ProxyError(f"layer {layer} outside 0..{self.arch.n_layers - 1}")
        self.projections = self.arch.mlp_input_projections(layer)
        if not self.projections:
            raise ProxyError(f"layer {layer} has no recognised MLP input projection")
        self.layer, self.m_a = layer, m_a
        param = next(self.model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.ids = torch.tensor(ids, device=self.device)
        self.answer = self.ids[-m_a:]  # [m_a]
        self.sizes = [p.out_features for p in self.projections]
        self.z_hat = torch.as_tensor(z_hat, device=self.device, dtype=self.dtype)  # [d]
        self._u: list[torch.Tensor] | None = None  # per projection [G, f_k] while evaluating
        self._owner: int | None = None
        self._capture()

    @torch.inference_mode()
    def _capture(self) -> None:
        calls: dict[int, tuple[tuple, dict]] = {}
        me = threading.get_ident()

        def pre_hook(index):
            def hook(_module, args, kwargs):
                if threading.get_ident() == me:
                    calls[index] = (args, dict(kwargs))

            return hook

        layers = range(self.layer, self.arch.n_layers)
        with forward.hooks(forward.on_input(self.arch.layers[j], pre_hook(j), with_kwargs=True) for j in layers):
            out = self.arch.base(input_ids=self.ids[None], use_cache=False)
        final = out.last_hidden_state[:, -self.m_a - 1 : -1]  # the base stack already applied the final norm
        self.base_loss = float(forward.lens_answer_nll(self.arch.lens, final, self.answer, normed=True)[0])
        args, kwargs = calls[self.layer]
        self.h_in = args[0] if args else kwargs.pop("hidden_states")  # [1, T, d]
        self.layer_kwargs = {}
        for j, (a, kw) in calls.items():
            kw.pop("hidden_states", None)
            kw["past_key_values"], kw["use_cache"] = None, False
            self.layer_kwargs[j] = (a[1:], kw)

    def _edit_hook(self, k: int):
        def hook(_module, inputs, output):
            if self._u is None or threading.get_ident() != self._owner:
                return None
            x = inputs[0]  # [G, T, d]
            return output + (x @ self.z_hat)[..., None] * self._u[k][:, None, :]

        return hook

    @torch.inference_mode()
    def losses(self, U: np.ndarray) -> np.ndarray:
        """U ``[G, F]`` -> L_q(θ + u_g ẑ_0ᵀ) ``[G]`` float64."""
        U_t = torch.as_tensor(np.asarray(U), device=self.device, dtype=self.dtype)
        if U_t.ndim != 2 or U_t.shape[1] != sum(self.sizes):
            raise ProxyError(f"edit vectors must be [G, {sum(self.sizes)}], got {tuple(U_t.shape)}")
        G = U_t.shape[0]
        edits = [forward.on_output(p, self._edit_hook(k)) for k, p in enumerate(self.projections)]
        self._u, self._owner = list(torch.split(U_t, self.sizes, dim=1)), threading.get_ident()
        try:
            with forward.hooks(edits):
                h = self.h_in.expand(G, -1, -1).contiguous()
                for j in range(self.layer, self.arch.n_layers):
                    extra_args, kw = self.layer_kwargs[j]
                    h = self.arch.layers[j](h, *extra_args, **kw)
                    h = h[0] if isinstance(h, tuple) else h
        finally:
            self._u, self._owner = None, None
        nll = forward.lens_answer_nll(self.arch.lens, h[:, -self.m_a - 1 : -1], self.answer)  # [G]
        return nll.double().cpu().numpy()

    def batched(self, U: np.ndarray, batch: int, progress: Callable[[int], None]) -> np.ndarray:
        out = []
        for start in range(0, len(U), batch):
            out.append(self.losses(U[start : start + batch]))
            progress(min(start + batch, len(U)))
        return np.concatenate(out) if out else np.zeros(0)


# ---------------------------------------------------------------------------- proxy-plane surface
def default_batch(n_tokens: int, device: torch.device) -> int:
    """Grid points per forward: ~2.5k tokens on CPU (measured best for SmolLM2), more on CUDA."""
    budget = 2560 if device.type != "cuda" else 32768
    return int(max(1, min(256, budget // max(n_tokens, 1))))


@dataclass
class LossSurface:
    """L_q on the proxy plane of one run at one layer (a single-layer proxy).

    alphas ``[Nα]``, betas ``[Nβ]``; loss ``[Nβ, Nα]`` (row = β, as plotly's z[y][x]);
    path_coords ``[K, 2]`` plane coordinates (u_c·d1, u_c·d2) of each boundary;
    path_loss_plane ``[K]`` = L_q(θ + proj ΔW_c); path_loss_full ``[K]`` = L_q(θ + ΔW_c);
    teacher_forced ``[K]`` = L̂(c) at the boundaries (trajectory in context);
    directions ``[2, F]`` = d1, d2 in u-space; explained_variance ``[2]``.
    """

    run_key: str
    layer: int
    alphas: np.ndarray
    betas: np.ndarray
    loss: np.ndarray
    path_coords: np.ndarray
    path_loss_plane: np.ndarray
    path_loss_full: np.ndarray
    teacher_forced: np.ndarray
    base_loss: float
    directions: np.ndarray
    explained_variance: np.ndarray
    seconds: float
    cached: bool = False


def surface_params(run: RunData, layer: int, grid: int, span: float) -> dict:
    """What a proxy-plane surface depends on (its derived-data parameters)."""
    return {"layer": int(layer), "grid": int(grid), "span": float(span), "model": run.model_fingerprint}


def surface_cache_key(run: RunData, layer: int, grid: int, span: float) -> str:
    return derived.derived_key(schema.SURFACE, surface_params(run, layer, grid, span), run)


def grid_axes(path_coords: np.ndarray, grid: int, span: float) -> tuple[np.ndarray, np.ndarray]:
    """Axes ``[grid]`` each, centred on the path's bounding box, ``span`` times its extent."""
    lo, hi = path_coords.min(0), path_coords.max(0)
    centre, half = (lo + hi) / 2, span * (hi - lo) / 2
    floor = max(float(half.max()) * 1e-2, 1e-6)  # a flat axis still gets a visible range
    half = np.maximum(half, floor)
    return tuple(np.linspace(c - h, c + h, grid) for c, h in zip(centre, half))  # type: ignore[return-value]


def teacher_forced_at_boundaries(run: RunData) -> np.ndarray:
    """L̂(c) at the run's boundary cuts ``[K]`` (from the tokens table)."""
    cuts = run.boundary_cuts()
    loss_at = dict(zip(run.tokens["cut"].astype(int), run.tokens["loss"].astype(float)))
    return np.array([loss_at.get(int(c), np.nan) for c in cuts])


def _surface_from_arrays(run: RunData, layer: int, a: dict, cached: bool) -> LossSurface:
    return LossSurface(
        run_key=run.key,
        layer=int(layer),
        alphas=a["alphas"],
        betas=a["betas"],
        loss=a["loss"],
        path_coords=a["path_coords"],
        path_loss_plane=a["path_loss_plane"],
        path_loss_full=a["path_loss_full"],
        teacher_forced=a["teacher_forced"],
        base_loss=float(a["base_loss"]),
        directions=a["directions"],
        explained_variance=a["explained_variance"],
        seconds=float(a["seconds"]),
        cached=cached,
    )


def load_surface(run: RunData, layer: int, grid: int = 15, span: float = 1.5, store=None) -> LossSurface | None:
    """The cached surface, or None if it has not been computed (never loads a model)."""
    arrays = derived.load_derived(store, run, schema.SURFACE, surface_params(run, layer, grid, span))
    return _surface_from_arrays(run, layer, arrays, True) if arrays and "loss" in arrays else None


def _check_grid(grid: int, span: float) -> None:
    """One-line errors for a grid size or span a user typed."""
    if not isinstance(grid, int) or not 2 <= grid <= 101:
        raise ProxyError(f"grid must be an integer in 2..101, got {grid!r}")
    if not np.isfinite(span) or span <= 0:
        raise ProxyError(f"span must be a positive number, got {span!r}")


def loss_surface(
    run: RunData,
    layer: int,
    *,
    loaded: LoadedModel | None = None,
    grid: int = 15,
    span: float = 1.5,
    batch: int | None = None,
    progress: Progress | None = None,
    store=None,
) -> LossSurface:
    """L_q(θ + αD1 + βD2) on a ``grid`` x ``grid`` plane through θ, plus the path's losses.

    D1, D2: top-2 PCA directions of the run's proxy path at ``layer`` (rank-1 weight
    matrices d_k ẑ_0ᵀ on the gate/up projections). ``batch`` grid points per forward
    (default from the question's length). Cached as derived data (``schema.SURFACE``).
    """
    _check_grid(grid, span)
    hit = load_surface(run, layer, grid, span, store)
    if hit is not None:
        return hit
    t0 = time.perf_counter()
    u, z_hat = proxy_factors(run, layer)  # [K, F], [d]
    proj = project([run], layer, "proxy", "pca", store=store)
    directions = proj.basis["components"].astype(np.float64)  # [2, F], orthonormal
    path_coords = u.astype(np.float64) @ directions.T  # [K, 2]
    alphas, betas = grid_axes(path_coords, grid, span)
    grid_alpha, grid_beta = np.meshgrid(alphas, betas)  # [Nβ, Nα] each
    plane_pts = np.stack([grid_alpha.ravel(), grid_beta.ravel()], 1)  # [G, 2]

    loaded = provider.provide_for_run(run.model_name, run.model_fingerprint, run.key, loaded=loaded)
    ids, m_a = question_ids(run, loaded.tokenizer)
    evaluator = LayerEditEvaluator(loaded, ids, m_a, layer, z_hat)
    batch = batch or default_batch(len(ids), loaded.device)
    jobs = [plane_pts @ directions, path_coords @ directions, u.astype(np.float64)]
    total = sum(len(j) for j in jobs)
    bar, done = _tqdm(total, f"loss surface L{layer}"), [0]

    def tick(offset):
        def report(n):
            bar.update(offset + n - done[0])
            done[0] = offset + n
            if progress:
                progress(done[0], total)

        return report

    results, offset = [], 0
    try:
        for U in jobs:
            results.append(evaluator.batched(U, batch, tick(offset)))
            offset += len(U)
    finally:
        bar.close()
    arrays = {
        "alphas": alphas,
        "betas": betas,
        "loss": results[0].reshape(len(betas), len(alphas)),
        "path_coords": path_coords,
        "path_loss_plane": results[1],
        "path_loss_full": results[2],
        "teacher_forced": teacher_forced_at_boundaries(run),
        "base_loss": np.array(evaluator.base_loss),
        "directions": directions.astype(np.float32),
        "explained_variance": proj.explained_variance,
        "seconds": np.array(time.perf_counter() - t0),
    }
    derived.save_derived(store, run, schema.SURFACE, surface_params(run, layer, grid, span), arrays)  # only warns
    return _surface_from_arrays(run, layer, arrays, False)


# ---------------------------------------------------------------------------- random directions
@dataclass
class RandomLandscape:
    """L_q(θ + α d1 + β d2) for two filter-normalized random directions (RaML reference).

    alphas ``[Nα]``, betas ``[Nβ]``, loss ``[Nβ, Nα]`` (row = β); base_loss = L_q(θ);
    n_params: parameters perturbed (embeddings and LM head excluded).
    """

    run_key: str
    alphas: np.ndarray
    betas: np.ndarray
    loss: np.ndarray
    base_loss: float
    seed: int
    n_params: int
    seconds: float
    cached: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def landscape_params(run: RunData, grid: int, span: float, seed: int) -> dict:
    """What a random-direction landscape depends on (its derived-data parameters)."""
    return {"grid": int(grid), "span": float(span), "seed": int(seed), "model": run.model_fingerprint}


def landscape_cache_key(run: RunData, grid: int, span: float, seed: int) -> str:
    return derived.derived_key(schema.LANDSCAPE, landscape_params(run, grid, span, seed), run)


def perturbed_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """Named parameters the landscape perturbs: all but input embeddings and the LM head."""
    excluded = {id(w) for w in embedding_weights(model)}
    seen, out = set(), []
    for name, p in model.named_parameters():
        if id(p) in excluded or id(p) in seen:
            continue
        seen.add(id(p))
        out.append((name, p))
    return out


def random_directions(model: torch.nn.Module, seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Two directions, each tensor scaled to that tensor's norm (per-tensor filter normalization)."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    d1, d2 = {}, {}
    for name, p in perturbed_parameters(model):
        norm = p.detach().float().norm().cpu()
        for d in (d1, d2):
            r = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            r_norm = r.norm()
            d[name] = (r * (norm / r_norm) if r_norm > 0 else r).to(device=p.device, dtype=p.dtype)
    return d1, d2


def load_random_landscape(
    run: RunData, grid: int = 11, span: float = 1.0, seed: int = 0, store=None
) -> RandomLandscape | None:
    """The cached random-direction landscape, or None (never loads a model)."""
    a = derived.load_derived(store, run, schema.LANDSCAPE, landscape_params(run, grid, span, seed))
    if not a or "loss" not in a:
        return None
    return RandomLandscape(
        run.key,
        a["alphas"],
        a["betas"],
        a["loss"],
        float(a["base_loss"]),
        int(seed),
        int(a["n_params"]),
        float(a["seconds"]),
        cached=True,
    )


@torch.inference_mode()
def random_landscape(
    run: RunData,
    *,
    loaded: LoadedModel | None = None,
    grid: int = 11,
    span: float = 1.0,
    seed: int = 0,
    progress: Progress | None = None,
    store=None,
) -> RandomLandscape:
    """L_q on a ``grid`` x ``grid`` square [−span, span]² of two random directions.

    Works on a private copy of the model (the shared one is never modified); extra memory ≈
    three times the perturbed parameters (the copy and two directions).
    """
    _check_grid(grid, span)
    hit = load_random_landscape(run, grid, span, seed, store)
    if hit is not None:
        return hit
    t0 = time.perf_counter()
    loaded = provider.provide_for_run(run.model_name, run.model_fingerprint, run.key, loaded=loaded)
    ids, m_a = question_ids(run, loaded.tokenizer)
    work = copy.deepcopy(loaded.model).eval()
    base = dict(perturbed_parameters(loaded.model))  # θ, read only
    params = dict(perturbed_parameters(work))
    d1, d2 = random_directions(work, seed)
    alphas = np.linspace(-span, span, grid)
    betas = np.linspace(-span, span, grid)
    loss = np.zeros((grid, grid))
    base_loss = forward.teacher_forced_loss(loaded.model, ids, m_a)
    total, done = grid * grid, 0
    bar = _tqdm(total, "random landscape")
    try:
        for j, beta in enumerate(betas):
            for i, alpha in enumerate(alphas):
                for name, p in params.items():
                    if i == 0:  # each row starts again from θ, so no error accumulates across rows
                        p.copy_(base[name]).add_(d2[name], alpha=float(beta)).add_(d1[name], alpha=float(alpha))
                    else:  # along a row only α moves: one pass over the weights
                        p.add_(d1[name], alpha=float(alpha - alphas[i - 1]))
                loss[j, i] = forward.teacher_forced_loss(work, ids, m_a)
                done += 1
                bar.update(1)
                if progress:
                    progress(done, total)
    finally:
        bar.close()
        del work, d1, d2
    n_params = int(sum(p.numel() for p in params.values()))
    seconds = time.perf_counter() - t0
    arrays = {
        "alphas": alphas,
        "betas": betas,
        "loss": loss,
        "base_loss": np.array(base_loss),
        "n_params": np.array(n_params),
        "seconds": np.array(seconds),
    }
    derived.save_derived(store, run, schema.LANDSCAPE, landscape_params(run, grid, span, seed), arrays)  # only warns
    return RandomLandscape(run.key, alphas, betas, loss, float(base_loss), int(seed), n_params, seconds)
