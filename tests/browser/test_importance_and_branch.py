"""Issue 13 in real Chromium: open a run, compute step importance, branch at a step, and see the
branch's loss curve overlaid on the parent's. Both buttons submit jobs (issue 20): the server's
worker runs them and the page shows the result when the job is over; the waits poll for it.
Screenshots go to tests/artifacts/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY

from tests.app_server import CHROMIUM, FIRST_PAGE_MS, streamlit_app

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt install chromium)")


def test_compute_importance_branch_and_see_the_overlay(tmp_path, tiny_model_dir, browser):
    from backend.pipeline.run import RunRequest, run_question
    from backend.store.runs import RunStore

    store = RunStore(tmp_path / "cache")  # the model is a folder, so the app's process can load it
    req = RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, model=tiny_model_dir)
    key = run_question(req, store).key
    n_steps = len(store.open(key).steps)
    ARTIFACTS.mkdir(exist_ok=True)
    with streamlit_app(store.root) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(f"{url}/?run={key}&step=3", wait_until="domcontentloaded")
        page.locator(".st-key-importance_compute button").first.click(timeout=FIRST_PAGE_MS)
        strip = page.locator(".st-key-importance_strip .js-plotly-plot").first
        strip.wait_for(timeout=300_000)  # the importance job's result
        rows = page.evaluate(
            "() => document.querySelector('.st-key-importance_strip .js-plotly-plot').data[0].z.length"
        )
        assert rows == 2  # ablation and attention
        cols = page.evaluate(
            "() => document.querySelector('.st-key-importance_strip .js-plotly-plot').data[0].z[0].length"
        )
        assert cols == n_steps
        strip.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "importance_strip_1280.png"), full_page=True)

        page.locator(".st-key-branch_here_open label").first.click()  # acts on step 3: the step on screen
        page.locator(".st-key-branch_samples input").first.fill("1")
        page.locator(".st-key-branch_samples input").first.press("Enter")
        page.locator(".st-key-branch_max_new input").first.fill("8")
        page.locator(".st-key-branch_max_new input").first.press("Enter")
        page.get_by_text("8 tokens to generate", exact=False).wait_for(timeout=60_000)  # the cost, told first
        page.locator(".st-key-branch_start button").first.click()
        overlay = page.locator(".st-key-branch_overlay .js-plotly-plot").first
        overlay.wait_for(timeout=300_000)  # the branch job's result
        names = page.evaluate(
            "() => document.querySelector('.st-key-branch_overlay .js-plotly-plot').data.map(t => t.name)"
        )
        assert names[0] == "parent" and len(names) == 2 and "branch 1 @ step 3, resample, T=0.7" in names[1]
        assert "Traceback" not in page.content()
        overlay.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "branch_overlay_1280.png"), full_page=True)
        page.close()
    children = store.children(key)
    assert len(children) == 1 and store.open(children[0]).branch_at == 3


def test_the_step_a_button_acts_on_is_the_step_on_screen(tmp_path, tiny_model_dir, browser):
    """Issue 25 items 1-2 in real Chromium: ticking an importance row jumps there (no
    StreamlitWidgetAlreadyInstantiatedError, the Branches panel stays, the URL follows); then
    step with the keyboard and at once "branch here": the queued branch job is at the step shown,
    and the strip's cursor and the branch panel's step follow the browser's cursor. Importance is
    computed here beforehand and the branch job is read from the queue, so no wait on a model."""
    from backend.analysis.importance.run import compute_run_importance
    from backend.pipeline.run import RunRequest, run_question
    from backend.store.runs import RunStore

    store = RunStore(tmp_path / "cache")
    req = RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, model=tiny_model_dir)
    key = run_question(req, store).key
    compute_run_importance(store.open(key), store=store)
    n_steps = len(store.open(key).steps)
    with streamlit_app(store.root) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(f"{url}/?run={key}&step=1", wait_until="domcontentloaded")
        page.locator(".st-key-importance_strip .js-plotly-plot").first.wait_for(timeout=FIRST_PAGE_MS)
        page.wait_for_function("() => document.body.classList.contains('raml-live')", timeout=FIRST_PAGE_MS)
        page.wait_for_function(  # the first render's follow-up: the window height reached the server, views sized
            "() => window.__ramlStepper && window.__ramlStepper.data.viewport_h === innerHeight", timeout=FIRST_PAGE_MS
        )

        best = _top_step(page)
        page.locator("#raml-step-label").click()  # focus the page (a click also mirrors the step)
        page.keyboard.press("End" if best == 1 else "Home")  # a step other than the row's
        _wait_step(page, n_steps if best == 1 else 0, n_steps)
        _tick_first_row(page, best)
        _wait_step(page, best, n_steps)
        _wait_url_step(page, best)
        assert "StreamlitWidgetAlreadyInstantiatedError" not in page.content()
        assert page.locator(".st-key-branch_here_open").count() == 1  # the Branches panel is still there

        page.locator("#raml-step-label").click()
        page.keyboard.press("Home")
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        _wait_step(page, 3, n_steps)
        shown = page.evaluate(
            """() => ({strip: document.querySelector('.st-key-importance_strip .js-plotly-plot').dataset.ramlCursor,
                       at: document.getElementById('raml-branch-at').dataset.step})"""
        )
        assert shown == {"strip": "3", "at": "3"}  # every panel follows the browser's cursor
        page.locator(".st-key-branch_here_open label").first.click()  # at once: no wait for the URL mirror
        start = page.locator(".st-key-branch_start button").first
        start.wait_for(timeout=120_000)
        page.wait_for_function(
            "() => document.querySelector('.st-key-branch_start button').innerText.trim() === 'Branch at step 3'",
            timeout=60_000,
        )
        start.click()
        rows = _poll_branch_jobs(store.root / "jobs.sqlite")
        page.close()
    assert len(rows) == 1 and json.loads(rows[0][0])["step"] == 3  # the step that was on screen


def _poll_branch_jobs(path: Path, deadline_s: float = 120.0) -> list:
    """The queued branch jobs' params, once there is one (polled with a deadline)."""
    import sqlite3
    import time

    end = time.monotonic() + deadline_s
    while True:
        if path.exists():
            with sqlite3.connect(path) as con:
                rows = con.execute("SELECT params FROM jobs WHERE kind = 'branch'").fetchall()
            if rows:
                return rows
        if time.monotonic() > end:
            raise AssertionError("no branch job was queued")
        time.sleep(0.5)


