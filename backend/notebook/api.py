"""The notebook's plain Python API: runs of a cache and their figures (plotly ``Figure`` objects).

``cache_dir`` defaults to ``$RAML_CACHE_DIR``, else ``./cache`` (as the CLI). A run is a
``backend.store.runs.RunData`` (``run.tokens``, ``run.steps``, ``run.lens`` are pandas frames; the
glossary of docs/architecture.md §3 names their columns). Steps are numbered 1..S and the cursor
is a boundary b = 0..S (0: before any thinking), as everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from backend.store.runs import RunData, RunStore

_stores: dict[str, RunStore] = {}


def _store(cache_dir: str | Path | None = None) -> RunStore:
    root = str(Path(cache_dir or os.environ.get("RAML_CACHE_DIR") or "cache").resolve())
    if root not in _stores:
        _stores[root] = RunStore(root)
    return _stores[root]


def store_of(run: RunData) -> RunStore:
    """The store ``run`` was opened from (its folder is ``<cache>/runs/<key>``)."""
    return _store(Path(run.path).resolve().parents[1])


def list_runs(*selection: str, cache_dir: str | Path | None = None) -> pd.DataFrame:
    """The library table (newest first: ``key``, ``question``, ``model``, ``correct``, ``label``, ...)
    of the runs ``selection`` picks, as ``raml export --site`` does: keys or unique prefixes,
    ``field=value`` filters (model, label, answer_source, correct, q) and question files; none: every
    healthy run. ``list_runs("correct=false", "model=smollm2-135m")``."""
    from backend.export.site import select_runs

    store = _store(cache_dir)
    keys = select_runs(store, list(selection))
    runs = store.list_runs()
    return runs.set_index("key").loc[keys].reset_index() if keys else runs.iloc[0:0]


def open_run(key: str, cache_dir: str | Path | None = None) -> RunData:
    """The run ``key`` (a full key or any unique prefix of at least 4 characters), checksums verified."""
    store = _store(cache_dir)
    return store.open(store.resolve(key))


def _step(run: RunData, step: int | None) -> int | None:
    if step is None:
        return None
    n = len(run.steps)
    if not 0 <= int(step) <= n:
        raise ValueError(f"step {step} is outside 0..{n} (0 = before any thinking)")
    return int(step)


def loss_figure(run: RunData, step: int | None = None, *, height: int = 420) -> go.Figure:
    """L̂ of the answer per cut point (raw and EMA) over p(answer), the cursor at boundary ``step``."""
    from backend.plots import figures

    alpha = figures.default_ema_alpha(max(run.n_tokens, 1))
    return figures.loss_descent_figure(run.tokens, run.steps, cursor=_step(run, step), alpha=alpha, height=height)


def path_figure(run: RunData, step: int | None = None, *, height: int = 420) -> go.Figure | None:
    """The 2-D path of the step boundaries (PCA of the middle proxy layer, else hidden states);
    None when the run stores no layers."""
    from backend.plots import figures
    from backend.plots.run_page import path_data

    coords, caption, _ = path_data(run, store_of(run))
    if coords is None:
        return None
    kind, axis_x, axis_y = caption.split("|")
    return figures.path_figure(
        coords,
        figures.boundary_losses(run.tokens, run.steps),
        cursor=_step(run, step),
        axis_titles=(axis_x, axis_y),
        title=kind,
        height=height,
        step_texts=[""] + run.steps["text"].astype(str).tolist(),
    )


def lens_figure(run: RunData, step: int | None = None, *, value: str = "nll", height: int = 420) -> go.Figure:
    """Logit lens, layer x boundary: answer NLL (``value="nll"``) or p(answer) (``"p_answer"``)."""
    from backend.plots import figures

    return figures.lens_heatmap_figure(run.lens, cursor=_step(run, step), value=value, height=height)


def importance_figure(run: RunData) -> go.Figure | None:
    """The importance strip (ablation, attention, resampling; one column per step), or None when
    nothing is cached (``raml importance KEY``, resampled branches)."""
    from backend.export.view import cached_extras
    from backend.plots import importance as plots

    extras = cached_extras(run, store_of(run))
    rows = plots.strip_rows(len(run.steps), extras["importance"], extras["counterfactual"])
    return plots.importance_strip(rows, run.steps["text"].astype(str).tolist()) if rows else None


def fidelity_figure(run: RunData) -> go.Figure | None:
    """The fraction of the descent each proxy reproduces, or None without a cached exact update
    (``raml exact KEY``)."""
    from backend.export.view import cached_extras
    from backend.plots.exact import fidelity_figure as figure

    fidelity = cached_extras(run, store_of(run))["fidelity"]
    return figure(fidelity) if fidelity else None
