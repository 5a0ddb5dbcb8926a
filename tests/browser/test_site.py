"""The static site of runs in real Chromium (issue 24): the index opens from file:// with nothing
fetched from the network, search and sort work, a click opens a run, and stepping with the
keyboard moves every view (text highlight, step card, loss cursor, path ring, lens column,
importance column). Three tiny-model runs, one with importance computed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import SAMPLE_TRAJECTORY

from backend.store.runs import RunStore

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="module")
def site(tiny_run, tiny_llama, tmp_path_factory):
    """(site folder, store, key of the run with importance, keys) of three tiny-model runs."""
    from backend.analysis.importance.run import compute_run_importance
    from backend.export.site import export_site, select_runs
    from backend.pipeline.run import RunRequest, run_question

    src, key = tiny_run
    store = RunStore(tmp_path_factory.mktemp("site_browser") / "cache")
    shutil.copytree(src.root / "runs" / key, store.root / "runs" / key, ignore=shutil.ignore_patterns("derived"))
    store.reconcile()
    compute_run_importance(store.open(key), tiny_llama, store=store)
    short = SAMPLE_TRAJECTORY.split("\n")[0]
    for question, answer, trajectory in (
        ("Zed counts 3 cats and 4 dogs. How many pets?", "7", short),
        ("Ann reads 2 books a week. How many in 3 weeks?", "6", SAMPLE_TRAJECTORY + " Done, the answer is 6."),
    ):
        req = RunRequest(question=question, answer=answer, trajectory=trajectory, model=tiny_llama.name)
        run_question(req, store, loaded=tiny_llama)
    keys = select_runs(store, [])
    out = tmp_path_factory.mktemp("site_out") / "site"
    export_site(store, keys, out)
    return out, store, key, keys


def _offline_page(browser, requests: list[str], errors: list[str]):
    context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(120_000)
    context.route(
        "**/*",
        lambda route: (
            requests.append(route.request.url),
            route.continue_() if route.request.url.startswith("file:") else route.abort(),
        ),
    )
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return context, page


def _shape_x0(page, chart: str) -> dict:
    return page.evaluate(
        """(id) => { const gd = document.getElementById(id);
                     const s = gd.layout.shapes.find(x => x.name === 'cursor');
                     return {x0: s.x0, visible: s.visible !== false}; }""",
        chart,
    )


def test_index_search_sort_click_through_and_step_every_view(site, browser):
    out, store, key, keys = site
    run = store.open(key)
    n_steps = len(run.steps)
    requests: list[str] = []
    errors: list[str] = []
    context, page = _offline_page(browser, requests, errors)
    try:
        page.goto((out / "index.html").as_uri())
        rows = page.locator("#raml-runs tbody tr")
        assert rows.count() == 3 and page.locator("#raml-count").inner_text() == "3 of 3 runs"

        page.fill("#raml-search", "zed cats")  # search: every word, any column, case-insensitive
        page.wait_for_function("() => document.getElementById('raml-count').textContent === '1 of 3 runs'")
        assert page.locator("#raml-runs tbody tr:not([hidden])").inner_text().startswith("Zed counts")
        page.fill("#raml-search", "")
        page.wait_for_function("() => document.getElementById('raml-count').textContent === '3 of 3 runs'")

        def steps_column() -> list[int]:
            return [int(v) for v in page.locator("#raml-runs tbody tr td:nth-child(5)").all_inner_texts()]

        page.get_by_role("button", name="Steps").click()  # sort: ascending, then descending
        assert steps_column() == sorted(steps_column()) and len(set(steps_column())) == 3
        page.get_by_role("button", name="Steps").click()
        assert steps_column() == sorted(steps_column(), reverse=True)
        page.screenshot(path=str(ARTIFACTS / "site_index.png"))

        page.locator(f'#raml-runs tr[data-key="{key}"] td.q a').click()  # click through to the run
        page.wait_for_url(f"**/runs/{key}.html**")
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length === 4")  # + importance
        assert page.evaluate("typeof Plotly") == "object"
        assert page.locator("#raml-step-label").inner_text().startswith("Start")
        assert "Before any thinking" in page.locator("[data-raml=card]").inner_text()
        assert _shape_x0(page, "raml-importance")["visible"] is False  # no step column at the start

        coords = page.evaluate("() => JSON.parse(document.getElementById('raml-data').textContent).path")
        cursor_x = page.evaluate("() => JSON.parse(document.getElementById('raml-data').textContent).cursor_x")
        page.locator("body").click(position={"x": 5, "y": 5})
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowLeft")
        b = 2
        assert page.locator("#raml-step-label").inner_text() == f"Step {b} / {n_steps}"
        assert page.evaluate("document.body.dataset.step") == str(b)
        current = page.locator(".raml-step.current")  # the text: step 2 highlighted, 1 dimmed, 3.. ahead
        assert current.count() == 1 and current.get_attribute("data-step") == str(b)
        assert run.steps["text"].iloc[b - 1].strip()[:12] in current.inner_text()
        assert page.locator('.raml-step.past[data-step="1"]').count() == 1
        assert page.locator(f'.raml-step.future[data-step="{b + 1}"]').count() == 1
        assert f"Step {b}" in page.locator("[data-raml=card]").inner_text()  # the step card
        assert _shape_x0(page, "raml-loss")["x0"] == pytest.approx(cursor_x[b])  # the loss cursor
        ring = page.evaluate("""() => { const gd = document.getElementById('raml-path');
                                        const t = gd.data.find(d => d.name === 'cursor'); return [t.x[0], t.y[0]]; }""")
        assert ring == pytest.approx(coords[b])  # the path marker
        assert _shape_x0(page, "raml-lens")["x0"] == b - 0.5  # the lens column
        strip = _shape_x0(page, "raml-importance")
        assert strip["visible"] is True and strip["x0"] == b - 0.5  # the importance column of step 2
        assert page.evaluate("location.hash") == f"#step={b}"

        page.keyboard.press("End")
        assert page.locator("#raml-step-label").inner_text() == f"Step {n_steps} / {n_steps}"
        assert _shape_x0(page, "raml-lens")["x0"] == n_steps - 0.5
        page.screenshot(path=str(ARTIFACTS / "site_run_end.png"))
        page.keyboard.press("Home")
        assert page.locator("#raml-step-label").inner_text().startswith("Start")

        page.goto((out / "runs" / f"{key}.html").as_uri() + "#step=3")  # a shared link opens at its step
        page.wait_for_function("() => document.body.dataset.step === '3'")
        assert page.locator(".raml-step.current").get_attribute("data-step") == "3"
        page.get_by_role("link", name="← all runs").click()
        page.wait_for_url("**/index.html")
        assert page.locator("#raml-runs tbody tr").count() == 3
    finally:
        context.close()
    assert not errors, errors
    assert requests and all(u.startswith("file:") for u in requests), requests  # nothing from the network
