"""Limits before work and CLI hygiene (issue 15 items 1, 3, 6): each case exits 2 with one line
naming the limit and the option that changes it, no traceback, the model never loaded and
nothing changed in the cache."""

from __future__ import annotations

import re
import shutil

import pytest

from backend import cli
from backend.engine import limits, models

LONG_ANSWER = " ".join(f"step{i} gives {i * 7}" for i in range(60))  # ~300 tokens


class ModelLoaded(Exception):
    """Raised instead of loading weights: reaching it means every check before the load passed."""


@pytest.fixture()
def no_weights(monkeypatch):
    def refuse(*args, **kwargs):
        raise ModelLoaded("the model was loaded")

    monkeypatch.setattr(models, "_load_uncached", refuse)
    models._loaded.clear()


def snapshot(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def run_cli(tmp_path, capsys, *argv):
    cache = tmp_path / "cache"
    before = snapshot(cache)
    code = cli.main(["--cache-dir", str(cache), *argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    new = set(snapshot(cache)) - set(before)
    assert not any(p.startswith("runs/") for p in new), new  # no run written, not even a partial one
    return code, lines


def run_args(model_dir, *extra):
    return ["run", "--model", model_dir, "--question", "What is 2 + 3?", "--answer", "5", "--quiet", *extra]


CASES = [
    (["--answer", LONG_ANSWER], r"answer has \d+ tokens, over the limit of 64 \(--max-answer-tokens"),
    (["--question", "How many? " * 5000], r"question has more than 4096 tokens .*--max-question-tokens"),
    (["--temperature", "nan"], r"--temperature nan must be a finite number >= 0"),
    (["--temperature", "-1"], r"--temperature -1.0 must be a finite number >= 0"),
    (["--top-p", "5"], r"--top-p 5.0 must lie in \(0, 1\]"),
    (["--top-p", "0"], r"--top-p 0.0 must lie in \(0, 1\]"),
    (["--proxy-layers", "0,9"], r"--proxy-layers 9 outside 0..3 \(the model has 4 layers\)"),
    (["--proxy-layers", "999,-1"], r"--proxy-layers 999,-1 outside 0..3 \(the model has 4 layers\)"),  # issue 27: both
    (["--template", ""], r"the template is empty or only whitespace \(--template\)"),
    (["--template", " \n\t "], r"the template is empty or only whitespace \(--template\)"),  # issue 27
    (["--max-new-tokens", "5000"], r"--max-new-tokens 5000 does not fit: .* lower --max-new-tokens"),
    (["--max-answer-tokens", "0"], r"--max-answer-tokens 0 must be at least 1"),
]


@pytest.mark.parametrize("extra,message", CASES, ids=[c[0][0] + "=" + c[0][1][:8] for c in CASES])
def test_run_limits_checked_before_the_model_loads(tmp_path, capsys, tiny_model_dir, no_weights, extra, message):
    code, lines = run_cli(tmp_path, capsys, *run_args(tiny_model_dir, *extra))
    assert code == cli.EXIT_INPUT
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert re.search(message, lines[0]), lines[0]


def test_raising_the_answer_limit_lets_the_run_reach_the_model(tmp_path, tiny_model_dir, no_weights):
    argv = run_args(tiny_model_dir, "--answer", LONG_ANSWER, "--max-answer-tokens", "1000")
    with pytest.raises(ModelLoaded):
        cli.main(["--cache-dir", str(tmp_path / "cache"), *argv])


def test_trajectory_file_refused_by_size_then_by_a_streaming_count(
    tmp_path, capsys, tiny_model_dir, no_weights, monkeypatch
):
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * (9 << 20))
    code, lines = run_cli(tmp_path, capsys, *run_args(tiny_model_dir, "--trajectory-file", str(big)))
    assert code == 2 and len(lines) == 1
    assert "9.0 MB, over the 8 MB limit (--max-trajectory-mb" in lines[0]

    long = tmp_path / "long.txt"
    long.write_text("So the count goes up by one more again. " * 40_000)  # 1.6 MB, ~400k tokens, context 2048
    pieces = []
    real = limits._pieces
    monkeypatch.setattr(
        limits, "_pieces", lambda text, size=limits._PIECE_CHARS: (pieces.append(1) or p for p in real(text, size))
    )
    code, lines = run_cli(tmp_path, capsys, *run_args(tiny_model_dir, "--trajectory-file", str(long)))
    assert code == 2 and len(lines) == 1
    assert "trajectory has more than" in lines[0] and "context of 2048" in lines[0] and "use --truncate" in lines[0]
    assert len(pieces) < 10  # stopped after the first pieces, of ~100


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_batch_limit_must_be_positive(tmp_path, capsys, tiny_model_dir, no_weights, limit):
    qfile = tmp_path / "q.jsonl"
    qfile.write_text('{"question": "1+1?", "answer": "2"}\n')
    code, lines = run_cli(tmp_path, capsys, "batch", str(qfile), "--model", tiny_model_dir, "--limit", limit)
    assert code == 2 and len(lines) == 1
    assert f"--limit {limit} must be at least 1" in lines[0]


def test_batch_refuses_bad_shared_options_once(tmp_path, capsys, tiny_model_dir, no_weights):
    qfile = tmp_path / "q.jsonl"
    qfile.write_text('{"question": "1+1?", "answer": "2"}\n{"question": "2+2?", "answer": "4"}\n')
    code, lines = run_cli(tmp_path, capsys, "batch", str(qfile), "--model", tiny_model_dir, "--top-p", "1.5")
    assert code == 2 and lines == [lines[0]] and "--top-p 1.5 must lie in (0, 1]" in lines[0]


@pytest.mark.parametrize(
    "content,message",
    [
        (bytes(range(256)) * 8, "not a text file (invalid UTF-8)"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply"),
        (b'{"model_type": "llama",', "invalid JSON at line 1"),
        (b"[1, 2]", "expected a JSON object, got list"),
    ],
)
def test_model_folder_with_a_broken_config(tmp_path, capsys, content, message):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_bytes(content)
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    code, lines = run_cli(tmp_path, capsys, *run_args(str(folder)))
    assert code == 2 and len(lines) == 1
    assert message in lines[0] and "config.json" in lines[0]


@pytest.fixture()
def copied_run(tmp_path, tiny_run):
    store, key = tiny_run
    shutil.copytree(store.root, tmp_path / "cache")
    return tmp_path / "cache", key


def test_rm_is_all_or_nothing(tmp_path, capsys, copied_run):
    cache, key = copied_run
    before = snapshot(cache)
    missing = "0" * 64
    for bad in (missing, "../etc"):
        code = cli.main(["--cache-dir", str(cache), "rm", key, bad, key])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert snapshot(cache) == before  # K1 still there
    assert f"no run {missing}" in cli_err(cache, capsys, missing)
    assert cli.main(["--cache-dir", str(cache), "rm", key, key]) == 0
    assert not (cache / "runs" / key).exists()


def cli_err(cache, capsys, *keys):
    cli.main(["--cache-dir", str(cache), "rm", *keys])
    return capsys.readouterr().err


def test_control_characters_are_escaped_in_show_and_ls(tmp_path, capsys, tiny_llama, store):
    from conftest import SAMPLE_TRAJECTORY

    from backend.pipeline.run import RunRequest, run_question

    hostile = "Evil \x1b[2J\x1b]0;pwned\x07 question\r\u202e?"
    req = RunRequest(question=hostile, answer="6\x1b[31m", trajectory=SAMPLE_TRAJECTORY[:80], model=tiny_llama.name)
    key = run_question(req, store, loaded=tiny_llama).key
    for argv in (["show", key], ["ls"]):
        assert cli.main(["--cache-dir", str(store.root), *argv]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\r" not in out and "\u202e" not in out and "\x07" not in out
        assert "\\x1b" in out
    assert cli.main(["--cache-dir", str(store.root), "show", key, "--json"]) == 0
    assert "\x1b" not in capsys.readouterr().out  # JSON escapes it itself


def test_quiet_silences_library_progress_bars(tmp_path, capsys, monkeypatch):
    """transformers' GGUF conversion draws a plain ``tqdm.auto`` bar; --quiet must hide it too."""
    import backend.pipeline.run

    def fake_run(*args, **kwargs):
        from tqdm.auto import tqdm

        for _ in tqdm(range(3), desc="Converting and de-quantizing GGUF tensors..."):
            pass
        raise limits.InputError("stop here")

    monkeypatch.setattr(backend.pipeline.run, "run_question", fake_run)
    argv = ["--cache-dir", str(tmp_path / "c"), "run", "--question", "q", "--answer", "a"]
    cli.main(argv)
    assert "Converting" in capsys.readouterr().err  # the bar is there without --quiet
    cli.main([*argv, "--quiet"])
    assert "Converting" not in capsys.readouterr().err
    cli.main(argv)
    assert "Converting" in capsys.readouterr().err  # and the bars come back after the command


def test_printable_escapes_every_control_character():
    from backend.io.terminal import printable

    assert printable("plain text, ünïcödé ✓") == "plain text, ünïcödé ✓"
    assert printable("a\x1b[31mb\nc\x00d\u202ee\x7f") == "a\\x1b[31mb\\nc\\x00d\\u202ee\\x7f"


def test_streaming_count_matches_a_full_count_and_stops_early(smol_tokenizer):
    text = "Wait, let me check: 5 + 8 = 13.\n" * 3000  # ~100 KB, several pieces
    full = len(smol_tokenizer(text, add_special_tokens=False)["input_ids"])
    counted, complete = limits.count_tokens_up_to(smol_tokenizer, text, full + 100)
    assert complete and abs(counted - full) <= len(text) // limits._PIECE_CHARS + 1
    counted, complete = limits.count_tokens_up_to(smol_tokenizer, text, 100)
    assert not complete and counted < full / 3
