"""Loss landscape in the exact-update space: L(θ + αD1 + βD2) with no trajectory in context.

D1, D2 are the top-2 principal directions of the exact path {ΔW_c} (PCA of the path from its
Gram matrix; the plane passes through θ, like the proxy plane). A direction is a combination
Σ_k w_k ΔW_k of the path's own updates, so it is applied from the factors: every W_o gets
out += Σ_k (α w1_k + β w2_k) U_k (R_k v), never a dense matrix. Where a path point lies on
the plane the surface equals L̂(c) there; each point's distance from the plane is reported
(absolute, and relative to ‖ΔW_c‖_F). Cached as derived data (``schema.EXACT_SURFACE``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from backend.analysis.exact import geometry as geo
from backend.analysis.exact import update as ex
from backend.analysis.exact.run import ExactRun, run_inputs
from backend.analysis.landscapes.surfaces import _check_grid, grid_axes
from backend.engine import forward
from backend.store import derived, schema
from backend.store.runs import RunData


@dataclass
class ExactSurface:
    """alphas ``[Nα]``, betas ``[Nβ]``, loss ``[Nβ, Nα]``; path_coords ``[K, 2]``; path_loss ``[K]`` =
    L̂(c) = L(θ + ΔW_c); path_loss_plane ``[K]`` = L(θ + proj ΔW_c); plane_distance ``[K]`` =
    ‖ΔW_c − proj ΔW_c‖_F; explained_variance ``[2]``."""

    run_key: str
    alphas: np.ndarray
    betas: np.ndarray
    loss: np.ndarray
    path_coords: np.ndarray
    path_loss: np.ndarray
    path_loss_plane: np.ndarray
    plane_distance: np.ndarray
    norms: np.ndarray
    explained_variance: np.ndarray
    seconds: float
    layer: int = -1  # all layers (for shared figure helpers)

    @property
    def relative_distance(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.norms > 0, self.plane_distance / np.where(self.norms > 0, self.norms, 1), 0.0)


def plane(gram: np.ndarray) -> dict[str, np.ndarray]:
    """PCA of the path from its Gram ``[K, K]``: weights ``[2, K]`` (D_i = Σ_k w_ik ΔW_k, orthonormal
    in Frobenius norm), coords ``[K, 2]`` (through θ), distance ``[K]``, explained variance ``[2]``."""
    emb = geo.isometric_embedding(gram)  # [K, r]: ΔW_k = Σ_j emb_kj b_j, b_j orthonormal
    centred = emb - emb.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    comps = np.zeros((2, emb.shape[1]))
    comps[: min(2, len(vt))] = vt[:2]
    for i in range(2):  # the same sign rule as the proxy projection
        j = np.argmax(np.abs(comps[i]))
        if comps[i, j] < 0:
            comps[i] *= -1
    lam, vec = np.linalg.eigh((gram + gram.T) / 2)
    keep = lam > max(lam.max(), 0) * 1e-12
    basis_weights = vec[:, keep] / np.sqrt(lam[keep])  # [K, r]: b_j = Σ_k basis_weights_kj ΔW_k
    weights = (basis_weights @ comps.T).T  # [2, K]
    coords = emb @ comps.T
    dist = np.sqrt(np.clip((emb**2).sum(1) - (coords**2).sum(1), 0, None))
    var = s**2
    ratios = np.zeros(2)
    if var.sum() > 0:
        ratios[: min(2, len(var))] = var[:2] / var.sum()
    return {"weights": weights, "coords": coords, "distance": dist, "explained_variance": ratios}


class _PlaneEdit:
    """Hooks adding Σ_k coef[g, k] U_k (R_k v) to every W_o output, per batch row g
    (attach with ``forward.hooks(edit.specs())``)."""

    def __init__(self, model, update: ex.ExactUpdate):
        self.projections = ex.output_projections(model)
        dtype = self.projections[0].weight.dtype
        self.U = [torch.from_numpy(update.left[:, i]).to(dtype) for i in range(update.n_layers)]  # [K, d, m]
        self.R = [torch.from_numpy(update.right[:, i]).to(dtype) for i in range(update.n_layers)]  # [K, m, H]
        self.coef: torch.Tensor | None = None  # [G, K]

    def specs(self) -> list[forward.Hook]:
        return [forward.on_output(p, self._hook(i)) for i, p in enumerate(self.projections)]

    def _hook(self, i: int):
        def hook(_module, inputs, output):
            v = inputs[0]  # [G, T, H]
            rv = torch.einsum("kmh,gth->gktm", self.R[i], v)
            return output + torch.einsum("gk,gktm,kdm->gtd", self.coef, rv, self.U[i])

        return hook


@torch.inference_mode()
def plane_losses(model, update: ex.ExactUpdate, ids: list[int], coef: np.ndarray, batch: int = 16) -> np.ndarray:
    """L(θ + Σ_k coef[g, k] ΔW_k) ``[G]`` for coefficient rows ``coef`` ``[G, K]``."""
    x = torch.tensor([ids])
    out = []
    edit = _PlaneEdit(model, update)
    with forward.hooks(edit.specs()):
        for start in range(0, len(coef), batch):
            c = torch.from_numpy(np.asarray(coef[start : start + batch])).to(edit.U[0].dtype)
            edit.coef = c
            out.append(forward.teacher_forced_nll(model, x.expand(len(c), -1), update.m_a).double().numpy())
    return np.concatenate(out)


def surface_params(grid: int, span: float) -> dict:
    """What the exact-space landscape depends on besides the run (its derived-data parameters)."""
    return {"grid": int(grid), "span": float(span), "exact_version": ex.EXACT_VERSION}


def surface_path(run: RunData, grid: int, span: float, store=None) -> Path | None:
    """Where the exact-space landscape of ``run`` on a ``grid`` x ``grid`` plane is cached."""
    return derived.derived_path(store, run, schema.EXACT_SURFACE, surface_params(grid, span))


def _from_arrays(run: RunData, arrays: dict) -> ExactSurface:
    return ExactSurface(run_key=run.key, **{k: (float(v) if k == "seconds" else v) for k, v in arrays.items()})


def load_surface(run: RunData, grid: int = 15, span: float = 1.5, store=None) -> ExactSurface | None:
    """The cached exact-space landscape, or None if it has not been computed (never loads a model)."""
    arrays = derived.load_derived(store, run, schema.EXACT_SURFACE, surface_params(grid, span))
    return _from_arrays(run, arrays) if arrays and "loss" in arrays else None


def surface(run: RunData, exact: ExactRun, loaded, grid: int = 15, span: float = 1.5, store=None) -> ExactSurface:
    """The exact-space landscape of ``run`` (cached next to the run)."""
    _check_grid(grid, span)
    params = surface_params(grid, span)
    arrays = derived.load_derived(store, run, schema.EXACT_SURFACE, params)
    if arrays is None or "loss" not in arrays:
        t0 = time.perf_counter()
        p = plane(exact.gram)
        alphas, betas = grid_axes(p["coords"], grid, span)
        aa, bb = np.meshgrid(alphas, betas)  # [Nβ, Nα]
        coef_grid = aa.reshape(-1, 1) * p["weights"][0] + bb.reshape(-1, 1) * p["weights"][1]
        coef_path = p["coords"] @ p["weights"]  # proj ΔW_c = coords · (D1, D2)
        inputs = run_inputs(run, loaded.tokenizer)
        ids = inputs["prompt_ids"] + inputs["probe_ids"]
        losses = plane_losses(loaded.model, exact.update, ids, np.concatenate([coef_grid, coef_path]))
        arrays = {
            "alphas": alphas,
            "betas": betas,
            "loss": losses[: grid * grid].reshape(grid, grid),
            "path_coords": p["coords"],
            "path_loss": exact.edited_loss,
            "path_loss_plane": losses[grid * grid :],
            "plane_distance": p["distance"],
            "norms": np.sqrt(np.clip(np.diag(exact.gram), 0, None)),
            "explained_variance": p["explained_variance"],
            "seconds": np.array(time.perf_counter() - t0),
        }
        derived.save_derived(store, run, schema.EXACT_SURFACE, params, arrays)  # a failed write only warns
    return _from_arrays(run, arrays)
