"""The project installs as a package (``pip install -e .``, which ``make`` does) with a ``raml``
console script: ``raml --version`` and ``raml show KEY --json`` work from any directory, and no
module of ``backend`` or ``app`` edits ``sys.path``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import backend

ROOT = Path(__file__).resolve().parents[2]
RAML = Path(sys.executable).parent / "raml"


def _raml(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)  # the installed package, not the checkout on the path
    return subprocess.run([str(RAML), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_raml_console_script_reports_the_version(tmp_path):
    assert RAML.is_file(), "make installs the project (pip install -e .), which creates the raml script"
    proc = _raml("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"raml-explorer {backend.__version__}"


def test_raml_show_json_from_another_directory(tiny_run, tmp_path):
    store, key = tiny_run
    proc = _raml("--cache-dir", str(store.root), "show", key, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["key"] == key and payload["n_tokens"] == len(payload["tokens"]) - 1


def test_no_sys_path_edits_in_backend_or_app():
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("backend", "app")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "sys.path" in line
    ]
    assert not offenders, offenders
