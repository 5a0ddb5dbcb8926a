"""Pages never compute (issue 20): importing any module of ``app`` (every page, panel and helper)
loads neither torch nor transformers, and no page keeps a model registry of its own. The
import-linter contract "app never computes" (pyproject.toml) forbids the direct imports; this test
checks what that contract cannot: that nothing reached at import time pulls torch in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Every module under app/ (app/views has no __init__: the pages are listed by file) except the
# entry script app/main.py, whose import *runs* the default page (st.navigation's page.run()).
PROBE = """
import importlib, json, pathlib, sys
root = pathlib.Path("app")
names = sorted(
    ".".join(p.with_suffix("").parts).removesuffix(".__init__")
    for p in root.rglob("*.py")
    if p != root / "main.py"
)
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "heavy": sorted(m for m in ("torch", "transformers") if m in sys.modules)}))
"""


def test_importing_every_app_module_loads_no_torch():
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"app.views.explore", "app.views.compare", "app.views.runs", "app.panels.importance"} <= set(
        result["modules"]
    )
    assert {"app.panels.branches", "app.panels.exact", "app.jobs_panel", "app.jobs_view"} <= set(result["modules"])
    assert result["heavy"] == []


def test_the_app_has_no_model_registry_of_its_own():
    from app import data

    assert not hasattr(data, "MODEL_OVERRIDES") and not hasattr(data, "model_override")
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "app").rglob("*.py")
        if "MODEL_OVERRIDES" in p.read_text() or "load_model" in p.read_text()
    ]
    assert offenders == []


def test_the_runs_page_default_model_is_the_backends():
    from app.views import runs
    from backend.engine.models import DEFAULT_MODEL

    assert runs.DEFAULT_MODEL == DEFAULT_MODEL
