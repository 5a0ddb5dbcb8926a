"""The tuned lens (backend/engine/tuned_lens.py, backend/store/lenses.py): identity at init is the
logit lens, training lowers the held-out KL, storage round-trips bit-exactly, and a lens of another
model is refused in one line. Tiny random models, a few optimiser steps."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from backend.engine import tuned_lens as tl
from backend.engine.architecture import locate
from backend.engine.probe import ProbeRequest, analyze, analyze_naive
from backend.store import lenses


def _request(tok) -> ProbeRequest:
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    traj = enc("First add two and two. Then add two more to get six.")
    return ProbeRequest(
        prompt_ids=enc("Question: what is 2+2+2?\n"),
        trajectory_ids=traj,
        template_ids=enc("\n\n**Final Answer**\n\\boxed{"),
        answer_ids=enc("6"),
        cuts=[0, 4, len(traj)],
        boundary_cuts=[0, 4, len(traj)],
    )


@pytest.fixture(scope="module")
def bundled(tiny_llama):
    """The bundled questions as training and held-out text (split by question, real tokens)."""
    from backend.analysis.lens import corpus

    return corpus.build(tiny_llama, corpus.bundled_examples(), tokens=1 << 20)


@pytest.fixture(scope="module")
def trained(tiny_llama, bundled):
    arch = locate(tiny_llama.model)
    torch.manual_seed(0)
    lens, report = tl.train(
        tiny_llama.model, arch, bundled.train, tl.TrainSettings(steps=8, window=64, batch_windows=2)
    )
    return lens, report


def test_identity_translators_reproduce_the_logit_lens_exactly(tiny_llama):
    arch = locate(tiny_llama.model)
    identity = tl.TunedLens.identity(arch)
    h = torch.randn(3, 5, identity.d)
    for layer in range(arch.n_layers):
        assert torch.equal(identity(h, layer), arch.lens(h, layer))
    req = _request(tiny_llama.tokenizer)
    logit, tuned = analyze(tiny_llama.model, req), analyze(tiny_llama.model, req, lens=identity)
    for name in ("lens_nll", "lens_p_first", "lens_top_ids", "lens_top_probs", "answer_nll", "hidden"):
        assert np.array_equal(getattr(logit, name), getattr(tuned, name)), name


def test_training_lowers_the_held_out_kl_at_every_layer_but_the_last(tiny_llama, trained, bundled):
    lens, report = trained
    arch = locate(tiny_llama.model)
    held_out = bundled.held_out  # questions the lens never saw
    assert held_out and not {tuple(s) for s in held_out} & {tuple(s) for s in bundled.train}
    before = tl.layer_kl(tiny_llama.model, arch, arch.lens, held_out)
    after = tl.layer_kl(tiny_llama.model, arch, lens, held_out)
    assert before[-1] == after[-1] == pytest.approx(0.0, abs=1e-5)  # the last layer is the model's own readout
    assert np.all(after[:-1] < before[:-1]), (before, after)
    assert report.steps == 8 and report.train_kl[-1] < report.train_kl[0]
    assert torch.count_nonzero(lens.translators[0].weight) == 0  # the embeddings' translator stays identity


def test_the_engine_reads_the_grid_through_the_translators(tiny_llama, trained):
    lens, _ = trained
    req = _request(tiny_llama.tokenizer)
    logit, tuned = analyze(tiny_llama.model, req), analyze(tiny_llama.model, req, lens=lens)
    naive = analyze_naive(tiny_llama.model, req, lens=lens)
    np.testing.assert_allclose(tuned.lens_nll, naive.lens_nll, atol=1e-4)
    assert np.array_equal(tuned.answer_nll, logit.answer_nll)  # L̂ is the model's own readout
    assert np.array_equal(tuned.lens_nll[:, -1], logit.lens_nll[:, -1])  # the last layer has no translator
    assert not np.allclose(tuned.lens_nll[:, :-1], logit.lens_nll[:, :-1])
    arch = locate(tiny_llama.model)
    h = torch.from_numpy(tuned.hidden[:, 0])  # [K, d] after layer 0 at the probe position
    first = torch.softmax(lens(h, 0), -1).topk(req.top_k, -1)
    assert np.array_equal(first.indices.numpy(), tuned.lens_top_ids[:, 0])
    assert arch.lens.kind == "logit" and lens.kind == "tuned"


def test_save_load_round_trips_bit_exactly(tmp_path, tiny_llama, trained):
    lens, _ = trained
    config = tl.reference_config(tiny_llama, lens)
    folder = lenses.save_lens(tmp_path, tiny_llama.fingerprint, lens.state_arrays(), config)
    stored = lenses.load_lens(tmp_path, tiny_llama.fingerprint)
    assert stored is not None and stored.path == folder
    assert stored.arrays.keys() == lens.state_arrays().keys()
    for name, value in lens.state_arrays().items():
        assert stored.arrays[name].dtype == np.float32 and np.array_equal(stored.arrays[name], value), name
    back = tl.from_arrays(locate(tiny_llama.model), stored.arrays, stored.config, str(folder))
    h = torch.randn(2, 3, lens.d)
    for layer in range(lens.n_layers):
        assert torch.equal(back(h, layer), lens(h, layer))
    assert stored.config["model_fingerprint"] == tiny_llama.fingerprint
    assert stored.config["num_hidden_layers"] == 4 and stored.config["d_model"] == 64
    assert lenses.load_lens(tmp_path, "0" * 16) is None


def test_a_lens_of_another_model_is_refused_in_one_line(tmp_path, tiny_llama, trained):
    lens, _ = trained
    folder = lenses.save_lens(
        tmp_path, tiny_llama.fingerprint, lens.state_arrays(), tl.reference_config(tiny_llama, lens)
    )
    other = lenses.lens_dir(tmp_path, "feedfacefeedface")
    other.parent.mkdir(parents=True)
    shutil.copytree(folder, other)
    with pytest.raises(lenses.LensError) as err:
        lenses.load_lens(tmp_path, "feedfacefeedface")
    text = str(err.value)
    assert "\n" not in text and tiny_llama.fingerprint in text and "feedfacefeedface" in text


def test_a_damaged_or_misshapen_lens_is_refused_in_one_line(tmp_path, tiny_llama, trained, smol_tokenizer):
    from conftest import build_tiny

    lens, _ = trained
    folder = lenses.save_lens(
        tmp_path, tiny_llama.fingerprint, lens.state_arrays(), tl.reference_config(tiny_llama, lens)
    )
    params = folder / "params.safetensors"
    blob = bytearray(params.read_bytes())
    blob[-1] ^= 1
    params.write_bytes(bytes(blob))
    with pytest.raises(lenses.LensError, match="checksum") as err:
        lenses.load_lens(tmp_path, tiny_llama.fingerprint)
    assert "\n" not in str(err.value)
    shallow = build_tiny("llama", smol_tokenizer, n_layers=2)
    config = json.loads((folder / "config.json").read_text())
    with pytest.raises(ValueError, match="made for 4 layers of width 64, this model has 2") as err:
        tl.from_arrays(locate(shallow.model), lens.state_arrays(), config, "lens")
    assert "\n" not in str(err.value)
