"""Parameter-proxy space: vectors, the exactness identity, step geometry, projections and their cache."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY

from backend.analysis.spaces import proxy
from backend.engine.architecture import locate
from backend.errors import InputError


def _identity_errors(run, model, layer: int) -> np.ndarray:
    """‖(W + ΔW_c) z_0 − W z_c‖ / ‖W z_c‖ per boundary, ΔW_c built from the stored vectors."""
    W = torch.cat([p.weight.detach().double() for p in locate(model).mlp_input_projections(layer)]).cpu().numpy()
    z = run.tensor(f"proxy_input.{layer}").astype(np.float64)  # [S+1, d]
    u, z_hat = proxy.proxy_factors(run, layer)  # [S+1, F], [d]
    errors = []
    for c in range(len(z)):
        delta_w = np.outer(u[c].astype(np.float64), z_hat.astype(np.float64))  # [F, d] rank 1
        target = W @ z[c]
        errors.append(np.linalg.norm((W + delta_w) @ z[0] - target) / np.linalg.norm(target))
    return np.array(errors)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_llama):
    """A run of this module's own: projections write ``derived/`` files next to it, which must
    not leak into the session-wide ``tiny_run`` other modules inspect."""
    from backend.pipeline.run import RunRequest, run_question
    from backend.store.runs import RunStore

    store = RunStore(tmp_path_factory.mktemp("proxy_tiny"))
    req = RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, model=tiny_llama.name)
    return store, store.open(run_question(req, store, loaded=tiny_llama).key)


@pytest.fixture(scope="module")
def smol_run(tmp_path_factory, smollm2):
    """A short real SmolLM2 run (imported trajectory, step-boundary cuts only)."""
    from backend.pipeline.run import RunRequest, run_question
    from backend.store.runs import RunStore

    store = RunStore(tmp_path_factory.mktemp("smol_proxy"))
    req = RunRequest(
        question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, model=smollm2.name, cuts="steps"
    )
    return store.open(run_question(req, store, loaded=smollm2).key)


def _synthetic_run(store, key: str, d_model: int, n_boundaries: int, seed: int):
    """A stored run with random tensors of a chosen hidden size (no model needed)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    tensors = {
        "boundary_cuts": np.arange(n_boundaries, dtype=np.int64),
        "hidden": rng.normal(size=(n_boundaries, 2, d_model)).astype(np.float16),
        "proxy_input.1": rng.normal(size=(n_boundaries, d_model)).astype(np.float32),
        "proxy_preact.1": rng.normal(size=(n_boundaries, 4 * d_model)).astype(np.float32),
    }
    meta = {
        "question": "q",
        "answer": "1",
        "answer_source": "reference",
        "correct": True,
        "model": {"name": f"synthetic-{d_model}", "n_layers": 2, "d_model": d_model},
        "summary": {"n_tokens": n_boundaries - 1, "n_steps": n_boundaries - 1},
    }
    empty = pd.DataFrame({"cut": np.arange(n_boundaries), "loss": np.ones(n_boundaries)})
    store.write(key, meta, empty, pd.DataFrame({"index": [0]}), pd.DataFrame({"boundary": [0]}), tensors)
    return store.open(key)


# ---------------------------------------------------------------------------- vectors
def test_space_vectors_shapes_and_origin(tiny):
    _, run = tiny
    layers = proxy.available_layers(run, "proxy")
    assert layers == run.meta["proxy_layers"]
    assert proxy.available_layers(run, "hidden") == list(range(run.meta["model"]["n_layers"]))
    n_boundaries = run.meta["summary"]["n_steps"] + 1
    u = proxy.space_vectors(run, layers[-1], "proxy")
    assert u.shape == (n_boundaries, run.tensor(f"proxy_preact.{layers[-1]}").shape[1])
    assert np.all(u[0] == 0) and np.linalg.norm(u[1:], axis=1).min() > 0
    h = proxy.space_vectors(run, 1, "hidden")
    assert h.shape == (n_boundaries, run.meta["model"]["d_model"])
    np.testing.assert_array_equal(h, run.hidden_layer(1))


def test_bad_layer_space_and_method_are_clear_errors(tiny):
    _, run = tiny
    with pytest.raises(ValueError, match=r"layer 7 is not stored for the proxy space .*stored: 0, 1, 2, 3"):
        proxy.space_vectors(run, 7, "proxy")
    with pytest.raises(InputError, match="unknown space 'weights'"):
        proxy.space_vectors(run, 1, "weights")
    with pytest.raises(ValueError, match="unknown projection method 'tsne'"):
        proxy.project([run], 1, "proxy", "tsne")
    with pytest.raises(ValueError, match="no runs"):
        proxy.project([], 1)


# ---------------------------------------------------------------------------- exactness identity
def test_exactness_identity_tiny_model(tiny, tiny_llama):
    _, run = tiny
    for layer in proxy.available_layers(run, "proxy"):
        errors = _identity_errors(run, tiny_llama.model, layer)
        assert errors.max() < 1e-4, (layer, errors.max())


