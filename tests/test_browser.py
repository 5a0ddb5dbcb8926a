"""The real app in real Chromium: `streamlit run` on a free 127.0.0.1 port, Debian's Chromium via
playwright. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.app_server import CHROMIUM, launch_chromium, streamlit_app

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt install chromium)")


@pytest.fixture(scope="module")
def app_url(tiny_run, tmp_path_factory):
    """The app serving a private copy of the tiny-model cache: (base url, run key, run)."""
    store, key = tiny_run
    root = tmp_path_factory.mktemp("browser") / "cache"
    shutil.copytree(store.root, root, ignore=shutil.ignore_patterns("locks", "tmp"))
    with streamlit_app(root) as url:
        yield url, key, store.open(key)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch_chromium(pw)
        yield b
        b.close()


def _label(page) -> str:
    return page.locator("#raml-step-label").inner_text().strip()


def _wait_at(page, boundary: int, label: str) -> None:
    """Wait until the label, highlighted text and the browser-drawn cursor marks show ``boundary``."""
    page.wait_for_function(
        """([b, label]) => {
             const el = document.getElementById('raml-step-label');
             const cur = document.getElementById('raml-current');
             const textOk = b === 0 ? cur === null : (cur !== null && cur.dataset.step === String(b));
             return el && el.textContent.trim() === label && textOk && document.body.dataset.ramlCursor === String(b);
           }""",
        arg=[boundary, label],
        timeout=60_000,
    )


def _loss_mark_matches(page, x: float) -> bool:
    """The cursor line drawn over the loss chart sits at progress ``x`` of its x axis."""
    return page.evaluate(
        """(x) => {
             const gd = document.querySelector('.st-key-explore_loss_chart .js-plotly-plot');
             const mark = gd && gd.querySelector('.raml-cursor-mark');
             if (!mark || mark.style.display === 'none') return false;
             const xa = gd._fullLayout.xaxis;
             const want = xa._offset + xa.l2p(x) - 1;
             return Math.abs(parseFloat(mark.style.left) - want) < 1.5;
           }""",
        x,
    )


def test_next_and_arrow_key_move_label_text_and_cursor(app_url, browser):
    url, key, run = app_url
    n_steps, n_tokens = len(run.steps), run.meta["summary"]["n_tokens"]
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{url}/?run={key}", wait_until="domcontentloaded")
    _wait_at(page, 0, f"Start · 0 / {n_steps}")
    page.screenshot(path=str(ARTIFACTS / "explore_start_1280x800.png"))
    assert _loss_mark_matches(page, 0.0)

    page.locator("#raml-step-label").click()  # focus the page (plain text), not a widget
    page.keyboard.press("ArrowRight")
    _wait_at(page, 1, f"Step 1 / {n_steps}")
    first = page.locator("#raml-current").inner_text()
    assert run.steps["text"].iloc[0].strip()[:15] in first
    assert _loss_mark_matches(page, run.steps["end"].iloc[0] / n_tokens)

    page.locator(".st-key-explore_next button").first.click()
    _wait_at(page, 2, f"Step 2 / {n_steps}")
    second = page.locator("#raml-current").inner_text()
    assert second != first and run.steps["text"].iloc[1].strip()[:15] in second
    assert _loss_mark_matches(page, run.steps["end"].iloc[1] / n_tokens)
    page.wait_for_function("() => location.search.includes('step=2')", timeout=10_000)  # shareable URL
    page.screenshot(path=str(ARTIFACTS / "explore_step2_1280x800.png"))

    page.keyboard.press("ArrowLeft")
    _wait_at(page, 1, f"Step 1 / {n_steps}")
    page.close()


def test_url_restores_the_view_and_bad_urls_warn(app_url, browser):
    url, key, run = app_url
    n_steps = len(run.steps)
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    page.goto(f"{url}/?run={key}&step=3&space=hidden&layer=1", wait_until="domcontentloaded")
    _wait_at(page, 3, f"Step 3 / {n_steps}")
    assert run.steps["text"].iloc[2].strip()[:12] in page.locator("#raml-current").inner_text()
    page.get_by_text("layer 1", exact=False).first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "explore_step3_hidden_1920x1080.png"))

    page.goto(f"{url}/?run=../../etc/passwd&step=99", wait_until="domcontentloaded")
    page.get_by_text("is not a run key", exact=False).first.wait_for(timeout=60_000)
    page.get_by_text("out of range", exact=False).first.wait_for(timeout=30_000)
    _wait_at(page, n_steps, f"Step {n_steps} / {n_steps}")
    assert "Traceback" not in page.content()
    page.screenshot(path=str(ARTIFACTS / "explore_bad_url_1920x1080.png"))
    page.close()


def test_runs_page_renders(app_url, browser):
    url, key, _ = app_url
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{url}/runs", wait_until="domcontentloaded")
    page.get_by_text("1 of 1 runs").wait_for(timeout=60_000)
    page.locator(".st-key-runs_open button").first.wait_for(timeout=30_000)
    page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=30_000)
    page.wait_for_timeout(800)  # the table canvas paints after it mounts
    assert "Traceback" not in page.content()
    page.screenshot(path=str(ARTIFACTS / "runs_1280x800.png"))
    page.close()
