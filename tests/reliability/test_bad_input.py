"""Issue 7, bad input: question files, over-long trajectories, awkward answers, unloadable or
unsafe models, and run keys that try to leave the cache. Every case ends in one clear line
naming what is wrong, a non-zero exit, and nothing half-written in the cache.
"""

from __future__ import annotations

import copy
import json
import pickle
import re

import pytest
from _reliability_support import (
    assert_empty_cache,
    cache_state,
    one_error_line,
    run_cli,
    save_tiny_model,
)
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY, build_tiny

from backend import cli
from backend.engine.trajectory import encode, encode_with_offsets
from backend.errors import ContextTooLongError, InputError, ModelLoadError, RunNotFoundError
from backend.io.readers import parse_jsonl_bytes, read_jsonl, read_questions
from backend.io.records import MAX_LINE_BYTES
from backend.pipeline.run import RunRequest, run_question
from backend.store.runs import RunStore, check_key

GOOD = b'{"id": "a", "question": "What is 2 + 2?", "answer": "4"}'


# ----------------------------------------------------------------------------- question files
@pytest.mark.parametrize(
    "bad_line, field, message",
    [
        (b'{"question": "What is 2 + 2?"', None, "invalid JSON"),
        (b'{"answer": "4"}', "question", "missing"),
        (b'{"question": 42}', "question", "must be a string, got int"),
        (b'{"question": ["a", "b"]}', "question", "must be a string, got list"),
        (b'{"question": "   "}', "question", "is empty"),
        (b'{"question": "q", "answer": ["4"]}', "answer", "must be a string or number, got list"),
        (b'{"question": "q", "answer": true}', "answer", "got bool"),
        (b'{"question": "q", "answer": NaN}', "answer", "finite number"),
        (b'{"question": "q", "answer": ""}', "answer", "is empty"),
        (b'{"question": "q", "trajectory": 7}', "trajectory", "must be a string, got int"),
        (b'{"question": "q", "id": {"n": 1}}', "id", "must be a string or integer"),
        (b'["question", "q"]', None, "expected a JSON object, got list"),
        (b'{"question": "q \\ud800"}', "question", "lone surrogate"),
        (b"\x89PNG\r\x1a\xff\xfe junk \xc3\x28", None, "not valid UTF-8"),
        (b"[" * 100_000, None, "nested too deeply"),
        (b'{"question": "' + b"x" * (MAX_LINE_BYTES + 10) + b'"}', None, "longer than 1 MiB"),
    ],
    ids=[
        "invalid-json",
        "missing-question",
        "int-question",
        "list-question",
        "blank-question",
        "list-answer",
        "bool-answer",
        "nan-answer",
        "empty-answer",
        "int-trajectory",
        "dict-id",
        "not-an-object",
        "lone-surrogate",
        "binary-junk",
        "deep-nesting",
        "huge-line",
    ],
)
@pytest.mark.parametrize("reader", ["questions_io", "datasets_io"])  # app upload / CLI batch
def test_bad_line_is_named_and_the_others_still_parse(tmp_path, reader, bad_line, field, message):
    path = tmp_path / "questions.jsonl"
    path.write_bytes(GOOD + b"\n" + bad_line + b"\n" + GOOD.replace(b'"a"', b'"c"') + b"\n")
    records, errors = read_jsonl(path) if reader == "questions_io" else read_questions(path)
    assert [(r.line, r.id) for r in records] == [(1, "a"), (3, "c")]
    assert len(errors) == 1
    error = errors[0]
    assert (error.line, error.field) == (2, field)
    text = str(error)
    assert text.startswith(f"{path}:2: ") and message in text and "\n" not in text
    if field:
        assert f"field '{field}'" in text


