"""Exports (issue 12 item 6): tables that open in pandas, PNG/SVG figures through kaleido and
the system chromium, and an HTML file that loads plotly.js from the CDN instead of inlining it."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from backend.errors import InputError
from backend.plots import exports
from tests.app_server import CHROMIUM, ROOT

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing")


class _Done:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _cli(store, *args):
    """``raml export ...`` in this process (the real parser and command; no interpreter start-up)."""
    import contextlib
    import io

    from backend.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--cache-dir", str(store.root), "export", *args])
    return _Done(code, out.getvalue(), err.getvalue())


def test_cli_export_in_a_subprocess_writes_tables(tiny_run, tmp_path):
    store, key = tiny_run
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "backend",
            "--cache-dir",
            str(store.root),
            "export",
            key,
            "--format",
            "parquet",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_parquet(tmp_path / "tokens.parquet")) == len(store.open(key).tokens)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_cli_tables_open_in_pandas_with_the_run_values(tiny_run, tmp_path, fmt):
    store, key = tiny_run
    run = store.open(key)
    proc = _cli(store, key, "--format", fmt, "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    read = {"csv": pd.read_csv, "parquet": pd.read_parquet, "json": lambda p: pd.read_json(p, orient="records")}[fmt]
    for name, original in exports.run_tables(run).items():
        path = tmp_path / f"{name}.{fmt}"
        assert str(path) in proc.stdout
        loaded = read(path)
        assert list(loaded.columns) == list(original.columns)
        assert len(loaded) == len(original)
        for col in ("loss", "nll"):
            if col in original:
                assert loaded[col].to_numpy() == pytest.approx(original[col].to_numpy(), rel=1e-6)
    lens = read(tmp_path / f"lens.{fmt}")
    first_top = lens["top_tokens"].iloc[0]
    if fmt == "csv":
        first_top = json.loads(first_top)
    assert list(first_top) == list(run.lens["top_tokens"].iloc[0])


def test_default_folder_is_named_after_the_run(tiny_run, tmp_path, monkeypatch):
    store, key = tiny_run
    monkeypatch.chdir(tmp_path)
    assert _cli(store, key, "--format", "json").returncode == 0
    assert sorted(p.name for p in (tmp_path / f"raml-export-{key}").iterdir()) == [
        "lens.json",
        "steps.json",
        "tokens.json",
    ]


def test_tables_zip_holds_three_tables(tiny_run):
    store, key = tiny_run
    with zipfile.ZipFile(__import__("io").BytesIO(exports.tables_zip(store.open(key), "csv"))) as zf:
        assert sorted(zf.namelist()) == ["lens.csv", "steps.csv", "tokens.csv"]


def test_bad_export_requests_are_one_line_errors(tiny_run, tmp_path):
    store, key = tiny_run
    proc = _cli(store, key)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: export needs")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        exports.export_tables(store.open(key), tmp_path / "file", "csv")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@needs_chromium
def test_cli_png_and_svg_figures_are_real_images(tiny_run, tmp_path, monkeypatch):
    store, key = tiny_run
    proc = _cli(store, key, "--png", "--svg", "--scale", "0.5", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    names = {"loss", "lens", "path"}
    for name in names:
        png = (tmp_path / f"{name}.png").read_bytes()
        assert _png_size(png) == (exports.FIGURE_WIDTH // 2, exports.FIGURE_HEIGHT // 2)
        from PIL import Image

        with Image.open(tmp_path / f"{name}.png") as img:  # decodes: not just a header
            colours = img.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 20  # a drawn chart, not a blank canvas
        svg = (tmp_path / f"{name}.svg").read_text(encoding="utf-8")
        assert svg.startswith("<svg") and 'width="1000"' in svg
    loss_svg = (tmp_path / "loss.svg").read_text(encoding="utf-8")
    assert "scatterlayer" in loss_svg


@needs_chromium
def test_cdn_html_references_plotlyjs_and_draws_when_it_loads(tiny_run, tmp_path, browser):
    """The CDN page is small and names the exact plotly.js version; served that file (the machine
    has no internet, so the request is answered with the bundled plotly.js) it draws all charts."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    store, key = tiny_run
    out = tmp_path / "cdn.html"
    proc = _cli(store, key, "--html", str(out), "--plotlyjs", "cdn")
    assert proc.returncode == 0, proc.stderr
    page_text = out.read_text(encoding="utf-8")
    url = f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"
    assert re.search(rf'<script src="{re.escape(url)}"', page_text)
    assert out.stat().st_size < 500_000  # plotly.js (4.8 MB) is not inlined
    fetched: list[str] = []

    def serve(route):
        fetched.append(route.request.url)
        if route.request.url == url:
            route.fulfill(status=200, content_type="application/javascript", body=get_plotlyjs())
        elif route.request.url.startswith("file:"):
            route.continue_()
        else:
            route.abort()

    context = browser.new_context(viewport={"width": 1280, "height": 800})  # the session's Chromium
    try:
        context.route("**/*", serve)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(out.as_uri())
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=180_000)
    finally:
        context.close()
    assert not errors, errors
    assert url in fetched


def test_unknown_plotlyjs_mode_is_refused():
    from backend.plots.run_page import plotlyjs_tag

    with pytest.raises(InputError, match="inline or cdn"):
        plotlyjs_tag("remote")
