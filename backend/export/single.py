"""One run as a single self-contained interactive HTML file (``raml export KEY --html F``, Explore's
download): the run page of ``backend.plots.run_page`` with plotly.js and the view script inlined,
so it works offline and from ``file://``."""

from __future__ import annotations

from pathlib import Path

from backend.errors import InputError
from backend.export.view import gather_run_view
from backend.plots.run_page import check_plotlyjs_mode, inline_script, plotlyjs_tag, run_js, run_page_html
from backend.store import atomic


def build_export_html(run, plotlyjs: str = "inline", *, store=None) -> str:
    """The whole HTML document for ``run`` (a ``backend.store.runs.RunData``); ``plotlyjs`` as
    in ``plotlyjs_tag``; ``store`` adds what it has cached (importance strip, fidelity line)."""
    script_tag = plotlyjs_tag(check_plotlyjs_mode(plotlyjs))
    view = gather_run_view(run, store)
    return run_page_html(view, plotly_script=script_tag, run_script=inline_script(run_js()))


def export_html(run, path: str | Path, plotlyjs: str = "inline", *, follow_symlinks: bool = False, store=None) -> Path:
    """Write ``run`` as one HTML file at ``path`` (atomically, mode 0644) and return the path.

    ``path`` must be a regular file or absent: a directory, device, pipe or socket is refused,
    and a symbolic link is written through (its target replaced) only with ``follow_symlinks``.
    ``plotlyjs``: ``inline`` (works offline) or ``cdn`` (a script tag; small file).
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise InputError(f"export target {path} is a directory; give a file name such as run.html")
    atomic.resolve_target(path, follow_symlinks=follow_symlinks)  # refuse before building the page
    atomic.write_text(path, build_export_html(run, plotlyjs, store=store), follow_symlinks=follow_symlinks)
    return path
