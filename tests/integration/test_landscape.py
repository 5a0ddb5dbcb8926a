"""Loss surface on the proxy plane and the random-direction landscape, checked against direct
forwards of models whose weights were edited explicitly."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY

from backend.analysis.landscapes import surfaces as landscape
from backend.analysis.spaces import proxy
from backend.engine import forward
from backend.engine.architecture import locate
from backend.errors import InputError


@pytest.fixture(scope="module")
def tiny(tiny_run):
    store, key = tiny_run
    return store, store.open(key)


def _edited_copy(model, layer: int, u: np.ndarray, z_hat: np.ndarray):
    """A deep copy of ``model`` with W ← W + u ẑ_0ᵀ on layer ``layer``'s gate/up weights."""
    edited = copy.deepcopy(model)
    projections = locate(edited).mlp_input_projections(layer)
    delta = torch.outer(torch.as_tensor(u, dtype=torch.float64), torch.as_tensor(z_hat, dtype=torch.float64))
    with torch.no_grad():
        for p, part in zip(projections, torch.split(delta, [p.out_features for p in projections])):
            p.weight += part.to(p.weight.dtype)
    return edited


def test_surface_origin_is_the_unedited_loss(tiny, tiny_llama):
    store, run = tiny
    layer = run.meta["proxy_layers"][1]
    s = landscape.loss_surface(run, layer, loaded=tiny_llama, grid=5, store=store)
    ids, m_a = landscape.question_ids(run, tiny_llama.tokenizer)
    direct = forward.teacher_forced_loss(tiny_llama.model, ids, m_a)
    assert s.loss.shape == (5, 5) and len(s.alphas) == len(s.betas) == 5
    np.testing.assert_allclose(s.path_coords[0], [0, 0], atol=1e-7)  # boundary 0 = no trajectory = θ
    assert s.path_loss_plane[0] == pytest.approx(direct, abs=1e-4)
    assert s.path_loss_full[0] == pytest.approx(direct, abs=1e-4)
    assert s.base_loss == pytest.approx(direct, abs=1e-4)
    # and it is the run's own teacher-forced L̂ at cut 0 (same token construction as the engine)
    assert s.teacher_forced[0] == pytest.approx(direct, abs=1e-4)
    assert float(run.tokens.loss.iloc[0]) == pytest.approx(direct, abs=1e-4)


