"""The real app in real Chromium: `streamlit run` on a free 127.0.0.1 port, Debian's Chromium via
playwright. Screenshots go to tests/artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app_server import CHROMIUM, FIRST_PAGE_MS

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt install chromium)")


@pytest.fixture()
def app_url(explore_app):
    return explore_app


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
    """The cursor line drawn over the loss chart sits at progress ``x`` of its x axis (waited for
    up to 30 s: a rerun may be re-drawing the chart; then the last reading is returned)."""
    try:
        page.wait_for_function(LOSS_MARK_AT_JS, arg=x, timeout=30_000)
    except Exception:  # playwright's TimeoutError: the reading below is False
        pass
    return page.evaluate(LOSS_MARK_AT_JS, x)


LOSS_MARK_AT_JS = """(x) => {
             const gd = document.querySelector('.st-key-explore_loss_chart .js-plotly-plot');
             const mark = gd && gd.querySelector('.raml-cursor-mark');
             if (!mark || mark.style.display === 'none') return false;
             const xa = gd._fullLayout.xaxis;
             const want = xa._offset + xa.l2p(x) - 1;
             return Math.abs(parseFloat(mark.style.left) - want) < 1.5;
           }"""


def test_next_and_arrow_key_move_label_text_and_cursor(app_url, browser):
    url, key, run = app_url
    n_steps, n_tokens = len(run.steps), run.meta["summary"]["n_tokens"]
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    _live(page, f"{url}/?run={key}")
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
    page.wait_for_function("() => location.search.includes('step=2')", timeout=60_000)  # shareable URL
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
    page.locator("[data-testid='stDataFrame'] canvas").first.wait_for(timeout=30_000)  # the table painted
    assert "Traceback" not in page.content()
    page.screenshot(path=str(ARTIFACTS / "runs_1280x800.png"))
    page.close()


# ----------------------------------------------------------------------------- browser-side stepping (issue 14)
# Every view at boundary `b`, checked in the same JS task as the key press: the stepper updates
# label, text, step card and the three chart marks synchronously, so they share one frame.
ALL_VIEWS_AT_JS = """
(b) => {
  const s = window.__ramlStepper;
  const label = document.getElementById('raml-step-label').textContent.trim();
  const cur = document.getElementById('raml-current');
  const card = document.getElementById('raml-step-card').textContent;
  const charts = ['explore_loss_chart', 'explore_lens_chart', 'explore_path_chart'].map(
    (k) => document.querySelector('.st-key-' + k + ' .js-plotly-plot'));
  const ring = charts[2].__ramlMark, path = charts[2]._fullLayout, m = s.data.marks.charts.find((c) => c.kind === 'ring');
  const ringX = path.xaxis._offset + path.xaxis.l2p(m.x[b]) - 14;
  return {
    label: label, text: b === 0 ? cur === null : (cur !== null && cur.dataset.step === String(b)),
    card: b === 0 ? card.includes('Before any thinking') : card.includes('Step ' + b),
    charts: charts.map((gd) => gd.dataset.ramlCursor === String(b) && gd.__ramlMark.style.display !== 'none'),
    ring: Math.abs(parseFloat(ring.style.left) - ringX) < 1.5, range: document.querySelector('input.raml-range').value,
  };
}
"""
PRESS_AND_READ_JS = """
([key, b]) => {
  document.body.dispatchEvent(new KeyboardEvent('keydown', {key: key, bubbles: true, cancelable: true}));
  return (%s)(b);
}
""" % ALL_VIEWS_AT_JS.strip()


def _live(page, url: str) -> None:
    """Open ``url`` and wait until the stepper is live and the views were sized for this window
    (the server's layout is for this height: the stepper reports it only when off by > 40 px)."""
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_function(
        """() => document.body.classList.contains('raml-live') && window.__ramlStepper
                 && Math.abs(window.__ramlStepper.data.viewport_h - window.innerHeight) <= 40""",
        timeout=FIRST_PAGE_MS,
    )


def _wait_not_playing(page) -> None:
    """Play is off: no timer in the browser and the button offers Play again."""
    page.wait_for_function(
        """() => window.__ramlStepper && window.__ramlStepper.timer === null
                 && document.querySelector('.st-key-explore_play button').innerText.trim().endsWith('Play')""",
        timeout=30_000,
    )


def _assert_all_at(state: dict, b: int, n_steps: int) -> None:
    label = "Start · 0 / " + str(n_steps) if b == 0 else f"Step {b} / {n_steps}"
    assert state == {
        "label": label,
        "text": True,
        "card": True,
        "charts": [True, True, True],
        "ring": True,
        "range": str(b),
    }


def test_stepping_moves_every_view_in_the_same_frame(app_url, browser):
    url, key, run = app_url
    n_steps = len(run.steps)
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    _live(page, f"{url}/?run={key}&step=0")
    for b in range(1, n_steps + 1):  # every boundary, read in the same task as the key press
        _assert_all_at(page.evaluate(PRESS_AND_READ_JS, ["ArrowRight", b]), b, n_steps)
    _assert_all_at(page.evaluate(PRESS_AND_READ_JS, ["ArrowRight", n_steps]), n_steps, n_steps)  # clamped
    _assert_all_at(page.evaluate(PRESS_AND_READ_JS, ["Home", 0]), 0, n_steps)
    _assert_all_at(page.evaluate(PRESS_AND_READ_JS, ["End", n_steps]), n_steps, n_steps)
    page.wait_for_function(f"() => location.search.includes('step={n_steps}')", timeout=60_000)  # URL mirrored

    # the native slider, the Prev button and real key presses go through the same path
    page.evaluate(
        "() => { const r = document.querySelector('input.raml-range'); r.value = '2'; r.dispatchEvent(new Event('input')); }"
    )
    _assert_all_at(page.evaluate(ALL_VIEWS_AT_JS, 2), 2, n_steps)
    page.locator(".st-key-explore_prev button").first.click()
    _assert_all_at(page.evaluate(ALL_VIEWS_AT_JS, 1), 1, n_steps)
    page.locator("body").press("ArrowRight")
    _assert_all_at(page.evaluate(ALL_VIEWS_AT_JS, 2), 2, n_steps)
    page.wait_for_function("() => location.search.includes('step=2')", timeout=60_000)

    # Play runs in the browser and stops at the end; it never started by itself
    page.keyboard.press("End")
    page.keyboard.press("Home")
    page.locator(".st-key-explore_play button").first.click()
    page.wait_for_function("() => document.body.dataset.ramlCursor === '2'", timeout=60_000)
    assert page.locator(".st-key-explore_play button").first.inner_text().strip().endswith("Pause")
    page.locator(".st-key-explore_play button").first.click()
    stopped = page.evaluate("() => window.__ramlStepper.step")
    _wait_not_playing(page)  # the timer is gone, so the cursor cannot move again
    assert page.evaluate("() => window.__ramlStepper.step") == stopped
    page.screenshot(path=str(ARTIFACTS / "explore_stepping_1440x900.png"))
    page.close()


def _chart_point(page, chart: str, x: float, y: float) -> tuple[float, float]:
    """Page pixel of data point (x, y) in a chart."""
    return tuple(
        page.evaluate(
            """([k, x, y]) => {
                 const gd = document.querySelector('.st-key-' + k + ' .js-plotly-plot');
                 const fl = gd._fullLayout, r = gd.getBoundingClientRect();
                 return [r.left + fl.xaxis._offset + fl.xaxis.l2p(x), r.top + fl.yaxis._offset + fl.yaxis.l2p(y)];
               }""",
            [chart, x, y],
        )
    )


def _click_until_at(page, chart: str, x: float, y: float, step: int, deadline_s: float = 90.0) -> None:
    """Click data point (x, y) of ``chart`` until the cursor is at ``step``. A click that lands while
    plotly redraws the chart (the rerun that follows the URL mirror re-sends the figure) is dropped
    by plotly, as it would be for a person, who clicks again: so poll — click, wait a little, click
    again — with a deadline, instead of one click and one long wait that races the redraw."""
    import time

    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    end = time.monotonic() + deadline_s
    while True:
        page.mouse.click(*_chart_point(page, chart, x, y))
        try:
            page.wait_for_function(f"() => window.__ramlStepper.step === {step}", timeout=5_000)
            return
        except PlaywrightTimeout:
            if time.monotonic() > end:
                raise


def test_clicks_on_path_loss_and_lens_jump(app_url, browser):
    url, key, run = app_url
    n_steps, n_tokens = len(run.steps), run.meta["summary"]["n_tokens"]
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    _live(page, f"{url}/?run={key}&step=0")
    ring = page.evaluate("() => window.__ramlStepper.data.marks.charts.find((c) => c.kind === 'ring')")

    def at() -> int:
        return int(page.evaluate("() => window.__ramlStepper.step"))

    def click_path(b: int) -> None:
        _click_until_at(page, "explore_path_chart", ring["x"][b], ring["y"][b], b)

    click_path(4)
    page.keyboard.press("ArrowRight")
    assert at() == 5
    click_path(4)  # the same point again jumps again (a selection toggle would ignore it)
    click_path(0)  # the start marker is a point like the others

    _click_until_at(page, "explore_lens_chart", 6, 1, 6)

    cut = int(run.steps["end"].iloc[1])  # boundary 2 on the loss curve
    loss = float(run.tokens.set_index("cut")["loss"].loc[cut])
    _click_until_at(page, "explore_loss_chart", cut / n_tokens, loss, 2)
    assert page.locator("#raml-step-label").inner_text().strip() == f"Step 2 / {n_steps}"
    page.close()


VIEWS = (".raml-traj", ".st-key-explore_loss_chart", ".st-key-explore_path_chart", ".st-key-explore_lens_chart")


VIEWS_ON_SCREEN_JS = """(sel) => sel.map((s) => { const el = document.querySelector(s); if (!el) return false;
  const r = el.getBoundingClientRect();
  return r.height > 80 && r.top >= 0 && r.bottom <= innerHeight + 1 && r.left >= 0 && r.right <= innerWidth + 1; })"""


def _views_on_screen(page) -> list[bool]:
    """Whether each view (text, loss, path, lens) lies fully inside the window, no scrolling.

    Waits (60 s) for it, since the charts re-lay out after a rerun sized them; on timeout it
    returns what is seen then, so the assertion names the view that does not fit."""
    try:
        page.wait_for_function(f"(sel) => ({VIEWS_ON_SCREEN_JS})(sel).every(Boolean)", arg=list(VIEWS), timeout=60_000)
    except Exception:  # playwright's TimeoutError: report the state below
        pass
    return page.evaluate(VIEWS_ON_SCREEN_JS, list(VIEWS))


def test_one_screen_and_presentation_mode(app_url, browser):
    url, key, run = app_url
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    _live(page, f"{url}/?run={key}&step=3")
    assert _views_on_screen(page) == [True] * 4
    page.screenshot(path=str(ARTIFACTS / "explore_1440x900.png"))

    page.locator(".st-key-explore_present button").first.click()  # the button ...
    page.wait_for_function("() => location.search.includes('present=1')", timeout=30_000)
    page.locator(".st-key-explore_exit_present button").first.wait_for(timeout=60_000)
    page.wait_for_function("() => document.body.classList.contains('raml-live')", timeout=60_000)
    # the server mirrors the step into the URL after its rerun: wait for it rather than race it
    page.wait_for_function(
        "() => location.search.includes('present=1') && location.search.includes('step=3')", timeout=30_000
    )
    assert not page.locator("[data-testid='stSidebar']").is_visible()
    _wait_not_playing(page)  # no auto-play ...
    assert page.evaluate("() => window.__ramlStepper.step") == 3  # ... and the cursor stayed
    page.keyboard.press("Escape")  # ... and the way out
    page.wait_for_function("() => !location.search.includes('present')", timeout=30_000)
    page.locator(".st-key-explore_present button").first.wait_for(timeout=60_000)
    page.wait_for_function("() => document.body.classList.contains('raml-live')", timeout=60_000)
    page.locator("#raml-step-label").click()
    page.keyboard.press("p")  # ... and the p key
    page.locator(".st-key-explore_exit_present button").first.wait_for(timeout=60_000)
    page.close()

    for width, height in ((1920, 1080), (1280, 720)):
        page = browser.new_page(viewport={"width": width, "height": height})
        _live(page, f"{url}/?run={key}&step=3&present=1")
        page.wait_for_function(  # the window height reached the server and the views were sized for it
            f"() => window.__ramlStepper.data.viewport_h === {height}", timeout=60_000
        )
        page.wait_for_function("() => document.body.classList.contains('raml-live')", timeout=60_000)
        assert _views_on_screen(page) == [True] * 4, (width, height)
        assert page.locator(".st-key-explore_play button").first.inner_text().strip().endswith("Play")
        page.screenshot(path=str(ARTIFACTS / f"present_{width}x{height}.png"))
        page.close()
