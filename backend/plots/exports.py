"""A run's data and figures as files: tables (tokens, steps, lens) as CSV, Parquet or JSON, and
the loss, lens and path figures as PNG or SVG through kaleido (extra ``export``).

kaleido 1.x drives a Chrome/Chromium it does not ship; it takes the browser named by the
``BROWSER_PATH`` environment variable (read by its ``choreographer`` dependency) and otherwise
searches the usual names. ``ensure_browser`` points it at the system chromium
(``/usr/bin/chromium``, which ``make test`` installs) when nothing is set. No Streamlit, no torch.

Every file is written by the store's one atomic write (``backend.store.atomic``); a failure is
a one-line ``WriteError`` naming the file: the user asked for these files, so it is an error,
not a warning (derived caches only warn).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

from backend.errors import InputError
from backend.store import atomic

TABLES = ("tokens", "steps", "lens")
TABLE_FORMATS = ("csv", "parquet", "json")
IMAGE_FORMATS = ("png", "svg")
SYSTEM_CHROMIUM = "/usr/bin/chromium"
# pixel size of every exported figure before ``scale``
FIGURE_WIDTH, FIGURE_HEIGHT = 1000, 450


def run_tables(run, store=None) -> dict[str, pd.DataFrame]:
    """The run's tables by name: tokens [C rows], steps [K - 1 rows], lens [K·L rows], and
    ``lens_tuned`` [K·L rows, the same columns] once the run's tuned-lens grid is computed (docs/lens.md)."""
    tables = {"tokens": run.tokens, "steps": run.steps, "lens": run.lens}
    if store is not None:
        from backend.analysis.lens.grid import load_tuned_grid

        tuned = load_tuned_grid(run, store)
        if tuned is not None:
            tables["lens_tuned"] = tuned
    return tables


def table_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    """One table as a file's bytes. CSV holds list cells (lens top tokens) as JSON text."""
    if fmt == "parquet":
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return buf.getvalue()
    if fmt == "json":
        return frame.to_json(orient="records", force_ascii=False).encode("utf-8")
    if fmt == "csv":
        flat = frame.copy()
        for col in flat.columns:
            if flat[col].map(lambda v: isinstance(v, (list, tuple)) or hasattr(v, "tolist")).any():
                flat[col] = flat[col].map(lambda v: json.dumps(list(getattr(v, "tolist", lambda: v)())))
        return flat.to_csv(index=False).encode("utf-8")
    raise InputError(f"unknown export format '{fmt}': use one of {', '.join(TABLE_FORMATS)}")


def _out_dir(out_dir: str | Path) -> Path:
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise InputError(f"export folder {path} is a file; give a folder name")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create export folder {path}: {exc.strerror or exc}") from None
    return path


def export_tables(run, out_dir: str | Path, fmt: str, store=None) -> list[Path]:
    """Write ``tokens.<fmt>``, ``steps.<fmt>``, ``lens.<fmt>`` (and ``lens_tuned.<fmt>``, see
    ``run_tables``) into ``out_dir``; returns the paths."""
    if fmt not in TABLE_FORMATS:
        raise InputError(f"unknown export format '{fmt}': use one of {', '.join(TABLE_FORMATS)}")
    folder = _out_dir(out_dir)
    written = []
    for name, frame in run_tables(run, store).items():
        target = folder / f"{name}.{fmt}"
        atomic.write_bytes(target, table_bytes(frame, fmt))
        written.append(target)
    return written


def run_figures(run) -> dict:
    """The figures the HTML export shows: loss descent, lens heatmap, 2-D path (if stored)."""
    from backend.plots import figures
    from backend.plots.run_page import path_data

    tokens, steps = run.tokens, run.steps
    alpha = figures.default_ema_alpha(max(int(run.n_tokens), 1))
    out = {
        "loss": figures.loss_descent_figure(tokens, steps, alpha=alpha, height=FIGURE_HEIGHT),
        "lens": figures.lens_heatmap_figure(run.lens, height=FIGURE_HEIGHT),
    }
    coords, caption, _geometry = path_data(run)
    if coords is not None:
        _, axis_x, axis_y = caption.split("|")
        out["path"] = figures.path_figure(
            coords, figures.boundary_losses(tokens, steps), axis_titles=(axis_x, axis_y), height=FIGURE_HEIGHT
        )
    return out


