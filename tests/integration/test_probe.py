"""The single-pass engine equals the naive one-prompt-per-cut method (docs/architecture.md §4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY

from backend.engine.architecture import default_proxy_layers, locate
from backend.engine.probe import ProbeRequest, analyze, analyze_naive
from backend.engine.trajectory import RAML_TEMPLATE, build_prompt, encode, encode_with_offsets, segment

TOL = 1e-4  # nats, float32 (the design's bar)


def _long_trajectory(n_repeats: int = 3) -> str:
    return " ".join([SAMPLE_TRAJECTORY] * n_repeats)


def _request(loaded, text: str, answer: str = "6", cuts=None) -> ProbeRequest:
    tok = loaded.tokenizer
    ids, offsets = encode_with_offsets(tok, text)
    steps = segment(text, offsets, "sentences")
    n_layers = locate(loaded.model).n_layers
    return ProbeRequest(
        prompt_ids=encode(tok, build_prompt(tok, SAMPLE_QUESTION, think=False)),
        trajectory_ids=ids,
        template_ids=encode(tok, RAML_TEMPLATE),
        answer_ids=encode(tok, answer),
        cuts=cuts,
        boundary_cuts=[0] + [s.end for s in steps],
        proxy_layers=default_proxy_layers(n_layers),
    )


def assert_results_match(fast, slow, tol=TOL):
    """``slow`` (naive) may hold a subset of ``fast``'s cut points; those are compared."""
    rows = np.searchsorted(fast.cuts, slow.cuts)
    np.testing.assert_array_equal(fast.cuts[rows], slow.cuts)
    np.testing.assert_array_equal(fast.boundary_cuts, slow.boundary_cuts)
    assert np.abs(fast.answer_nll[rows] - slow.answer_nll).max() <= tol
    assert np.abs(fast.answer_token_nll[rows] - slow.answer_token_nll).max() <= tol
    assert np.abs(fast.entropy[rows] - slow.entropy).max() <= tol
    np.testing.assert_allclose(fast.p_first[rows], slow.p_first, rtol=1e-3, atol=1e-6)
    # ranks may differ only among logits that tie within float error (random models: many near-ties)
    assert np.abs(fast.rank_first[rows].astype(int) - slow.rank_first).max() <= 50
    assert np.abs(fast.lens_nll - slow.lens_nll).max() <= tol
    assert np.abs(fast.hidden - slow.hidden).max() <= 1e-3 * max(1.0, np.abs(slow.hidden).max())
    for layer in slow.proxy_preact:
        scale = np.abs(slow.proxy_preact[layer]).max()
        assert np.abs(fast.proxy_preact[layer] - slow.proxy_preact[layer]).max() <= 1e-4 * max(1.0, scale)
        assert np.abs(fast.proxy_input[layer] - slow.proxy_input[layer]).max() <= 1e-4 * max(
            1.0, np.abs(slow.proxy_input[layer]).max()
        )


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_qwen2"])
def test_engine_equals_naive_on_tiny_models(request, fixture):
    loaded = request.getfixturevalue(fixture)
    req = _request(loaded, _long_trajectory())
    assert len(req.trajectory_ids) >= 200
    fast = analyze(loaded.model, req, chunk_tokens=96)
    slow = analyze_naive(loaded.model, req)
    assert len(fast.cuts) == len(req.trajectory_ids) + 1
    assert_results_match(fast, slow)


def test_chunk_size_does_not_change_results(tiny_llama):
    req = _request(tiny_llama, SAMPLE_TRAJECTORY)
    small = analyze(tiny_llama.model, req, chunk_tokens=1)  # one probe per forward
    large = analyze(tiny_llama.model, req, chunk_tokens=100_000)  # all probes in one forward
    assert np.abs(small.answer_nll - large.answer_nll).max() <= TOL
    assert np.abs(small.lens_nll - large.lens_nll).max() <= TOL


