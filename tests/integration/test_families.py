"""The true loss on every family the README names (issue 12 item 3): the engine's readout goes
through the lens (final norm + LM head + the family's logit transform) and equals the naive
method, which reads the model's own logits, to 1e-4 nats. Tiny random models built from configs;
the logit transforms are set strong enough that ignoring them would fail by far."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_probe import assert_results_match

from backend.engine.architecture import default_proxy_layers, locate
from backend.engine.lens import LogitLens, LogitTransform, check_readout, readout_gap
from backend.engine.probe import ProbeRequest, analyze, analyze_naive
from backend.errors import ModelLoadError

VOCAB = 256
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
)
# model_type -> extra config; strong transforms (a cap of 0.5 nats, scales of 4) so a readout
# without them is off by far more than the 1e-4 bar
FAMILIES = {
    "llama": {},
    "qwen2": {},
    "qwen3": {"head_dim": 8},
    "mistral": {"sliding_window": None},
    "phi3": {"pad_token_id": 0},
    "gemma2": {"final_logit_softcapping": 0.5, "head_dim": 8, "sliding_window": 4096},
    "gemma3_text": {"final_logit_softcapping": 0.5, "head_dim": 8, "sliding_window": 4096},
    "gpt_neox": {"num_attention_heads": 4},
    "cohere": {"logit_scale": 4.0},
    "granite": {"logits_scaling": 0.25},
}
TRANSFORMED = {"gemma2", "gemma3_text", "cohere", "granite"}


def build_family(model_type: str, seed: int = 0):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.for_model(model_type, **(COMMON | FAMILIES[model_type]))
    config._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # random init is near zero; widen the head so logits are large
        model.get_output_embeddings().weight.mul_(8.0)
    return model


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_model(request):
    return request.param, build_family(request.param)


def _request(model, n: int = 40) -> ProbeRequest:
    rng = np.random.default_rng(0)
    ids = rng.integers(3, VOCAB, size=n + 20).tolist()
    return ProbeRequest(
        prompt_ids=ids[:8],
        trajectory_ids=ids[8 : 8 + n],
        template_ids=ids[8 + n : 8 + n + 4],
        answer_ids=ids[8 + n + 4 : 8 + n + 7],
        cuts=[0, 5, 13, 27, n],
        boundary_cuts=[0, 13, n],
        proxy_layers=default_proxy_layers(locate(model).n_layers),
    )


def test_engine_equals_naive_on_every_family(family_model):
    name, model = family_model
    req = _request(model)
    fast = analyze(model, req, chunk_tokens=16)
    slow = analyze_naive(model, req)
    assert_results_match(fast, slow)
    # the last lens row is the model's own output at the boundaries
    at_boundaries = slow.answer_nll[np.isin(slow.cuts, slow.boundary_cuts)]
    assert np.abs(fast.lens_nll[:, -1] - at_boundaries).max() <= 1e-4, name


def test_lens_reproduces_the_model_and_the_bare_head_would_not(family_model):
    name, model = family_model
    arch = locate(model)
    assert readout_gap(model, arch.lens, arch.layers[-1]) <= 1e-4
    check_readout(name, model, arch.lens, arch.layers[-1])  # passes
    bare = LogitLens(arch.final_norm, arch.lm_head)  # final norm + LM head only
    gap = readout_gap(model, bare, arch.layers[-1])
    if name in TRANSFORMED:
        assert not arch.lens.transform.is_identity
        assert gap > 1e-2  # the bug of issue 12: this is what ignoring the transform costs
        with pytest.raises(ModelLoadError, match=r"does not reproduce.*differ .* by [0-9.e-]+ nats") as err:
            check_readout(name, model, bare, arch.layers[-1])
        assert "\n" not in str(err.value)
    else:
        assert arch.lens.transform.is_identity and gap <= 1e-4


def test_transform_read_from_config():
    from transformers import AutoConfig

    gemma = AutoConfig.for_model("gemma2", final_logit_softcapping=30.0)
    assert LogitTransform(softcap=30.0) == locate_transform(gemma)
    assert locate_transform(AutoConfig.for_model("cohere", logit_scale=0.0625)).scale == 0.0625
    assert locate_transform(AutoConfig.for_model("granite", logits_scaling=8.0)).scale == 0.125
    assert locate_transform(AutoConfig.for_model("llama")).is_identity
    x = torch.tensor([-100.0, 0.0, 1.0, 100.0])
    torch.testing.assert_close(LogitTransform(softcap=30.0)(x), 30.0 * torch.tanh(x / 30.0))


def locate_transform(config):
    from backend.engine.lens import logit_transform_of

    return logit_transform_of(config)


def test_load_checks_the_readout_once(tmp_path, monkeypatch, smol_tokenizer):
    """At load a Gemma2 folder loads (its softcap is applied); with the transform hidden from the
    lens, the same folder is refused by name, with one line, before any analysis."""
    from backend.engine import architecture, models

    model = build_family("gemma2")
    model.save_pretrained(tmp_path, safe_serialization=True)
    smol_tokenizer.save_pretrained(tmp_path)
    loaded = models.load_model(str(tmp_path))
    assert locate(loaded.model).lens.transform.softcap == 0.5
    models._loaded.clear()
    monkeypatch.setattr(architecture, "logit_transform_of", lambda config: LogitTransform())
    with pytest.raises(ModelLoadError, match=r"Gemma2ForCausalLM\) applies something to its logits") as err:
        models.load_model(str(tmp_path))
    assert "\n" not in str(err.value)
    models._loaded.clear()


@pytest.mark.parametrize("model_type", ["mistral", "gemma2"])
def test_a_sliding_window_shorter_than_the_sequence_is_refused(model_type):
    """The engine's mask is full attention; with a window of 8 tokens it would be wrong, so it refuses."""
    from backend.errors import InputError

    extra = FAMILIES[model_type] | {"sliding_window": 8}
    from transformers import AutoConfig, AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **(COMMON | extra))).eval()
    with pytest.raises(InputError, match="sliding window of 8 tokens"):
        analyze(model, _request(model))
