"""Step importance (issue 13): fast ablation equals the naive rebuild-and-score reference, and
the probe's attention per step sums to 1 and equals an eager full forward."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY

from backend.analysis.importance.ablation import ablate, ablate_naive
from backend.analysis.importance.attention import probe_attention, probe_attention_naive
from backend.analysis.importance.run import compute_run_importance, load_importance, probe_request_for_run
from backend.engine.probe import ProbeRequest, analyze
from backend.engine.trajectory import RAML_TEMPLATE, build_prompt, encode, encode_with_offsets, segment

TOL = 1e-4  # nats, float32 (the design's bar)


def _request(loaded, text: str, answer: str = "6") -> ProbeRequest:
    tok = loaded.tokenizer
    ids, offsets = encode_with_offsets(tok, text)
    return ProbeRequest(
        prompt_ids=encode(tok, build_prompt(tok, SAMPLE_QUESTION, think=False)),
        trajectory_ids=ids,
        template_ids=encode(tok, RAML_TEMPLATE),
        answer_ids=encode(tok, answer),
        boundary_cuts=[0] + [s.end for s in segment(text, offsets, "sentences")],
    )


def _assert_ablation_matches(fast, slow):
    np.testing.assert_array_equal(fast.boundary_cuts, slow.boundary_cuts)
    np.testing.assert_array_equal(np.isnan(fast.ablated_loss), np.isnan(slow.ablated_loss))
    np.testing.assert_array_equal(np.isnan(fast.full_loss), np.isnan(slow.full_loss))
    assert np.nanmax(np.abs(fast.ablated_loss - slow.ablated_loss)) <= TOL
    assert np.nanmax(np.abs(fast.full_loss - slow.full_loss)) <= TOL
    assert np.abs(fast.importance - slow.importance).max() <= TOL


@pytest.mark.parametrize(
    "fixture, every_boundary, repeats", [("tiny_llama", False, 2), ("tiny_qwen2", False, 2), ("tiny_llama", True, 1)]
)
def test_ablation_equals_naive_on_tiny_models(request, fixture, every_boundary, repeats):
    loaded = request.getfixturevalue(fixture)
    req = _request(loaded, " ".join([SAMPLE_TRAJECTORY] * repeats), answer="6 apples")
    assert len(req.answer_ids) > 1 and len(req.boundary_cuts) > 8
    # a small chunk forces several forwards, some with one over-long suffix alone
    fast = ablate(loaded.model, req, every_boundary=every_boundary, chunk_tokens=96)
    slow = ablate_naive(loaded.model, req, every_boundary=every_boundary)
    _assert_ablation_matches(fast, slow)
    assert np.abs(fast.importance).max() > 1e-4  # the steps do change L̂ (not a vacuous match)
    if every_boundary:  # later boundaries only: NaN exactly where the boundary precedes the step's end
        bounds = fast.boundary_cuts
        for k, e in enumerate(bounds[1:]):
            assert np.isnan(fast.ablated_loss[k, bounds < e]).all()
            assert np.isfinite(fast.ablated_loss[k, bounds >= e]).all()


def test_ablation_full_loss_equals_the_engine(tiny_llama):
    req = _request(tiny_llama, SAMPLE_TRAJECTORY)
    fast = ablate(tiny_llama.model, req, every_boundary=True)
    engine = analyze(tiny_llama.model, req)
    at = dict(zip(engine.cuts.tolist(), engine.answer_nll.tolist()))
    assert np.abs(fast.full_loss - np.array([at[c] for c in fast.boundary_cuts])).max() <= TOL


@pytest.mark.parametrize("every_boundary", [False, True])
def test_attention_sums_to_one_and_equals_eager_full_forward(tiny_qwen2, every_boundary):
    req = _request(tiny_qwen2, SAMPLE_TRAJECTORY, answer="6 apples")
    before = tiny_qwen2.model.config._attn_implementation
    fast = probe_attention(tiny_qwen2.model, req, every_boundary=every_boundary, chunk_probes=4)
    slow = probe_attention_naive(tiny_qwen2.model, req, every_boundary=every_boundary)
    assert tiny_qwen2.model.config._attn_implementation == before  # the fast kernel is restored
    L, H = 4, 4
    assert fast.per_step.shape == (len(fast.cuts), L, H, len(req.boundary_cuts) - 1)
    total = fast.per_step.sum(-1) + fast.prompt_mass + fast.probe_mass
    np.testing.assert_allclose(total, 1.0, atol=1e-5)  # every key is in exactly one bucket
    np.testing.assert_allclose(fast.per_step, slow.per_step, atol=1e-5)
    np.testing.assert_allclose(fast.prompt_mass, slow.prompt_mass, atol=1e-5)
    assert (fast.per_step > 0).any()
    for row, c in enumerate(fast.cuts):  # steps not read yet get no attention
        later = np.array(req.boundary_cuts[:-1]) >= c
        assert (fast.per_step[row][..., later] == 0).all()
    heads = fast.receiver_heads(3)
    kurt = fast.kurtosis()
    assert heads[0][2] == pytest.approx(np.nanmax(kurt)) and heads[0][2] >= heads[1][2] >= heads[2][2]
    if every_boundary:  # issue 23: under a byte bound only the last cut keeps [L, H, S]; the rest agrees
        bounded = probe_attention(tiny_qwen2.model, req, every_boundary=True, chunk_probes=4, keep_bytes=0)
        assert bounded.per_step.shape == (1, L, H, len(req.boundary_cuts) - 1) and list(bounded.kept_rows) == [
            len(fast.cuts) - 1
        ]
        np.testing.assert_allclose(bounded.per_step[0], fast.per_step[-1], atol=1e-7)
        np.testing.assert_allclose(bounded.head_mean, fast.head_mean, atol=1e-7)
        np.testing.assert_allclose(bounded.prompt_mass, fast.prompt_mass, atol=1e-7)
        assert [h[:2] for h in bounded.receiver_heads(3)] == [h[:2] for h in heads]


def test_run_importance_is_stored_as_derived_data(tiny_run, tiny_llama):
    store, key = tiny_run
    run = store.open(key)
    payload = compute_run_importance(run, tiny_llama, store=store, attention=True)
    assert len(payload["ablation"]) == len(run.steps)
    assert payload["final_loss"] == pytest.approx(run.meta["summary"]["final_loss"], abs=TOL)
    req = probe_request_for_run(run, tiny_llama.tokenizer)
    naive = ablate_naive(tiny_llama.model, req)
    assert np.abs(np.array(payload["ablation"]) - naive.importance).max() <= TOL
    assert len(payload["attention"]["head_mean"]) == len(run.steps)
    assert load_importance(store.open(key), store) == payload  # reopened: same derived data


@pytest.mark.slow
def test_ablation_and_attention_equal_naive_on_smollm2(smollm2):
    req = _request(smollm2, " ".join([SAMPLE_TRAJECTORY] * 2))
    assert len(req.trajectory_ids) >= 200
    fast = ablate(smollm2.model, req)
    slow = ablate_naive(smollm2.model, req)
    _assert_ablation_matches(fast, slow)  # every step of a 200+ token run
    att = probe_attention(smollm2.model, req)
    ref = probe_attention_naive(smollm2.model, req)
    np.testing.assert_allclose(att.per_step.sum(-1) + att.prompt_mass + att.probe_mass, 1.0, atol=1e-4)
    np.testing.assert_allclose(att.per_step, ref.per_step, atol=1e-4)