def test_strided_cuts_are_a_subset_of_all_cuts(tiny_llama):
    full = analyze(tiny_llama.model, _request(tiny_llama, SAMPLE_TRAJECTORY))
    n = len(full.cuts) - 1
    strided = analyze(tiny_llama.model, _request(tiny_llama, SAMPLE_TRAJECTORY, cuts=list(range(0, n + 1, 7))))
    index = {c: i for i, c in enumerate(full.cuts)}
    picked = np.array([index[c] for c in strided.cuts])
    assert set(range(0, n + 1, 7)) <= set(strided.cuts.tolist())  # boundaries are always added
    assert np.abs(strided.answer_nll - full.answer_nll[picked]).max() <= TOL


def test_last_layer_lens_is_the_model_output(tiny_llama):
    res = analyze(tiny_llama.model, _request(tiny_llama, SAMPLE_TRAJECTORY))
    at_boundaries = res.answer_nll[np.isin(res.cuts, res.boundary_cuts)]
    assert np.abs(res.lens_nll[:, -1] - at_boundaries).max() <= TOL
    assert res.lens_top_ids.shape == (len(res.boundary_cuts), locate(tiny_llama.model).n_layers, 5)
    assert np.all(np.diff(res.lens_top_probs, axis=-1) <= 1e-7)  # top-k sorted


def test_loss_matches_plain_cross_entropy(tiny_llama):
    """Independent check of L̂(c) with torch's cross-entropy on a hand-built prompt."""
    req = _request(tiny_llama, SAMPLE_TRAJECTORY)
    res = analyze(tiny_llama.model, req)
    m_t, m_a = len(req.template_ids), len(req.answer_ids)
    for c in (0, 17, len(req.trajectory_ids)):
        ids = req.prompt_ids + req.trajectory_ids[:c] + req.template_ids + req.answer_ids
        with torch.no_grad():
            logits = tiny_llama.model(torch.tensor([ids])).logits[0]
        start = len(ids) - m_a - 1
        expected = torch.nn.functional.cross_entropy(logits[start : start + m_a], torch.tensor(req.answer_ids))
        assert abs(res.answer_nll[list(res.cuts).index(c)] - expected.item()) <= TOL
        assert m_t >= 1


def test_golden_values_tiny_llama(tiny_llama):
    """Seeded tiny Llama (seed 0, torch 2.13 CPU): values recorded when the engine was verified
    against the naive method; they guard against silent changes in tokenization, segmentation,
    prompt building or the engine."""
    res = analyze(tiny_llama.model, _request(tiny_llama, SAMPLE_TRAJECTORY))
    assert len(res.cuts) == 105
    assert res.boundary_cuts.tolist() == [0, 7, 26, 46, 58, 74, 91, 97, 104]
    golden_loss = {0: 10.630642, 26: 10.619553, 52: 10.628182, 104: 10.619566}
    golden_rank = {0: 6091, 26: 5424, 52: 5971, 104: 5400}
    for cut, loss in golden_loss.items():
        assert abs(res.answer_nll[cut] - loss) <= 1e-4
        assert abs(int(res.rank_first[cut]) - golden_rank[cut]) <= 5
    np.testing.assert_allclose(res.lens_nll[-1], [10.607825, 10.658010, 10.643974, 10.619566], atol=1e-4)


def test_bad_requests_raise(tiny_llama):
    req = _request(tiny_llama, SAMPLE_TRAJECTORY)
    req.answer_ids = []
    with pytest.raises(ValueError, match="answer"):
        analyze(tiny_llama.model, req)
    req = _request(tiny_llama, SAMPLE_TRAJECTORY)
    req.template_ids = []
    with pytest.raises(ValueError, match="template"):
        analyze(tiny_llama.model, req)
    req = _request(tiny_llama, SAMPLE_TRAJECTORY)
    req.boundary_cuts = []
    with pytest.raises(ValueError, match="boundary_cuts is empty"):
        analyze(tiny_llama.model, req)


def chunk_edge_cuts(n_cuts: int, per_chunk: int) -> set[int]:
    """The first and last cut point of every chunk of ``per_chunk`` probes (all cuts 0..n_cuts-1)."""
    starts = range(0, n_cuts, per_chunk)
    return {c for s in starts for c in (s, min(s + per_chunk, n_cuts) - 1)}