def _wait_step(page, step: int, n_steps: int) -> None:
    label = f"Start · 0 / {n_steps}" if step == 0 else f"Step {step} / {n_steps}"
    page.wait_for_function(
        f"""() => window.__ramlStepper && window.__ramlStepper.step === {step}
                 && document.getElementById('raml-step-label').textContent === '{label}'""",
        timeout=60_000,
    )


def _wait_url_step(page, step: int) -> None:
    page.wait_for_function(f"() => new URL(location.href).searchParams.get('step') === '{step}'", timeout=60_000)


def _top_step(page) -> int:
    """The step of the table's first row (most important first): the strip's largest ablation."""
    z = page.evaluate("() => document.querySelector('.st-key-importance_strip .js-plotly-plot').data[0].z[0]")
    values = [(-1e9 if v is None else v) for v in z]
    return values.index(max(values)) + 1


# Whether the grid's first data row is selected: the grid draws on a canvas, but keeps an
# accessibility table beside it (glide-data-grid: ``tr[aria-rowindex=2]`` is data row 0, with
# ``aria-selected``); null where there is none.
FIRST_ROW_SELECTED_JS = """() => {
  const row = document.querySelector(".st-key-importance_table table[role='grid'] tr[aria-rowindex='2']");
  return row ? row.getAttribute('aria-selected') === 'true' : null;
}"""


def _tick_first_row(page, step: int, deadline_s: float = 180.0) -> None:
    """Tick the first row's checkbox (the grid is a canvas: click its row-marker cell) until the
    cursor is at ``step``, with a deadline. A click is a toggle: it is repeated only while the row
    is not selected (a click during a rerun's redraw is dropped), never while a selection waits
    for a slow rerun (a second click would take it back: the fresh clone's failure under load).
    The grid is scrolled to and measured again on each try, since a rerun can move it."""
    import time

    grid = page.locator(".st-key-importance_table [data-testid='stDataFrameResizable']").first
    end = time.monotonic() + deadline_s
    while True:
        if page.evaluate(FIRST_ROW_SELECTED_JS) is not True:
            grid.scroll_into_view_if_needed()  # a rerun that resizes the views moves the grid
            box = grid.bounding_box()
            page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # row marker column, first data row
        try:
            page.wait_for_function(f"() => window.__ramlStepper.step === {step}", timeout=20_000)
            return
        except Exception:
            if time.monotonic() > end:
                raise