def test_surface_at_step_coordinates_equals_directly_edited_model(tiny, tiny_llama):
    store, run = tiny
    layer = run.meta["proxy_layers"][1]
    s = landscape.loss_surface(run, layer, loaded=tiny_llama, grid=5, store=store)
    u, z_hat = proxy.proxy_factors(run, layer)
    ids, m_a = landscape.question_ids(run, tiny_llama.tokenizer)
    for c in (len(u) - 1, len(u) // 2):
        projected = s.path_coords[c] @ s.directions.astype(np.float64)  # proj of ΔW_c onto the plane
        on_plane = forward.teacher_forced_loss(_edited_copy(tiny_llama.model, layer, projected, z_hat), ids, m_a)
        full = forward.teacher_forced_loss(_edited_copy(tiny_llama.model, layer, u[c], z_hat), ids, m_a)
        assert s.path_loss_plane[c] == pytest.approx(on_plane, abs=1e-4)
        assert s.path_loss_full[c] == pytest.approx(full, abs=1e-4)
    # the grid itself: a corner point against an explicit edit
    corner = s.alphas[0] * s.directions[0].astype(np.float64) + s.betas[-1] * s.directions[1].astype(np.float64)
    direct = forward.teacher_forced_loss(_edited_copy(tiny_llama.model, layer, corner, z_hat), ids, m_a)
    assert s.loss[-1, 0] == pytest.approx(direct, abs=1e-4)
    # the path lies inside the grid (1.5x its extent)
    assert s.alphas[0] <= s.path_coords[:, 0].min() and s.path_coords[:, 0].max() <= s.alphas[-1]
    assert s.betas[0] <= s.path_coords[:, 1].min() and s.path_coords[:, 1].max() <= s.betas[-1]


def test_layer_edit_engine_matches_explicit_edits_for_large_edits(tiny, tiny_llama):
    """Big edits move the loss by far more than the tolerance, so the check discriminates."""
    _, run = tiny
    layer = run.meta["proxy_layers"][0]  # lowest layer: the most layers run after the edit
    u, z_hat = proxy.proxy_factors(run, layer)
    ids, m_a = landscape.question_ids(run, tiny_llama.tokenizer)
    rng = np.random.default_rng(0)
    U = rng.normal(scale=3.0, size=(3, u.shape[1]))
    evaluator = landscape.LayerEditEvaluator(tiny_llama, ids, m_a, layer, z_hat)
    got = evaluator.losses(U)
    direct = [forward.teacher_forced_loss(_edited_copy(tiny_llama.model, layer, row, z_hat), ids, m_a) for row in U]
    np.testing.assert_allclose(got, direct, atol=1e-4)
    assert np.abs(np.array(direct) - evaluator.base_loss).min() > 1e-2
    # the shared model is untouched and the engine's hooks are gone
    assert forward.teacher_forced_loss(tiny_llama.model, ids, m_a) == pytest.approx(evaluator.base_loss, abs=1e-6)
    assert all(not p._forward_hooks for p in locate(tiny_llama.model).mlp_input_projections(layer))


def test_surface_is_cached_next_to_the_run(tiny, tiny_llama):
    store, run = tiny
    layer = run.meta["proxy_layers"][2]
    assert landscape.load_surface(run, layer, grid=3, store=store) is None
    calls = []
    first = landscape.loss_surface(
        run, layer, loaded=tiny_llama, grid=3, store=store, progress=lambda d, t: calls.append((d, t))
    )
    assert not first.cached and calls and calls[-1][0] == calls[-1][1] == 9 + 2 * (len(run.steps) + 1)
    again = landscape.loss_surface(run, layer, grid=3, store=store)  # no model needed: from disk
    assert again.cached
    np.testing.assert_array_equal(again.loss, first.loss)
    np.testing.assert_array_equal(again.path_loss_full, first.path_loss_full)
    assert list((run.path / "derived").glob("surface-*.npz"))
    store.open(run.key, verify=True)  # checksummed run files untouched


def test_surface_bad_input(tiny, tiny_llama, tiny_qwen2):
    store, run = tiny
    with pytest.raises(ValueError, match="layer 9 is not stored"):
        landscape.loss_surface(run, 9, loaded=tiny_llama, store=store)
    with pytest.raises(InputError, match="grid must be an integer"):
        landscape.loss_surface(run, 1, loaded=tiny_llama, grid=1, store=store)
    with pytest.raises(InputError, match="span must be a positive"):
        landscape.loss_surface(run, 1, loaded=tiny_llama, span=-1.0, store=store)
    with pytest.raises(InputError, match="was analysed with tiny-llama"):
        landscape.loss_surface(run, 1, loaded=tiny_qwen2, grid=3, store=store)


# ---------------------------------------------------------------------------- random landscape
def test_random_directions_are_filter_normalized_and_skip_embeddings(tiny_llama):
    model = tiny_llama.model
    d1, d2 = landscape.random_directions(model, seed=3)
    names = dict(model.named_parameters())
    assert "model.embed_tokens.weight" not in d1 and "lm_head.weight" not in d1
    assert set(d1) == {n for n, _ in landscape.perturbed_parameters(model)}
    for name, d in d1.items():
        assert float(d.norm()) == pytest.approx(float(names[name].detach().norm()), rel=1e-4)
    assert not torch.allclose(d1["model.layers.0.mlp.up_proj.weight"], d2["model.layers.0.mlp.up_proj.weight"])
    e1, _ = landscape.random_directions(model, seed=3)
    assert torch.equal(e1["model.layers.1.self_attn.q_proj.weight"], d1["model.layers.1.self_attn.q_proj.weight"])


def test_random_landscape_matches_explicit_perturbation(tiny, tiny_llama):
    store, run = tiny
    before = {k: v.clone() for k, v in tiny_llama.model.state_dict().items()}
    r = landscape.random_landscape(run, loaded=tiny_llama, grid=3, span=0.5, seed=7, store=store)
    assert r.loss.shape == (3, 3)
    ids, m_a = landscape.question_ids(run, tiny_llama.tokenizer)
    direct = forward.teacher_forced_loss(tiny_llama.model, ids, m_a)
    assert r.loss[1, 1] == pytest.approx(direct, abs=1e-5) and r.base_loss == pytest.approx(direct, abs=1e-5)
    # corner (α, β) = (0.5, −0.5) against weights perturbed by hand
    d1, d2 = landscape.random_directions(tiny_llama.model, seed=7)
    edited = copy.deepcopy(tiny_llama.model)
    with torch.no_grad():
        for name, p in edited.named_parameters():
            if name in d1:
                p += 0.5 * d1[name] - 0.5 * d2[name]
    assert r.loss[0, 2] == pytest.approx(forward.teacher_forced_loss(edited, ids, m_a), abs=1e-4)
    assert abs(r.loss[0, 2] - direct) > 1e-2  # the perturbation really moves the loss
    embed = tiny_llama.model.get_input_embeddings().weight.numel()
    assert r.n_params == sum(p.numel() for p in tiny_llama.model.parameters()) - embed  # tied LM head
    # the shared model is unchanged; the result is cached
    after = tiny_llama.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert landscape.random_landscape(run, grid=3, span=0.5, seed=7, store=store).cached
    with pytest.raises(InputError, match="grid must be an integer"):
        landscape.random_landscape(run, loaded=tiny_llama, grid=500, store=store)


# ---------------------------------------------------------------------------- SmolLM2
@pytest.mark.slow
def test_surface_on_smollm2_matches_an_explicit_edit(tmp_path, smollm2):
    """Real weights: the plane point of the last step equals a forward with edited weights."""
    from backend.pipeline.run import RunRequest, run_question
    from backend.store.runs import RunStore

    store = RunStore(tmp_path / "cache")
    req = RunRequest(
        question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, model=smollm2.name, cuts="steps"
    )
    run = store.open(run_question(req, store, loaded=smollm2).key)
    layer = run.meta["proxy_layers"][-1]  # the last layer: one layer to run per point (CI time)
    s = landscape.loss_surface(run, layer, loaded=smollm2, grid=3, store=store)
    ids, m_a = landscape.question_ids(run, smollm2.tokenizer)
    assert s.path_loss_plane[0] == pytest.approx(float(run.tokens.loss.iloc[0]), abs=1e-4)
    _, z_hat = proxy.proxy_factors(run, layer)
    c = len(s.path_coords) - 1
    projected = s.path_coords[c] @ s.directions.astype(np.float64)
    projections = locate(smollm2.model).mlp_input_projections(layer)
    saved = [p.weight.detach().clone() for p in projections]
    delta = torch.outer(torch.as_tensor(projected), torch.as_tensor(z_hat, dtype=torch.float64))
    try:  # edit the shared model in place and restore it bit for bit (a deep copy costs 0.5 GB)
        with torch.no_grad():
            for p, part in zip(projections, torch.split(delta, [p.out_features for p in projections])):
                p.weight += part.float()
        direct = forward.teacher_forced_loss(smollm2.model, ids, m_a)
    finally:
        with torch.no_grad():
            for p, w in zip(projections, saved):
                p.weight.copy_(w)
    assert s.path_loss_plane[c] == pytest.approx(direct, abs=1e-4)
    assert np.all(np.isfinite(s.loss)) and s.loss.max() > s.loss.min()