@pytest.mark.parametrize("content", [b"", b"\n\n  \r\n", b"\xef\xbb\xbf"], ids=["empty", "blank-lines", "bom-only"])
def test_empty_file_is_one_error_naming_the_file(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    records, errors = read_jsonl(path)
    assert records == [] and [str(e) for e in errors] == [f"{path}: file has no questions"]


def test_bom_and_crlf_are_accepted():
    data = b"\xef\xbb\xbf" + GOOD + b"\r\n" + b'{"question": "Why?\\r\\nReally?", "answer": 3}\r\n'
    records, errors = parse_jsonl_bytes(data, "q.jsonl")
    assert errors == []
    assert [(r.line, r.question, r.answer) for r in records] == [
        (1, "What is 2 + 2?", "4"),
        (2, "Why?\r\nReally?", "3"),
    ]  # CR inside a JSON string is kept


def test_whole_binary_file_never_raises(tmp_path):
    path = tmp_path / "image.jsonl"
    path.write_bytes(bytes(range(256)) * 64)
    records, errors = read_jsonl(path)
    assert records == [] and errors
    assert all(str(e).startswith(f"{path}:") for e in errors)


def test_utf16_and_missing_files_are_one_clear_error(tmp_path):
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_bytes(GOOD.decode().encode("utf-16"))
    assert [str(e) for e in read_jsonl(utf16)[1]] == [f"{utf16}: file is UTF-16; save it as UTF-8"]
    missing = tmp_path / "nope.jsonl"
    assert [str(e) for e in read_jsonl(missing)[1]] == [f"{missing}: cannot read file: No such file or directory"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, smol_tokenizer):
    """Tiny Llama on disk with a 256-token context (fast to load in a subprocess)."""
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny256", smol_tokenizer, max_positions=256)


@pytest.mark.slow
def test_batch_runs_good_lines_reports_bad_ones_and_exits_nonzero(tmp_path, model_dir, capsys):
    long_trajectory = " ".join([SAMPLE_TRAJECTORY] * 4)  # ~400 tokens: more than the 256-token context
    lines = [
        {"id": "good1", "question": SAMPLE_QUESTION, "answer": "6", "trajectory": SAMPLE_TRAJECTORY},
        '{"id": "broken", "question": ',
        {"id": "noq", "answer": "3"},
        {"id": "toolong", "question": "How many?", "answer": "6", "trajectory": long_trajectory},
        {"id": "good2", "question": "And now?", "answer": "13", "trajectory": SAMPLE_TRAJECTORY},
    ]
    text = "\r\n".join(ln if isinstance(ln, str) else json.dumps(ln) for ln in lines) + "\r\n"
    questions = tmp_path / "questions.jsonl"
    questions.write_bytes(b"\xef\xbb\xbf" + text.encode())  # BOM + CRLF, as Windows editors save it
    cache = tmp_path / "cache"

    first = run_cli(cache, "batch", questions, "--engine", "local", "--model", model_dir, "--quiet")
    assert first.returncode != 0
    errors = [ln for ln in first.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 3, first.stderr
    assert f"{questions}:2: invalid JSON" in errors[0]
    assert f"{questions}:3: field 'question': missing" in errors[1]
    assert f"{questions}:4: trajectory has" in errors[2] and "--truncate" in errors[2]
    assert "Traceback" not in first.stderr
    keys = {ln.split("\t")[0]: ln.split("\t")[-1] for ln in first.stdout.splitlines() if "\t" in ln}
    assert set(keys) == {"good1", "good2"}
    state = cache_state(cache)
    assert state["runs"] == state["indexed"] == set(keys.values()) and state["tmp"] == []
    store = RunStore(cache)
    assert {store.open(k).meta["label"] for k in keys.values()} == {"good1", "good2"}

    good_only = tmp_path / "good.jsonl"
    good_only.write_text("\n".join(json.dumps(lines[i]) for i in (0, 4)) + "\n")
    capsys.readouterr()  # the same command again, in this process (the first was the real one)
    code = cli.main(
        ["--cache-dir", str(cache), "batch", str(good_only), "--engine", "local", "--model", str(model_dir), "--quiet"]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "0 computed, 2 cached, 0 failed" in err  # resumable: nothing recomputed
    assert cache_state(cache)["runs"] == set(keys.values())


# ----------------------------------------------------------------------------- context length
@pytest.fixture(scope="module")
def small_context_model(smol_tokenizer):
    small = build_tiny("llama", smol_tokenizer, seed=5)
    small.model.config.max_position_embeddings = 128
    return small


def test_overlong_trajectory_is_refused_then_truncated_to_fit(store, small_context_model, smol_tokenizer):
    long_text = " ".join([SAMPLE_TRAJECTORY] * 3)
    n_original = len(encode_with_offsets(smol_tokenizer, long_text)[0])
    with pytest.raises(ContextTooLongError) as refused:
        run_question(
            RunRequest(question="How many?", answer="6", trajectory=long_text), store, loaded=small_context_model
        )
    message = str(refused.value)
    assert f"trajectory has {n_original} tokens" in message and "context of 128" in message
    assert "--truncate" in message and "\n" not in message
    assert_empty_cache(store.root)

    outcome = run_question(
        RunRequest(question="How many?", answer="6", trajectory=long_text, truncate=True),
        store,
        loaded=small_context_model,
    )
    meta = store.open(outcome.key).meta
    kept = meta["trajectory"]
    assert long_text.endswith(kept) and len(kept) < len(long_text)  # the last part is kept
    assert meta["truncated_tokens"] == n_original - meta["summary"]["n_tokens"] > 0
    used = (
        len(encode(smol_tokenizer, meta["prompt"]))
        + meta["summary"]["n_tokens"]
        + len(encode(smol_tokenizer, meta["template"]))
        + len(meta["answer_ids"])
    )
    assert used <= 128
    assert any("truncated" in w for w in meta["warnings"]) and outcome.warnings == meta["warnings"]


def test_cli_truncate_flag(tmp_path, model_dir):
    long_file = tmp_path / "long.txt"
    long_file.write_text(" ".join([SAMPLE_TRAJECTORY] * 4))
    cache = tmp_path / "cache"
    args = [
        "--cache-dir",
        str(cache),
        "run",
        "--question",
        "How many?",
        "--answer",
        "6",
        "--trajectory-file",
        str(long_file),
        "--model",
        str(model_dir),
        "--quiet",
    ]
    assert cli.main(args) == cli.EXIT_INPUT
    assert_empty_cache(cache)
    assert cli.main(args + ["--truncate"]) == 0
    (key,) = cache_state(cache)["runs"]
    meta = RunStore(cache).open(key).meta
    assert meta["truncated_tokens"] > 0 and meta["summary"]["n_tokens"] < 256


def test_cli_overlong_error_is_one_line(tmp_path, model_dir, capsys):
    long_file = tmp_path / "long.txt"
    long_file.write_text(" ".join([SAMPLE_TRAJECTORY] * 4))
    code = cli.main(
        [
            "--cache-dir",
            str(tmp_path / "c"),
            "run",
            "--question",
            "q",
            "--answer",
            "6",
            "--trajectory-file",
            str(long_file),
            "--model",
            str(model_dir),
            "--quiet",
        ]
    )
    assert code == cli.EXIT_INPUT
    line = one_error_line(capsys.readouterr().err)
    assert "context of 256" in line and "--truncate" in line


# ----------------------------------------------------------------------------- answers
def test_answer_that_tokenizes_to_nothing(store, smol_tokenizer):
    from tokenizers import normalizers

    tokenizer = copy.deepcopy(smol_tokenizer)  # a normalizer that drops zero-width spaces, like many do
    tokenizer.backend_tokenizer.normalizer = normalizers.Replace("\u200b", "")
    model = build_tiny("llama", tokenizer, seed=6)
    assert encode(tokenizer, "\u200b\u200b") == []
    with pytest.raises(InputError, match="tokenizes to nothing"):
        run_question(RunRequest(question="q", answer="\u200b\u200b", trajectory=SAMPLE_TRAJECTORY), store, loaded=model)
    with pytest.raises(InputError, match="answer is empty"):
        run_question(RunRequest(question="q", answer=" \n ", trajectory=SAMPLE_TRAJECTORY), store, loaded=model)
    assert_empty_cache(store.root)


def test_answer_already_in_trajectory_is_flagged_not_dropped(tiny_run, smol_tokenizer):
    store, key = tiny_run  # answer "6"; the trajectory says "She gives 6 to her friend" early on
    run = store.open(key)
    first = run.meta["first_answer_cut"]
    n = run.meta["summary"]["n_tokens"]
    assert first is not None and 0 < first < n
    ids, offsets = encode_with_offsets(smol_tokenizer, run.meta["trajectory"])
    standalone_6 = re.compile(r"(?<![\w.])6(?!\w)")
    assert standalone_6.search(run.meta["trajectory"][: offsets[first - 1][1]])  # read by cut `first`
    assert not standalone_6.search(run.meta["trajectory"][: offsets[first - 2][1]])  # not one token earlier
    assert run.tokens["cut"].tolist() == list(range(n + 1))  # every cut point is kept ...
    assert run.tokens["after_answer_seen"].tolist() == [c > first for c in range(n + 1)]  # ... and flagged


def test_answer_absent_from_trajectory_flags_nothing(store, tiny_llama):
    outcome = run_question(
        RunRequest(question=SAMPLE_QUESTION, answer="42", trajectory=SAMPLE_TRAJECTORY), store, loaded=tiny_llama
    )
    run = store.open(outcome.key)
    assert run.meta["first_answer_cut"] is None and not run.tokens["after_answer_seen"].any()


# ----------------------------------------------------------------------------- models
@pytest.fixture(scope="module")
def bad_models(tmp_path_factory, model_dir, smol_tokenizer):
    """Model arguments that must be refused, each with the words its error must contain.

    Unsafe ones carry a payload that would create ``marker`` if it ever ran.
    """
    import shutil

    from transformers import BertConfig, BertModel

    from backend.engine.models import resolve

    base = tmp_path_factory.mktemp("bad_models")
    marker = base / "PAYLOAD_RAN"
    cases = {
        "unknown-id": ("no-such-org/no-such-model-xyz", "unknown model"),
        "missing-gguf": (str(base / "missing.gguf"), "model file not found"),
        "missing-dir": (str(base / "no" / "such" / "dir"), "model path not found"),
    }
    garbage = base / "garbage.gguf"
    garbage.write_bytes(bytes(range(256)) * 40)
    cases["garbage-gguf"] = (str(garbage), "not a GGUF file")
    spec = resolve("smollm2-135m")
    truncated = base / "truncated.gguf"
    with open(spec.directory / spec.gguf_file, "rb") as src:
        truncated.write_bytes(src.read(1 << 20))  # a download cut off after 1 MiB
    cases["truncated-gguf"] = (str(truncated), "corrupt GGUF")

    bert = base / "bert"
    BertModel(
        BertConfig(
            vocab_size=len(smol_tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).save_pretrained(bert, safe_serialization=True)
    smol_tokenizer.save_pretrained(bert)
    cases["bert-encoder"] = (str(bert), "is not a causal language model")

    remote = base / "remote_code"
    shutil.copytree(model_dir, remote)
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (remote / "config.json").write_text(json.dumps(config))
    (remote / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    cases["remote-code"] = (str(remote), "--trust-remote-code")

    pickled = base / "pickle_only"
    pickled.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(model_dir / name, pickled / name)
    (pickled / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(str(marker))))
    cases["pickle-only"] = (str(pickled), "only pickle weights")
    return cases, marker


class _Payload:
    """Unpickling this creates a file: proof that a checkpoint was (not) unpickled."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


BAD_MODEL_CASES = [
    "unknown-id",
    "missing-gguf",
    "missing-dir",
    "garbage-gguf",
    "truncated-gguf",
    "bert-encoder",
    "remote-code",
    "pickle-only",
]


@pytest.mark.parametrize("case", BAD_MODEL_CASES)
def test_bad_model_is_one_line_nonzero_and_stores_nothing(tmp_path, bad_models, case, capsys):
    cases, marker = bad_models
    model, message = cases[case]
    trajectory = tmp_path / "t.txt"
    trajectory.write_text(SAMPLE_TRAJECTORY)
    cache = tmp_path / "cache"
    code = cli.main(
        [
            "--cache-dir",
            str(cache),
            "run",
            "--question",
            "q",
            "--answer",
            "6",
            "--trajectory-file",
            str(trajectory),
            "--model",
            model,
            "--quiet",
        ]
    )
    assert code == cli.EXIT_INPUT
    assert message in one_error_line(capsys.readouterr().err)
    assert_empty_cache(cache)
    assert not marker.exists()  # neither the pickle nor the remote code ran


@pytest.mark.parametrize("case", BAD_MODEL_CASES)
def test_bad_model_raises_model_load_error_from_the_api(store, bad_models, case):
    cases, marker = bad_models
    model, message = cases[case]
    with pytest.raises(ModelLoadError, match=re.escape(message)):
        run_question(RunRequest(question="q", answer="6", trajectory=SAMPLE_TRAJECTORY, model=model), store)
    assert_empty_cache(store.root)
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["truncated-gguf", "pickle-only"])
def test_bad_model_in_a_real_process(tmp_path, bad_models, case):
    cases, marker = bad_models
    model, message = cases[case]
    result = run_cli(tmp_path / "cache", "run", "--question", "q", "--answer", "6", "--model", model, "--quiet")
    assert result.returncode == cli.EXIT_INPUT
    assert message in one_error_line(result.stderr)
    assert_empty_cache(tmp_path / "cache")
    assert not marker.exists()


def test_bidirectional_decoder_is_refused_as_non_causal():
    """A Llama whose attention ignores the causal mask passes every structural check."""
    import torch
    from transformers import AttentionInterface, LlamaConfig, LlamaForCausalLM
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from backend.engine.models import _check_causal

    def bidirectional(module, query, key, value, attention_mask, **kwargs):
        kwargs.pop("is_causal", None)
        return sdpa_attention_forward(module, query, key, value, None, is_causal=False, **kwargs)

    AttentionInterface.register("raml_test_bidirectional", bidirectional)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    torch.manual_seed(0)
    causal = LlamaForCausalLM(config).eval()
    _check_causal("causal", causal)  # no error
    config._attn_implementation = "raml_test_bidirectional"
    leaky = LlamaForCausalLM(config).eval()
    with pytest.raises(ModelLoadError, match="depends on later tokens"):
        _check_causal("leaky", leaky)


# ----------------------------------------------------------------------------- run keys
HOSTILE_KEYS = [
    "../outside",
    "../../etc/passwd",
    "/etc/passwd",
    "0123456789abcdef/../../outside",
    "a" * 65,
    "A" * 32,
    "0123456789ABCDEF",
    "",
    "abc",
    "0123456789abcdef\n",
    " 0123456789abcdef",
    "0123456789abcdef\x00",
    "0123456789abcdeg",
    "..",
    ".",
    "~/x",
]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_never_touch_files_outside_the_cache(tmp_path, key):
    store = RunStore(tmp_path / "cache")
    planted = tmp_path / "outside"  # what "../outside" would reach from cache/runs/
    planted.mkdir()
    (planted / "meta.json").write_text("{}")
    with pytest.raises(RunNotFoundError, match="is not a run key"):
        check_key(key)
    for call in (store.open, store.has, store.delete, store.path):
        with pytest.raises(RunNotFoundError, match="is not a run key"):
            call(key)
    with pytest.raises(RunNotFoundError):
        with store.lock(key):
            pass
    assert (planted / "meta.json").read_text() == "{}"
    assert not any((tmp_path / "cache" / "locks").iterdir())


def test_overlong_key_message_is_short():
    with pytest.raises(RunNotFoundError) as info:
        check_key("f" * 100_000)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("command", [["show"], ["rm"], ["export", "--html", "out.html"]])
@pytest.mark.parametrize("key", ["../../etc/passwd", "/etc/passwd", "A" * 32, "a" * 200])
def test_cli_refuses_hostile_keys(tmp_path, capsys, command, key):
    argv = ["--cache-dir", str(tmp_path / "cache"), command[0], key, *command[1:]]
    assert cli.main(argv) == cli.EXIT_INPUT
    assert "is not a run key" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out.html").exists()