def ensure_browser() -> str:
    """Path of the browser kaleido will drive; sets ``BROWSER_PATH`` to the system chromium when unset."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        raise InputError("PNG/SVG export needs kaleido: pip install 'raml-explorer[export]'") from None
    browser = os.environ.get("BROWSER_PATH")
    if not browser:
        browser = SYSTEM_CHROMIUM if Path(SYSTEM_CHROMIUM).exists() else shutil.which("chromium") or ""
        if not browser:
            raise InputError(
                "PNG/SVG export needs Chrome or Chromium: install it (apt install chromium) or set BROWSER_PATH"
            )
        os.environ["BROWSER_PATH"] = browser
    return browser


def export_images(
    run, out_dir: str | Path, fmt: str, *, width: int = FIGURE_WIDTH, height: int = FIGURE_HEIGHT, scale: float = 1.0
) -> list[Path]:
    """Write ``loss.<fmt>``, ``lens.<fmt>`` (and ``path.<fmt>``) into ``out_dir`` with one browser."""
    if fmt not in IMAGE_FORMATS:
        raise InputError(f"unknown image format '{fmt}': use png or svg")
    ensure_browser()
    import plotly.io as pio

    folder = _out_dir(out_dir)
    figs = run_figures(run)
    targets = [folder / f"{name}.{fmt}" for name in figs]
    try:  # kaleido renders into a private folder; each file then replaces its target atomically
        with tempfile.TemporaryDirectory(prefix=".raml-figures-", dir=folder) as tmp:
            rendered = [Path(tmp) / t.name for t in targets]
            try:
                pio.write_images(list(figs.values()), rendered, format=fmt, width=width, height=height, scale=scale)
            except Exception as exc:  # kaleido/choreographer: browser failed to start or render
                raise InputError(f"figure export through kaleido failed ({type(exc).__name__}: {exc})") from None
            images = [_rendered_image(source, fmt) for source in rendered]  # all there before any is replaced
            for image, target in zip(images, targets):
                atomic.write_bytes(target, image)
    except OSError as exc:  # the private folder could not be made
        raise InputError(f"cannot write figures into {folder}: {atomic.os_reason(exc)}") from None
    return targets


IMAGE_SIGNATURES = {"png": (b"\x89PNG\r\n\x1a\n",), "svg": (b"<svg", b"<?xml")}


def _rendered_image(path: Path, fmt: str) -> bytes:
    """The bytes kaleido wrote to ``path``, or one line saying it wrote none (a full disk, a
    browser that died): a listed file is always a real image."""
    try:
        data = path.read_bytes()
    except OSError:
        data = b""
    if not data.lstrip().startswith(IMAGE_SIGNATURES[fmt]):
        what = "nothing" if not data else f"{len(data)} bytes that are not a {fmt.upper()} image"
        raise InputError(
            f"figure export: kaleido wrote {what} for {path.name} (is the disk full?); no file was replaced"
        )
    return data


def tables_zip(run, fmt: str, store=None) -> bytes:
    """All tables (``run_tables``) in one zip (for a download button)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, frame in run_tables(run, store).items():
            zf.writestr(f"{name}.{fmt}", table_bytes(frame, fmt))
    return buf.getvalue()


def images_zip(run, fmt: str, scale: float = 1.0) -> bytes:
    """Every figure as ``fmt`` in one zip (for a download button)."""
    with tempfile.TemporaryDirectory(prefix="raml-figures-") as tmp:
        paths = export_images(run, tmp, fmt, scale=scale)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in paths:
                zf.write(path, path.name)
    return buf.getvalue()


def copy_into(paths: list[Path], out_dir: str | Path) -> list[Path]:
    """Copy exported files (e.g. an ``export_images`` job's) into ``out_dir``, each atomically."""
    folder = _out_dir(out_dir)
    copied = []
    for path in paths:
        target = folder / Path(path).name
        atomic.write_bytes(target, Path(path).read_bytes())
        copied.append(target)
    return copied
