"""Issue 13 in real Chromium: open a run, compute step importance, branch at a step, and see the
branch's loss curve overlaid on the parent's. Both buttons submit jobs (issue 20): the server's
worker runs them and the page shows the result when the job is over; the waits poll for it.
Screenshots go to tests/artifacts/."""

from __future__ import annotations

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

        page.get_by_text("Branch here (step 2)").first.click()
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
        assert names[0] == "parent" and len(names) == 2 and "resample @ step 2" in names[1]
        assert "Traceback" not in page.content()
        overlay.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "branch_overlay_1280.png"), full_page=True)
        page.close()
    assert len(store.children(key)) == 1