def test_identity_check_detects_a_wrong_weight(tiny, tiny_qwen2):
    """The identity is not vacuous: against another model's weights it fails."""
    _, run = tiny
    assert _identity_errors(run, tiny_qwen2.model, 1).max() > 1e-2


@pytest.mark.slow
def test_exactness_identity_smollm2(smol_run, smollm2):
    assert len(smol_run.meta["proxy_layers"]) >= 2
    for layer in smol_run.meta["proxy_layers"]:
        errors = _identity_errors(smol_run, smollm2.model, layer)
        assert errors.max() < 1e-4, (layer, errors.max())


def test_proxy_geometry_equals_rank_one_weight_geometry(tiny):
    """‖ΔW_a − ΔW_b‖_F of the explicit rank-1 matrices equals ‖u_a − u_b‖."""
    _, run = tiny
    layer = run.meta["proxy_layers"][1]
    z = run.tensor(f"proxy_input.{layer}").astype(np.float64)
    preact = run.tensor(f"proxy_preact.{layer}").astype(np.float64)
    delta_w = [np.outer(p - preact[0], z[0]) / (z[0] @ z[0]) for p in preact]  # docs/architecture.md §1 formula
    u = proxy.space_vectors(run, layer, "proxy").astype(np.float64)
    for a, b in [(1, 0), (3, 2), (len(u) - 1, 1)]:
        assert np.linalg.norm(delta_w[a] - delta_w[b]) == pytest.approx(np.linalg.norm(u[a] - u[b]), rel=1e-5)


