"""The exported HTML: one self-contained file that works offline, with a slider driving every view
(the same run page as the static site's: tests/browser/test_site.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app_server import CHROMIUM, ROOT


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    from backend.export.single import export_html

    store, key = tiny_run
    run = store.open(key)
    out = export_html(run, tmp_path_factory.mktemp("export") / "run.html")
    return out, run


def test_export_file_is_self_contained(exported):
    path, run = exported
    page = path.read_text(encoding="utf-8")
    assert path.stat().st_size > 3_000_000  # plotly.js is inlined
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']?(https?:)?//""", page)  # nothing external
    assert 'id="raml-step"' in page and f'max="{len(run.steps)}"' in page
    assert run.key in page


def test_export_refuses_a_directory_and_unwritable_paths(tiny_run, tmp_path):
    from backend.errors import InputError
    from backend.export.single import export_html

    store, key = tiny_run
    run = store.open(key)
    with pytest.raises(InputError, match="is a directory"):
        export_html(run, tmp_path)
    with pytest.raises(InputError, match="cannot write"):
        export_html(run, tmp_path / "missing" / "run.html")
    assert not list(tmp_path.iterdir())  # no temp file left behind


def test_cli_export_writes_the_file(tiny_run, tmp_path):
    store, key = tiny_run
    out = tmp_path / "cli.html"
    proc = subprocess.run(
        [sys.executable, "-m", "backend", "--cache-dir", str(store.root), "export", key, "--html", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("cli.html") and out.stat().st_size > 3_000_000


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt install chromium)")
def test_export_opens_offline_and_slider_moves_the_cursor(exported, browser):
    path, run = exported
    n_steps, n_tokens = len(run.steps), run.meta["summary"]["n_tokens"]
    requests: list[str] = []
    context = browser.new_context(offline=True, viewport={"width": 1280, "height": 800})  # the session's Chromium
    try:
        context.route(
            "**/*",
            lambda route: (
                requests.append(route.request.url),
                route.continue_() if route.request.url.startswith("file:") else route.abort(),
            ),
        )
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(path.as_uri())
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=180_000)
        assert page.evaluate("typeof Plotly") == "object"
        assert page.locator("#raml-step-label").inner_text().startswith("Start")

        def cursor_x() -> float:
            return page.evaluate("""() => { const gd = document.getElementById('raml-loss');
                                     const s = gd.layout.shapes; return s[s.length - 1].x0; }""")

        assert cursor_x() == 0.0
        page.evaluate(
            """(v) => { const s = document.getElementById('raml-step'); s.value = v;
                                  s.dispatchEvent(new Event('input')); }""",
            3,
        )
        assert page.locator("#raml-step-label").inner_text() == f"Step 3 / {n_steps}"
        assert page.evaluate("document.body.dataset.step") == "3"
        assert run.steps["text"].iloc[2].strip()[:12] in page.locator("#raml-current").inner_text()
        assert "Step 3" in page.locator("[data-raml=card]").inner_text()  # the step card follows too
        assert cursor_x() == pytest.approx(run.steps["end"].iloc[2] / n_tokens)
        lens_x0 = page.evaluate("""() => { const s = document.getElementById('raml-lens').layout.shapes;
                                           return s[s.length - 1].x0; }""")
        assert lens_x0 == 2.5
        page.keyboard.press("ArrowRight")
        assert page.locator("#raml-step-label").inner_text() == f"Step 4 / {n_steps}"
        page.screenshot(path=str(Path(__file__).resolve().parents[1] / "artifacts" / "export_step4.png"))
    finally:
        context.close()
    assert not errors, errors
    assert all(u.startswith("file:") for u in requests), requests  # nothing fetched from the network
