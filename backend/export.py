"""``python -m backend export KEY --html OUT``: one run as a self-contained interactive HTML file.

A thin wrapper: the page is built by ``app.export`` from the app's plotly figure builders
(plotly.js inlined, so the file opens offline).
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from .cache import RunData
from .errors import InputError

_ROOT = Path(__file__).resolve().parent.parent


def export_html(run: RunData, path: str | Path) -> Path:
    """Write ``run`` as one HTML file at ``path`` (atomically) and return the path."""
    if str(_ROOT) not in sys.path:
        sys.path.insert(0, str(_ROOT))
    from app.export import build_export_html

    path = Path(path)
    if path.is_dir():
        raise InputError(f"export target {path} is a directory; give a file name such as run.html")
    page = build_export_html(run)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