@pytest.mark.slow
def test_engine_equals_naive_on_smollm2(smollm2):
    """The real model, every cut point through the engine's default path (CPU chunks), against the
    naive method at every step boundary, both edges of every chunk and evenly spaced cuts between
    (about a fifth of the cuts: the naive method costs one full prompt per cut point; the tiny
    models above compare every cut)."""
    req = _request(smollm2, _long_trajectory(2))
    n = len(req.trajectory_ids)
    assert n >= 200
    fast = analyze(smollm2.model, req)
    assert len(fast.cuts) == n + 1
    per_chunk = int(fast.timings["chunk_probes"])
    sampled = chunk_edge_cuts(n + 1, per_chunk) | set(np.linspace(0, n, 12).round().astype(int).tolist())
    assert len(sampled) >= 2 * ((n + 1) // per_chunk)  # several chunks, each checked at both edges
    sparse = _request(smollm2, _long_trajectory(2), cuts=sorted(sampled))
    slow = analyze_naive(smollm2.model, sparse)
    assert set(req.boundary_cuts) <= set(slow.cuts.tolist()) and len(slow.cuts) < len(fast.cuts) / 3
    assert_results_match(fast, slow)


@pytest.mark.parametrize("chunk", [[5], [0, 1, 2], [3, 9, 10, 30], [7, 7 + 64, 7 + 128]])
def test_the_chunk_mask_is_the_block_pattern_of_the_design(chunk):
    """Probe j's rows see the cached keys [0, P + c_j) and its own tokens causally; the mask
    written in place must equal the boolean construction it replaced (prefix compare,
    repeated per probe token, beside a block-diagonal of causal blocks)."""
    from backend.engine.probe import chunk_mask

    P, m = 4, 3
    visible = P + max(chunk)
    lo = torch.finfo(torch.float32).min
    block = torch.full((m, m), lo).triu_(1)
    sees = torch.arange(visible)[None, :] < (P + torch.tensor(chunk))[:, None]
    own = torch.block_diag(*[torch.ones(m, m, dtype=torch.bool).tril()] * len(chunk))
    allowed = torch.cat([sees.repeat_interleave(m, 0), own], 1)
    expected = torch.zeros(allowed.shape).masked_fill_(~allowed, lo)
    assert torch.equal(chunk_mask(P, chunk, visible, block), expected)


def test_chunk_edges_cover_every_chunk():
    assert chunk_edge_cuts(10, 4) == {0, 3, 4, 7, 8, 9}
    assert chunk_edge_cuts(3, 32) == {0, 2}


def test_readout_batches_are_sized_by_bytes(tiny_llama):
    """Issue 15 item 1: the LM-head batch holds rows x m_a x V logits within the byte budget, so a
    long answer gets fewer rows per batch; a one-row budget gives the same numbers."""
    from backend.engine.probe import READOUT_BYTES, readout_rows

    V = 49152
    for m_a in (1, 16, 100, 400):
        rows = readout_rows(m_a, V)
        assert rows * m_a * V * 4 <= READOUT_BYTES or rows == 1
        assert (rows + 1) * m_a * V * 4 * 4 > READOUT_BYTES  # the largest batch that fits
    assert readout_rows(400, V) < readout_rows(1, V) // 100
    req = _request(tiny_llama, SAMPLE_TRAJECTORY, answer="6 apples, because 5 + 8 - 6 - 1 = 6")
    assert len(req.answer_ids) > 10
    default = analyze(tiny_llama.model, req, chunk_tokens=96)
    one_row = analyze(tiny_llama.model, req, chunk_tokens=96, readout_bytes=1)
    assert np.abs(default.answer_token_nll - one_row.answer_token_nll).max() <= 1e-5
    assert np.abs(default.lens_nll - one_row.lens_nll).max() <= 1e-5
    np.testing.assert_array_equal(default.lens_top_ids, one_row.lens_top_ids)
    np.testing.assert_array_equal(default.hidden, one_row.hidden)
