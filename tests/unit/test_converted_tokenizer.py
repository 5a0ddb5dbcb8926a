"""The tokenizer of a GGUF is converted once and kept beside the converted models (issue 26, issue
27 "Low"): a check before load (a too-long question, a refused flag) reads ``tokenizer.json``
from the copy instead of converting the GGUF's vocabulary again (14-30 s on this machine)."""

from __future__ import annotations

import pytest

from backend.engine import converted, models


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RAML_MODEL_CACHE", str(tmp_path / "models"))
    models._tokenizers.clear()
    yield tmp_path / "models"
    models._tokenizers.clear()


def _spy(monkeypatch, smol_tokenizer):
    """AutoTokenizer.from_pretrained recorded; a GGUF conversion answered by the real tokenizer
    (the conversion itself is what takes the seconds this cache saves)."""
    from transformers import AutoTokenizer

    calls: list[tuple[str, dict]] = []
    real = AutoTokenizer.from_pretrained

    def from_pretrained(source, **kwargs):
        calls.append((str(source), kwargs))
        return smol_tokenizer if "gguf_file" in kwargs else real(source, **kwargs)

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", from_pretrained)
    return calls


def test_tokenizer_is_converted_once_then_read_from_the_copy(fresh_cache, monkeypatch, smol_tokenizer):
    spec = models.resolve("smollm2-135m")
    calls = _spy(monkeypatch, smol_tokenizer)
    assert converted.tokenizer_dir(spec.fingerprint()) is None  # a fresh cache: nothing to read yet

    models.load_tokenizer(spec)
    ((source, kwargs),) = calls
    assert kwargs.get("gguf_file") == spec.gguf_file  # converted from the GGUF, the first time only
    copy = converted.tokenizer_dir(spec.fingerprint())
    assert copy == fresh_cache / f"{spec.fingerprint()}-tokenizer" and (copy / "tokenizer.json").is_file()

    models._tokenizers.clear()  # a new process
    again = models.load_tokenizer(spec)
    assert calls[-1] == (str(copy), {"trust_remote_code": False})  # the copy, no gguf_file
    text = "Maya has 5 apples. Wait, 2 * 4 = 8."
    assert again.encode(text) == smol_tokenizer.encode(text)


def test_a_converted_model_lends_its_tokenizer(fresh_cache, monkeypatch, smol_tokenizer):
    spec = models.resolve("smollm2-135m")
    model_copy = fresh_cache / f"{spec.fingerprint()}-float32"
    smol_tokenizer.save_pretrained(model_copy)
    (model_copy / converted.MARKER).write_text("{}")
    calls = _spy(monkeypatch, smol_tokenizer)
    models.load_tokenizer(spec)
    assert calls == [(str(model_copy), {"trust_remote_code": False})]


def test_an_unwritable_cache_still_gives_the_tokenizer(tmp_path, monkeypatch, smol_tokenizer):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RAML_MODEL_CACHE", str(blocker / "models"))
    models._tokenizers.clear()
    try:
        _spy(monkeypatch, smol_tokenizer)
        spec = models.resolve("smollm2-135m")
        assert models.load_tokenizer(spec) is smol_tokenizer  # the copy failed (logged), the check goes on
        assert converted.tokenizer_dir(spec.fingerprint()) is None
    finally:
        models._tokenizers.clear()


# Texts whose tokens a plain tokenizer.json and transformers' tokenizer could count differently:
# leading spaces, runs of whitespace, special-token strings, non-ASCII, emoji, long repeats.
COUNT_TEXTS = [
    "How many apples? " * 40,
    " leading space",
    "Émile a 3½ pommes — 中文 测试 🙂",
    "<|im_start|>user\nhi<|im_end|>",
    "\n\n  x\t y   ",
    "\\boxed{12:50}",
    "<think>\n\n</think>\n\n",
    "",
]


def test_the_light_counter_counts_what_the_full_tokenizer_counts(fresh_cache, smol_tokenizer, tiny_model_dir):
    """Limits checked before a load count with ``tokenizers`` alone (no transformers, no torch):
    the same ids as the full tokenizer, for the GGUF's converted copy and for a model folder."""
    from pathlib import Path

    from backend.engine import limits

    spec = models.resolve("smollm2-135m")
    assert models.load_token_counter(spec) is None  # a fresh cache: no copy yet, the full load converts
    models.load_tokenizer(spec)  # converts and keeps the copy
    for source in (spec, models.resolve(tiny_model_dir)):
        counter = models.load_token_counter(source)
        assert isinstance(counter, models.TokenCounter), source
        for text in COUNT_TEXTS:
            assert (
                counter(text, add_special_tokens=False)["input_ids"]
                == smol_tokenizer(text, add_special_tokens=False)["input_ids"]
            ), (source.name, text)
        assert limits.count_tokens_up_to(counter, COUNT_TEXTS[0], 10**6) == limits.count_tokens_up_to(
            smol_tokenizer, COUNT_TEXTS[0], 10**6
        )
    assert Path(models.load_token_counter(spec).path).parent == converted.tokenizer_dir(spec.fingerprint())


def test_tokenizers_that_may_change_the_encoding_take_the_full_load(tmp_path, tiny_model_dir):
    """A tokenizer class other than the plain backend (which may rebuild its normalizer when
    transformers loads it), remote code, or a folder without tokenizer.json: no light counter."""
    import json
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    spec = models.resolve(str(folder))
    assert models.load_token_counter(spec) is not None
    assert models.load_token_counter(spec, trust_remote_code=True) is None
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps(config | {"tokenizer_class": "LlamaTokenizerFast"}))
    assert models.load_token_counter(spec) is None
    config_path.write_text(json.dumps(config))
    (folder / "tokenizer.json").unlink()
    assert models.load_token_counter(spec) is None
