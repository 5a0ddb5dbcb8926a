"""Issue 20 in real Chromium: on Explore, start step importance and the exact all-layer update
(both jobs of the server's queue), open another page while they run, come back: both finished
and shown. Every wait polls for a condition with a generous deadline. Screenshots (1366 x 768)
go to tests/artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY, build_wide_tiny

from tests.app_server import CHROMIUM, streamlit_app

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DEADLINE_MS = 300_000  # two jobs on a 2-core machine under load, plus a model load each

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt install chromium)")

# How many job cards of the sidebar's jobs panel say "finished"
FINISHED_JS = """
(n) => {
  const panel = document.querySelector('.st-key-jobs_panel');
  return !!panel && (panel.innerText.match(/finished in/g) || []).length >= n;
}
"""


@pytest.fixture(scope="module")
def wide_model_dir(tmp_path_factory, smol_tokenizer) -> str:
    """A tiny Llama wide enough (H = 128) for the exact update's probe, saved as a model folder
    (the app's server process loads it by path)."""
    model = build_wide_tiny(smol_tokenizer)
    path = tmp_path_factory.mktemp("wide_tiny_model")
    model.save_pretrained(path, safe_serialization=True)
    smol_tokenizer.save_pretrained(path)
    return str(path)


def test_importance_and_exact_jobs_survive_navigation(tmp_path, wide_model_dir, browser):
    from backend.pipeline.run import RunRequest, run_question
    from backend.store.runs import RunStore

    store = RunStore(tmp_path / "cache")
    req = RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, model=wide_model_dir)
    key = run_question(req, store).key
    n_steps = len(store.open(key).steps)
    ARTIFACTS.mkdir(exist_ok=True)
    with streamlit_app(store.root) as url:  # the session's Chromium, a server of its own
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.goto(f"{url}/?run={key}&step=3", wait_until="domcontentloaded")
        importance = page.locator(".st-key-importance_compute button").first
        importance.wait_for(timeout=DEADLINE_MS)
        exact = page.locator(".st-key-exact_compute button").first
        exact.wait_for(timeout=DEADLINE_MS)
        importance.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "explore_jobs_buttons_1366.png"))

        importance.click()
        page.locator(".st-key-importance_progress").first.wait_for(timeout=DEADLINE_MS)  # the job, followed
        page.locator(".st-key-exact_compute button").first.click()
        page.locator(".st-key-jobs_panel").get_by_text("Exact update", exact=False).first.wait_for(timeout=DEADLINE_MS)

        # leave Explore while the jobs run; they belong to the server, not to this page's script run
        page.locator('[data-testid="stSidebarNav"] a', has_text="Runs").first.click()
        page.locator(".st-key-runs_table").first.wait_for(timeout=DEADLINE_MS)
        page.wait_for_function(FINISHED_JS, arg=2, timeout=DEADLINE_MS)  # the sidebar follows them

        page.locator('[data-testid="stSidebarNav"] a', has_text="Explore").first.click()
        strip = page.locator(".st-key-importance_strip .js-plotly-plot").first
        strip.wait_for(timeout=DEADLINE_MS)
        page.get_by_text("Exact update cached ·", exact=False).first.wait_for(timeout=DEADLINE_MS)
        cols = page.evaluate(
            "() => document.querySelector('.st-key-importance_strip .js-plotly-plot').data[0].z[0].length"
        )
        assert cols == n_steps
        assert page.locator(".st-key-importance_compute button").first.inner_text().strip() == "Recompute importance"
        assert page.locator(".st-key-exact_compute").count() == 0  # cached: no button any more
        assert "Traceback" not in page.content()
        strip.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "explore_jobs_done_1366.png"))
        page.close()

    from backend.jobs import open_queue

    jobs = {j.kind: j for j in open_queue(store).list()}
    assert jobs["importance"].state == "finished" and jobs["exact"].state == "finished"
    assert jobs["importance"].params["key"] == key and jobs["exact"].params == {"key": key}
