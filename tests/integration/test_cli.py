"""`python -m backend` as a user runs it: real subprocesses, the embedded SmolLM2, no network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "Tom has 3 red balls and 4 blue balls. How many balls does he have?"


def cli(cache: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "backend", "--cache-dir", str(cache), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_run_show_ls_rm_end_to_end(tmp_path):
    cache = tmp_path / "cache"
    first = cli(cache, "run", "--question", QUESTION, "--answer", "7", "--max-new-tokens", "32", "--quiet")
    assert first.returncode == 0, first.stderr
    key = first.stdout.strip().splitlines()[-1]
    assert len(key) == 32 and "computed" in first.stderr

    again = cli(cache, "run", "--question", QUESTION, "--answer", "7", "--max-new-tokens", "32", "--quiet")
    assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] == key
    assert "cache hit" in again.stderr  # found by request key, before loading the model

    shown = cli(cache, "show", key, "--json")
    payload = json.loads(shown.stdout)
    for field in ("key", "model", "question", "answer", "answer_source", "n_tokens", "tokens", "steps"):
        assert field in payload
    assert payload["answer"] == "7" and payload["answer_source"] == "reference"
    assert len(payload["tokens"]) == payload["n_tokens"] + 1
    assert set(payload["steps"][0]) >= {"index", "text", "start", "end", "loss", "p_answer", "entropy", "reflection"}
    assert payload["steps"][-1]["end"] == payload["n_tokens"]

    listed = cli(cache, "ls", "--json")
    assert [r["key"] for r in json.loads(listed.stdout)] == [key]
    assert cli(cache, "rm", key).returncode == 0
    assert json.loads(cli(cache, "ls", "--json").stdout) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (("run", "--question", "", "--answer", "1"), "question is empty"),
        (("run", "--question", "q", "--model", "no-such/model-xyz"), "unknown model 'no-such/model-xyz'"),
        (("run", "--question", "q", "--model", "/nonexistent/m.gguf"), "model file not found"),
        (("run", "--question", "q", "--segmentation", "words"), "unknown segmentation"),
        (("show", "../../etc/passwd"), "not a run key"),
        (("show", "0123456789abcdef0123456789abcdef"), "no run 0123456789abcdef"),
    ],
)
def test_errors_are_one_line_and_nonzero(tmp_path, args, message):
    result = cli(tmp_path / "cache", *args)
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and message in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    runs = tmp_path / "cache" / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_corrupt_gguf_is_refused(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    result = cli(tmp_path / "cache", "run", "--question", "q", "--answer", "1", "--model", str(bad))
    assert result.returncode != 0 and "corrupt GGUF" in result.stderr and "Traceback" not in result.stderr
