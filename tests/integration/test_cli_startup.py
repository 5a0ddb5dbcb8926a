"""The CLI starts light (issue 26): commands that read the cache, and refusals of flags that can
be checked without weights, never import torch or transformers. Checked on ``sys.modules`` of a
real subprocess (no timing); the times are measured by tests/benchmarks/cli_startup_bench.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "tokenizers", "scipy", "sklearn")

# Runs backend.cli.main in a fresh interpreter and reports its exit code and the heavy modules it loaded.
_PROBE = """
import json, sys
from backend.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(%r))
print("STARTUP " + json.dumps({"rc": rc, "heavy": heavy}), file=sys.stderr)
""" % (HEAVY,)


def loaded_modules(*argv: str) -> tuple[int, list[str], str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in proc.stderr.splitlines() if line.startswith("STARTUP ")]
    assert lines, proc.stderr[-2000:]
    report = json.loads(lines[-1].removeprefix("STARTUP "))
    return report["rc"], report["heavy"], proc.stdout + proc.stderr


def test_reading_commands_import_no_model_library(tiny_run, tiny_pristine, tmp_path):
    _store, key = tiny_run
    # the run as a user's cache holds it, without the importance other tests add to the session's
    # tiny cache (show --json ranks two cached importance measures against each other with scipy)
    cache = str(tmp_path / "cache")
    shutil.copytree(tiny_pristine, cache)
    for argv in (
        ("--version",),
        ("--cache-dir", cache, "ls"),
        ("--cache-dir", cache, "ls", "--json"),
        ("--cache-dir", cache, "show", key),
        ("--cache-dir", cache, "show", "--json", key),
        ("--cache-dir", cache, "jobs", "ls"),
        ("--cache-dir", cache, "rm", "0" * 32),  # refused (no such run) after the lookup
    ):
        rc, heavy, output = loaded_modules(*argv)
        assert rc in (0, 2), output
        assert heavy == [], f"{' '.join(argv[2:] or argv)} imported {heavy}"
    rc, _heavy, output = loaded_modules("--cache-dir", cache, "show", key)
    assert rc == 0 and key in output  # the light path still shows the run


@pytest.mark.parametrize(
    "flags, message",
    [
        (("--temperature", "nan"), "--temperature nan"),
        (("--proxy-layers", "999"), "--proxy-layers 999 outside 0..3"),  # from config.json: no tokenizer, no torch
        (("--segmentation", "words"), "segmentation"),
    ],
)
def test_refused_flags_import_no_model_library(tmp_path, tiny_model_dir, flags, message):
    argv = ("--cache-dir", str(tmp_path), "run", "--question", "q", "--model", tiny_model_dir, *flags)
    rc, heavy, output = loaded_modules(*argv)
    assert rc == 2 and message in output, output
    assert "Traceback" not in output
    assert heavy == [], f"refusing {' '.join(flags)} imported {heavy}"


def test_a_question_over_its_limit_is_refused_without_transformers(tmp_path, tiny_model_dir):
    """The check before load counts the question's tokens with tokenizers alone (a plain
    tokenizer.json): the refusal imports neither torch nor transformers."""
    argv = ("--cache-dir", str(tmp_path), "run", "--model", tiny_model_dir, "--max-question-tokens", "8")
    rc, heavy, output = loaded_modules(*argv, "--question", "How many apples? " * 40)
    assert rc == 2 and "question has more than 8 tokens" in output, output
    assert "Traceback" not in output
    assert set(heavy) <= {"tokenizers"}, f"refusing a long question imported {heavy}"