# ---------------------------------------------------------------------------- step geometry
def test_step_geometry_on_known_paths():
    straight = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [6.0, 0.0]])
    g = proxy.step_geometry(straight)
    assert list(g.columns) == ["boundary", "step_size", "cosine_prev", "path_length", "displacement", "straightness"]
    assert np.isnan(g.step_size[0]) and np.isnan(g.cosine_prev[0]) and np.isnan(g.cosine_prev[1])
    np.testing.assert_allclose(g.step_size[1:], [1, 2, 3])
    np.testing.assert_allclose(g.cosine_prev[2:], [1, 1])
    np.testing.assert_allclose(g.path_length, [0, 1, 3, 6])
    np.testing.assert_allclose(g.straightness[1:], [1, 1, 1])

    zigzag = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 2.0]])
    z = proxy.step_geometry(zigzag)
    np.testing.assert_allclose(z.cosine_prev[2:], [-1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(z.path_length, [0, 1, 2, 4])
    np.testing.assert_allclose(z.displacement, [0, 1, 0, 2])
    np.testing.assert_allclose(z.straightness[1:], [1, 0, 0.5])


def test_step_geometry_of_a_run_matches_steps_table(tiny):
    _, run = tiny
    u = proxy.space_vectors(run, run.meta["proxy_layers"][-1], "proxy")
    g = proxy.step_geometry(u)
    assert len(g) == len(run.steps) + 1
    np.testing.assert_allclose(
        g.step_size[1:], np.linalg.norm(np.diff(u.astype(np.float64), axis=0), axis=1), rtol=1e-6
    )
    assert np.all(g.straightness[1:] <= 1 + 1e-9) and np.all(g.straightness[1:] > 0)
    assert np.all(np.diff(g.path_length) >= 0)


def test_step_geometry_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\[K, D\]"):  # K boundaries (docs/architecture.md §3)
        proxy.step_geometry(np.zeros(5))


# ---------------------------------------------------------------------------- projections
def test_pca_projection_matches_sklearn(tiny):
    from sklearn.decomposition import PCA

    store, run = tiny
    layer = run.meta["proxy_layers"][1]
    proxy.clear_memo()
    p = proxy.project([run], layer, "proxy", "pca", store=store)
    x = proxy.space_vectors(run, layer, "proxy").astype(np.float64)
    ref = PCA(n_components=2).fit(x)
    np.testing.assert_allclose(p.explained_variance, ref.explained_variance_ratio_, rtol=1e-4)
    np.testing.assert_allclose(np.abs(p.coords[0]), np.abs(ref.transform(x)), atol=1e-5)
    np.testing.assert_allclose(p.basis["components"] @ p.basis["components"].T, np.eye(2), atol=1e-5)
    # plane coordinates through the origin: u_c · d_k (row 0 = no trajectory = (0, 0))
    np.testing.assert_allclose(p.origin_coords(0), x @ p.basis["components"].T, atol=1e-5)
    np.testing.assert_allclose(p.origin_coords(0)[0], [0, 0], atol=1e-6)
    assert 0.0 <= p.trustworthiness <= 1.0 and p.n_neighbors is not None


def test_projection_is_reused_not_refitted(tiny):
    store, run = tiny
    layer = run.meta["proxy_layers"][2]
    proxy.clear_memo()
    shutil.rmtree(run.path / "derived", ignore_errors=True)  # other tests here may have fitted it
    before = proxy.FIT_COUNT
    first = proxy.project([run], layer, "hidden", "pca", store=store)
    assert proxy.FIT_COUNT == before + 1
    for _ in range(5):  # the cursor moving: same call again and again
        again = proxy.project([run], layer, "hidden", "pca", store=store)
    assert proxy.FIT_COUNT == before + 1
    np.testing.assert_array_equal(again.coords[0], first.coords[0])
    # a new process (memo cleared) reads the on-disk cache next to the run: still no refit
    proxy.clear_memo()
    cached = list((run.path / "derived").glob("projection-*.npz"))
    assert cached
    reopened = proxy.project([run], layer, "hidden", "pca", store=store)
    assert proxy.FIT_COUNT == before + 1
    np.testing.assert_array_equal(reopened.coords[0], first.coords[0])
    # another view (different layer) is a new fit; the run's checksummed files are untouched
    proxy.project([run], run.meta["proxy_layers"][1], "hidden", "pca", store=store)
    assert proxy.FIT_COUNT == before + 2
    store.open(run.key, verify=True)


def test_damaged_projection_cache_is_recomputed(tiny):
    store, run = tiny
    layer = run.meta["proxy_layers"][0]
    proxy.clear_memo()
    first = proxy.project([run], layer, "proxy", "pca", store=store)
    path = run.path / "derived" / f"projection-{proxy.projection_cache_key([run], layer, 'proxy', 'pca')}.npz"
    path.write_bytes(b"not an npz")
    proxy.clear_memo()
    before = proxy.FIT_COUNT
    again = proxy.project([run], layer, "proxy", "pca", store=store)
    assert proxy.FIT_COUNT == before + 1
    np.testing.assert_allclose(again.coords[0], first.coords[0], atol=1e-6)


def test_umap_projection_is_seeded_and_trustworthy(tiny):
    store, run = tiny
    layer = run.meta["proxy_layers"][-1]
    proxy.clear_memo()
    a = proxy.project([run, run], layer, "proxy", "umap", store=store)
    assert a.method == "umap" and a.explained_variance is None and a.basis is None
    assert [c.shape for c in a.coords] == [(len(run.steps) + 1, 2)] * 2
    assert np.all(np.isfinite(a.coords[0]))
    assert 0.0 <= a.trustworthiness <= 1.0
    for f in (run.path / "derived").glob("projection-*.npz"):
        f.unlink()
    proxy.clear_memo()
    before = proxy.FIT_COUNT
    b = proxy.project([run, run], layer, "proxy", "umap", store=store)
    assert proxy.FIT_COUNT == before + 1  # really refitted ...
    np.testing.assert_allclose(b.coords[0], a.coords[0], atol=1e-4)  # ... to the same picture (fixed seed)


def test_shared_basis_for_several_runs(tmp_path, tiny, tiny_llama):
    from backend.pipeline.run import RunRequest, run_question
    from backend.store.runs import RunStore

    _, run_a = tiny
    store = RunStore(tmp_path / "cache")
    other = "Maya starts with 5 apples and gets 8 more, so 13. She gives away 6 and eats 1, leaving 6."
    key_b = run_question(
        RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=other, model=tiny_llama.name),
        store,
        loaded=tiny_llama,
    ).key
    run_b = store.open(key_b)
    proxy.clear_memo()
    p = proxy.project([run_a, run_b], 2, "proxy", "pca")
    assert [len(c) for c in p.coords] == [len(run_a.steps) + 1, len(run_b.steps) + 1]
    # both share z_0 = no trajectory, so both paths start at the same point of the shared basis
    np.testing.assert_allclose(p.coords[0][0], p.coords[1][0], atol=1e-5)
    stacked = np.concatenate([proxy.space_vectors(r, 2, "proxy") for r in (run_a, run_b)]).astype(np.float64)
    centred = stacked - p.basis["mean"]
    np.testing.assert_allclose(np.concatenate(p.coords), centred @ p.basis["components"].T, atol=1e-4)


def test_runs_of_different_sizes_have_no_shared_basis(store):
    a = _synthetic_run(store, "a" * 32, 8, 5, 0)
    b = _synthetic_run(store, "b" * 32, 16, 5, 1)
    with pytest.raises(ValueError, match="different hidden-space sizes .*no shared basis"):
        proxy.project([a, b], 1, "hidden", "pca")
    assert proxy.project([a], 1, "proxy", "pca").coords[0].shape == (5, 2)


def test_tiny_paths_edge_cases(store):
    run = _synthetic_run(store, "c" * 32, 8, 2, 2)
    p = proxy.project([run], 1, "proxy", "pca")
    assert p.coords[0].shape == (2, 2) and p.trustworthiness is None  # 2 points: no neighbourhoods
    with pytest.raises(ValueError, match="UMAP needs at least 4 points"):
        proxy.project([run], 1, "proxy", "umap")
