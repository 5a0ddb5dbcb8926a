"""RaML Explorer in a notebook: the runs of a cache, their figures, and one run's linked views as a
Jupyter widget whose cursor is ``widget.step`` in Python.

>>> from backend.notebook import list_runs, open_run, RunWidget
>>> runs = list_runs()                      # the library table (RAML_CACHE_DIR, else ./cache)
>>> run = open_run(runs["key"].iloc[0])     # a key or any unique prefix of at least 4 characters
>>> loss_figure(run, step=3)                # plotly figures: loss_figure, path_figure, lens_figure,
>>> w = RunWidget(run); w                   #   importance_figure, fidelity_figure
>>> w.step = 3                              # moves every view; stepping in the widget sets w.step

Everything is read from the cache, nothing is computed here (importance and the exact update
come from ``raml importance`` / ``raml exact`` or the app). ``RunWidget`` needs the extra
``notebook`` (anywidget): ``pip install 'raml-explorer[notebook]'``. Example: docs/notebook.ipynb.
"""

from __future__ import annotations

from backend.notebook.api import (
    fidelity_figure,
    importance_figure,
    lens_figure,
    list_runs,
    loss_figure,
    open_run,
    path_figure,
    store_of,
)

__all__ = [
    "RunWidget",
    "fidelity_figure",
    "importance_figure",
    "lens_figure",
    "list_runs",
    "loss_figure",
    "open_run",
    "path_figure",
    "store_of",
]


def __getattr__(name: str):
    if name == "RunWidget":  # anywidget is optional: imported when the widget is asked for
        from backend.notebook.widget import RunWidget

        return RunWidget
    raise AttributeError(f"module 'backend.notebook' has no attribute {name!r}")
