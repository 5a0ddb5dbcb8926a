"""Issue 26, "fit to present": every page at 1280x720, 1440x900 and 1920x1080 in real Chromium,
with no text of a chart on another and none cut off.

Per size, one browser page loads Explore (at the start), Explore in presentation mode, Compare,
Dataset (each tab with a chart) and Runs once each, on the session's one app server. On every shot
the boxes of each plotly chart's title, axis titles, tick labels, legend entries, colour bars,
annotations and toolbar are measured (``tests.app_server.CHART_TEXT_BOXES_JS``): two that overlap,
or one outside its chart, fail the test, and so does an Explore chart whose plot keeps less than
40 % of its width or height. The question header must show the whole question, and
at the start the text box its beginning. Shots: tests/artifacts/fit_<page>_<w>x<h>[_2, _3].png (one per
window height the page scrolls through).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app_server import (
    CHART_TEXT_BOXES_JS,
    CHARTS_SETTLED_JS,
    CHROMIUM,
    EXPLORE_LIVE_JS,
    FIRST_PAGE_MS,
    QUESTION_SHOWN_JS,
)

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SIZES = [(1280, 720), (1440, 900), (1920, 1080)]
EXPLORE_CHARTS = ("explore_loss_chart", "explore_path_chart", "explore_lens_chart")
DATASET_TABS = ("Descent", "Reflection", "Length", "Inner loop")

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt install chromium)")


TEXT_AT_START_JS = """() => {
  const box = document.querySelector('.raml-traj'), before = document.getElementById('raml-before');
  if (!box || !before) return {found: false};
  const b = box.getBoundingClientRect(), r = before.getBoundingClientRect();
  return {found: true, scrollTop: box.scrollTop, beforeVisible: r.top >= b.top - 1 && r.bottom <= b.bottom + 1};
}"""


def _settled(page, want: int, timeout: float = 120_000) -> None:
    page.evaluate("() => { window.__fitSig = null; }")
    page.wait_for_function(CHARTS_SETTLED_JS, arg=want, timeout=timeout, polling=100)


SCROLL_MAIN_JS = """(y) => { const m = document.querySelector('[data-testid="stMain"]');
  if (!m) return [0, 1]; if (y !== null) m.scrollTop = y; return [m.scrollHeight, m.clientHeight]; }"""


def _shots(page, shot: str, most: int = 3) -> None:
    """The page as a reader scrolls it (Streamlit scrolls its main block, not the document): one shot
    per window height, at most ``most``: fit_<shot>.png, fit_<shot>_2.png, ..."""
    total, window = page.evaluate(SCROLL_MAIN_JS, None)
    for k in range(max(1, min(most, -(-total // max(window, 1))))):
        page.evaluate(SCROLL_MAIN_JS, k * window)
        page.screenshot(path=str(ARTIFACTS / f"fit_{shot}{'' if k == 0 else f'_{k + 1}'}.png"))
    page.evaluate(SCROLL_MAIN_JS, 0)


def _check(page, shot: str, problems: list[str], want_charts: tuple[str, ...] = ()) -> dict:
    """Measure the charts on the page, save the shots, add what is wrong to ``problems``."""
    found = page.evaluate(CHART_TEXT_BOXES_JS)
    _shots(page, shot)
    problems += [f"{shot}: {p}" for p in found["problems"]]
    for name in want_charts:
        counts = found["counts"].get(name)
        if not counts or counts.get("tick label", 0) < 2:
            problems.append(f"{shot}: chart {name} not measured ({counts})")
    return found["counts"]


# Each chart's plotting area against its figure: a legend or margins that leave the data a sliver
# (the loss chart at 1280x720 once kept 25 of its 201 px for the plot) fail like an overlap.
PLOT_AREA_JS = """(keys) => keys.map((k) => {
  const gd = document.querySelector('.st-key-' + k + ' .js-plotly-plot');
  const fl = gd && gd._fullLayout;
  return fl ? {chart: k, w: fl._size.w, h: fl._size.h, width: fl.width, height: fl.height} : {chart: k};
})"""
MIN_PLOT_SHARE, MIN_PLOT_PX = 0.4, 60


def _plot_areas(page, shot: str, charts: tuple[str, ...], problems: list[str]) -> None:
    for a in page.evaluate(PLOT_AREA_JS, list(charts)):
        if "h" not in a:
            problems.append(f"{shot}: chart {a['chart']} not drawn")
        elif (
            min(a["h"], a["w"]) < MIN_PLOT_PX
            or a["h"] < MIN_PLOT_SHARE * a["height"]
            or a["w"] < MIN_PLOT_SHARE * a["width"]
        ):
            problems.append(
                f"{shot}: chart {a['chart']} keeps {a['w']:.0f}x{a['h']:.0f} px of {a['width']}x{a['height']} for its plot"
            )


def _question(page, shot: str, question: str, problems: list[str]) -> None:
    q = page.evaluate(QUESTION_SHOWN_JS)
    if not q["found"]:
        problems.append(f"{shot}: no question header")
    elif q["clipped"] or q["text"].strip() != question.strip() or "…" in q["text"]:
        problems.append(f"{shot}: the question is not shown whole ({q})")


@pytest.mark.parametrize(("width", "height"), SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_every_page_fits_without_overlapping_text(explore_app, browser, width, height):
    url, key, run = explore_app
    ARTIFACTS.mkdir(exist_ok=True)
    size = f"{width}x{height}"
    problems: list[str] = []
    page = browser.new_page(viewport={"width": width, "height": height})
    try:
        # Explore at the start: the charts, the whole question, the text box from its beginning
        page.goto(f"{url}/?run={key}&step=0", wait_until="domcontentloaded")
        page.wait_for_function(EXPLORE_LIVE_JS, timeout=FIRST_PAGE_MS)
        _settled(page, len(EXPLORE_CHARTS))
        _check(page, f"explore_{size}", problems, EXPLORE_CHARTS)
        _plot_areas(page, f"explore_{size}", EXPLORE_CHARTS, problems)
        _question(page, f"explore_{size}", run.question, problems)
        start = page.evaluate(TEXT_AT_START_JS)
        if not (start["found"] and start["scrollTop"] == 0 and start["beforeVisible"]):
            problems.append(f"explore_{size}: at the start the text box does not show its beginning ({start})")

        # presentation mode, mid-run
        page.goto(f"{url}/?run={key}&step=3&present=1", wait_until="domcontentloaded")
        page.wait_for_function(EXPLORE_LIVE_JS, timeout=FIRST_PAGE_MS)
        _settled(page, len(EXPLORE_CHARTS))
        _check(page, f"present_{size}", problems, EXPLORE_CHARTS)
        _plot_areas(page, f"present_{size}", EXPLORE_CHARTS, problems)
        _question(page, f"present_{size}", run.question, problems)

        page.goto(f"{url}/compare", wait_until="domcontentloaded")
        page.locator(".st-key-compare_path_chart .js-plotly-plot").wait_for(timeout=FIRST_PAGE_MS)
        _settled(page, 2)
        _check(page, f"compare_{size}", problems, ("compare_loss_chart", "compare_path_chart"))
        _question(page, f"compare_{size}", run.question, problems)

        page.goto(f"{url}/dataset", wait_until="domcontentloaded")
        page.locator(".st-key-claims_descent .js-plotly-plot").wait_for(timeout=FIRST_PAGE_MS)
        measured = 0
        for tab in DATASET_TABS:
            page.get_by_role("tab", name=tab, exact=True).click()
            panel = page.locator('[role="tabpanel"]:visible')
            panel.first.wait_for(timeout=60_000)
            want = panel.first.locator(".js-plotly-plot").count()
            _settled(page, want)
            measured += len(_check(page, f"dataset_{tab.lower().replace(' ', '_')}_{size}", problems))
        if measured < 3:
            problems.append(f"dataset_{size}: only {measured} charts measured over the tabs {DATASET_TABS}")

        page.goto(f"{url}/runs", wait_until="domcontentloaded")
        page.get_by_text("1 of 1 runs").wait_for(timeout=FIRST_PAGE_MS)
        page.locator("[data-testid='stDataFrame'] canvas").first.wait_for(timeout=60_000)
        _check(page, f"runs_{size}", problems)

        if (width, height) == (1440, 900):  # the token colours and their key, once
            page.goto(f"{url}/?run={key}&step=2", wait_until="domcontentloaded")
            page.wait_for_function(EXPLORE_LIVE_JS, timeout=FIRST_PAGE_MS)
            page.get_by_text("Colour tokens by ΔL̂").click()
            page.locator("#raml-delta-key").wait_for(timeout=60_000)
            page.locator(".raml-traj .raml-tok").first.wait_for(timeout=60_000)
            page.wait_for_function(EXPLORE_LIVE_JS, timeout=60_000)
            _settled(page, len(EXPLORE_CHARTS))
            _check(page, f"explore_colour_{size}", problems, EXPLORE_CHARTS)
            key_text = page.locator("#raml-delta-key").inner_text()
            if "L̂ fell" not in key_text or "nats" not in key_text:
                problems.append(f"explore_colour_{size}: the colour key says {key_text!r}")
        assert "Traceback" not in page.content()
    finally:
        page.close()
    assert problems == [], "\n".join(problems)
