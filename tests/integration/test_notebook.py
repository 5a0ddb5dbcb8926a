"""The notebook API (``backend.notebook``) and docs/notebook.ipynb, executed by nbclient in a real
IPython kernel (ipykernel) against a copy of the tiny-model cache (issue 24). The widget's front
end in Chromium: tests/browser/test_notebook_widget.py."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from backend.store.runs import RunStore

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "docs" / "notebook.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def cache(tiny_run, tmp_path_factory):
    """A private copy of the tiny run's cache: (root, key)."""
    src, key = tiny_run
    root = tmp_path_factory.mktemp("notebook") / "cache"
    shutil.copytree(src.root / "runs" / key, root / "runs" / key, ignore=shutil.ignore_patterns("derived"))
    RunStore(root).reconcile()
    return root, key


def test_api_lists_opens_and_draws(cache):
    import plotly.graph_objects as go

    from backend.notebook import lens_figure, list_runs, loss_figure, open_run, path_figure

    root, key = cache
    runs = list_runs(cache_dir=root)
    assert runs["key"].tolist() == [key]
    assert list_runs("correct=none", "model=nobody", cache_dir=root).empty
    run = open_run(key[:8], cache_dir=root)
    assert run.key == key
    for fig in (loss_figure(run, step=2), path_figure(run, step=2), lens_figure(run, step=2)):
        assert isinstance(fig, go.Figure) and fig.data
    with pytest.raises(ValueError, match="outside 0"):
        loss_figure(run, step=len(run.steps) + 1)


def test_example_notebook_runs_in_a_kernel(cache, monkeypatch, tmp_path):
    """Every code cell of docs/notebook.ipynb runs without error; the widget is displayed and
    ``widget.step = 3`` reaches the trait and its observer."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("anywidget")
    root, _ = cache
    monkeypatch.setenv("RAML_CACHE_DIR", str(root))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("MPLBACKEND", "agg")
    spec = tmp_path / "jupyter" / "kernels" / "python3"  # this interpreter, whatever else is installed
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"], [o.get("evalue") for o in outputs]
    assert any(WIDGET_VIEW in o.get("data", {}) for o in outputs)  # the widget was displayed
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "3 [3]" in printed  # widget.step and what its observer saw
