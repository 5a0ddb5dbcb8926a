"""Explore on a research-length run in real Chromium (issue 23, "the page at this size"): the
synthetic 30,000-token, 1,500-step run (``tests/long_run.py``, generated once per session)
opens, the text box holds a bounded window of steps, stepping moves the window and every view,
the lens grid and the importance strip are binned with the bin's range on the axis, and a
hover on the (decimated) loss curve names a token with its exact L̂."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backend.plots import figures, fill
from backend.plots import text as text_view
from tests.app_server import CHROMIUM, FIRST_PAGE_MS

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt install chromium)")

MAX_SPANS = text_view.MAX_PAST_STEPS + 1 + text_view.MAX_FUTURE_STEPS
START = 750

# Every view at boundary b, read in the same task as the key press (the stepper is synchronous).
PRESS_AND_READ_JS = """
([key, b]) => {
  if (key) document.body.dispatchEvent(new KeyboardEvent('keydown', {key: key, bubbles: true, cancelable: true}));
  const spans = [...document.querySelectorAll('.raml-traj-inner .raml-step')].map((e) => Number(e.dataset.step));
  const cur = document.getElementById('raml-current');
  const charts = ['explore_loss_chart', 'explore_lens_chart', 'explore_path_chart', 'importance_strip'].map(
    (k) => document.querySelector('.st-key-' + k + ' .js-plotly-plot'));
  const lens = charts[1], xa = lens._fullLayout.xaxis, mark = lens.__ramlMark;
  const m = window.__ramlStepper.data.marks.charts.find((c) => c.chart === 'explore_lens_chart');
  return {
    label: document.getElementById('raml-step-label').textContent.trim(),
    current: cur ? Number(cur.dataset.step) : null,
    spans: spans.length, first: Math.min(...spans), last: Math.max(...spans),
    card: document.getElementById('raml-step-card').textContent.includes('Step ' + b),
    charts: charts.map((gd) => !!gd && gd.dataset.ramlCursor === String(b)),
    lens_bin: Math.abs(parseFloat(mark.style.width) - (xa.l2p(m.x1[b]) - xa.l2p(m.x0[b]))) < 1.5,
    lens_bin_wide: m.x1[b] - m.x0[b],
    more: (document.getElementById('raml-more') || {}).textContent || '',
  };
}
"""

# The element with id ``id`` is the one ``html`` parses to (both serialized by the browser).
SAME_ELEMENT_JS = """
([id, html]) => {
  const t = document.createElement('template');
  t.innerHTML = html;
  return t.content.firstElementChild.outerHTML === document.getElementById(id).outerHTML;
}
"""


def _open(page, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_function(
        """() => document.body.classList.contains('raml-live') && window.__ramlStepper
                 && Math.abs(window.__ramlStepper.data.viewport_h - window.innerHeight) <= 40
                 && document.querySelector('.st-key-importance_strip .js-plotly-plot')""",
        timeout=FIRST_PAGE_MS,
    )


def test_long_run_opens_windows_the_text_every_view_follows_and_hover_is_exact(long_app, browser):
    url, key, run = long_app
    n_steps = len(run.steps)
    assert n_steps == 1500 and run.n_tokens == 30_000
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    _open(page, f"{url}/?run={key}&step={START}")
    page.wait_for_function(f"() => document.body.dataset.ramlCursor === '{START}'", timeout=60_000)

    _hover_reads_the_exact_loss(page, run)  # in the same page: one open of the long run per session
    state = page.evaluate(PRESS_AND_READ_JS, [None, START])
    assert state["label"] == f"Step {START} / {n_steps}" and state["current"] == START
    assert 1 < state["spans"] <= MAX_SPANS  # a window around the cursor, not 1,500 spans
    assert state["first"] < START < state["last"] and state["more"].strip().endswith("more steps")
    assert page.locator("#raml-earlier").inner_text().strip().endswith("earlier steps")
    assert state["card"] and state["charts"] == [True] * 4 and state["lens_bin"] and state["lens_bin_wide"] > 1

    card = page.evaluate("() => window.__ramlStepper.data.marks.fill['raml-step-card']")  # template + values
    for b in range(START + 1, START + 6):  # each press moves the window and every view, in the same task
        state = page.evaluate(PRESS_AND_READ_JS, ["ArrowRight", b])
        assert state["label"] == f"Step {b} / {n_steps}" and state["current"] == b
        assert state["first"] < b < state["last"] and state["spans"] <= MAX_SPANS
        assert state["card"] and state["charts"] == [True] * 4 and state["lens_bin"]
        assert page.evaluate(SAME_ELEMENT_JS, ["raml-step-card", fill.html_at(card, b)])  # the JS join = Python's
    state = page.evaluate(PRESS_AND_READ_JS, ["End", n_steps])
    assert state["current"] == n_steps == state["last"] and state["spans"] <= MAX_SPANS and not state["more"].strip()
    assert state["charts"] == [True] * 4

    # binned grids say so on their axis (the bin's range is in the hover)
    titles = page.evaluate(
        """() => ['explore_lens_chart', 'importance_strip'].map((k) => {
             const fl = document.querySelector('.st-key-' + k + ' .js-plotly-plot')._fullLayout;
             return (fl.xaxis.title && fl.xaxis.title.text || '') + ' | ' + (fl.title && fl.title.text || ''); })"""
    )
    assert all("bins of" in t for t in titles), titles
    _path_arrows_are_thinned_but_every_boundary_hovers_and_clicks(page, n_steps)
    page.close()


def _path_arrows_are_thinned_but_every_boundary_hovers_and_clicks(page, n_steps: int) -> None:
    """The path draws an arrow at every k-th boundary (1,500 arrows cost ~380 ms a draw); a
    boundary without one still hovers with its step and jumps there on a click. Every linked chart
    carries a data revision, so Streamlit's re-mounts of the same figure do not recompute it."""
    b = 753  # not a multiple of the arrow stride (5)
    spot = page.evaluate(
        """(b) => {
             const gd = document.querySelector('.st-key-explore_path_chart .js-plotly-plot');
             const arrows = gd._fullData.find((t) => t.name === 'boundary');
             const m = window.__ramlStepper.data.marks.charts.find((c) => c.kind === 'ring');
             const fl = gd._fullLayout, box = gd.getBoundingClientRect();
             const revs = ['explore_loss_chart', 'explore_lens_chart', 'explore_path_chart', 'importance_strip'].map(
               (k) => document.querySelector('.st-key-' + k + ' .js-plotly-plot')._fullLayout.datarevision);
             return {arrows: arrows.x.length, has_b: arrows.customdata.includes(b), revs: revs,
                     x: box.left + fl.xaxis._offset + fl.xaxis.l2p(m.x[b]),
                     y: box.top + fl.yaxis._offset + fl.yaxis.l2p(m.y[b])};
           }""",
        b,
    )
    assert spot["arrows"] <= figures.MAX_PATH_ARROWS + 1 and not spot["has_b"]
    assert all(isinstance(r, str) and len(r) == 16 for r in spot["revs"]), spot["revs"]
    page.evaluate(
        """() => { const gd = document.querySelector('.st-key-explore_path_chart .js-plotly-plot');
                   gd.on('plotly_hover', (ev) => { window.__pathHover = ev.points.map((p) => [p.data.name, p.customdata]); }); }"""
    )
    page.mouse.move(spot["x"] - 4, spot["y"])
    page.mouse.move(spot["x"], spot["y"], steps=2)
    page.wait_for_function(  # the label shown is that of the boundary plotly reports under the mouse
        """() => window.__pathHover && window.__pathHover.length
                 && [...document.querySelectorAll('.st-key-explore_path_chart .hoverlayer .hovertext')]
                    .some((el) => el.textContent.startsWith('step ' + window.__pathHover[0][1] + ':'))""",
        timeout=30_000,
    )
    name, hovered = page.evaluate("() => window.__pathHover[0]")
    texts = page.locator(".st-key-explore_path_chart .hoverlayer .hovertext").all_text_contents()
    assert any(f"step {hovered}:" in t and "L̂ = " in t for t in texts), texts
    assert _pixels_from(page, hovered, spot) <= 4, (name, hovered)  # neighbours of b share its pixels
    assert name in ("path", "boundary")
    line = page.evaluate(  # the line hovers every boundary, those without an arrow too
        """() => { const t = document.querySelector('.st-key-explore_path_chart .js-plotly-plot')._fullData
                     .find((t) => t.name === 'path');
                   return [t.hoverinfo, t.customdata.length]; }"""
    )
    assert line[0] != "skip" and line[1] == n_steps + 1, line
    page.mouse.click(spot["x"], spot["y"])  # jumps to a boundary plotly reports under the mouse
    # (the click's point need not be the last hover's: boundaries 1-2 px apart share the spot, and
    # the arrow and the line under it are two traces; a CI run waited for the hover's in vain)
    page.wait_for_function(f"() => document.body.dataset.ramlCursor !== '{n_steps}'", timeout=30_000)
    clicked = int(page.evaluate("() => document.body.dataset.ramlCursor"))
    assert clicked != n_steps and page.locator("#raml-step-label").inner_text().strip() == f"Step {clicked} / {n_steps}"
    assert _pixels_from(page, clicked, spot) <= 4  # the path's boundary under the mouse


def _pixels_from(page, b: int, spot: dict) -> float:
    """How far (px) boundary ``b`` of the path chart lies from the mouse at ``spot``."""
    return page.evaluate(
        """([b, x, y]) => { const gd = document.querySelector('.st-key-explore_path_chart .js-plotly-plot');
             const m = window.__ramlStepper.data.marks.charts.find((c) => c.kind === 'ring');
             const fl = gd._fullLayout, box = gd.getBoundingClientRect();
             return Math.hypot(box.left + fl.xaxis._offset + fl.xaxis.l2p(m.x[b]) - x,
                               box.top + fl.yaxis._offset + fl.yaxis.l2p(m.y[b]) - y); }""",
        [b, spot["x"], spot["y"]],
    )


def _hover_reads_the_exact_loss(page, run) -> None:
    """A hover on the decimated loss curve, on the drawn point of the cursor's cut, names that
    token with its exact L̂ (every drawn point is a real cut point)."""
    cut = int(run.steps["end"].iloc[START - 1])  # the cursor's cut point: kept exactly in the drawn curve
    spot = page.evaluate(
        """(cut) => {
             const gd = document.querySelector('.st-key-explore_loss_chart .js-plotly-plot');
             const t = gd._fullData[0], i = t.customdata.findIndex((c) => Number(c[0]) === cut);
             const fl = gd._fullLayout, box = gd.getBoundingClientRect();
             return {drawn: t.x.length, meta: fl.meta, i: i,
                     x: box.left + fl.xaxis._offset + fl.xaxis.l2p(t.x[i]),
                     y: box.top + fl.yaxis._offset + fl.yaxis.l2p(t.y[i])};
           }""",
        cut,
    )
    assert spot["i"] >= 0 and spot["drawn"] < (run.n_tokens + 1) // 3  # decimated for drawing
    assert spot["meta"]["decimated"]["points"] == run.n_tokens + 1
    page.mouse.move(spot["x"] - 6, spot["y"])
    page.mouse.move(spot["x"], spot["y"], steps=3)  # onto the drawn point of the cursor's cut
    label = page.locator(".st-key-explore_loss_chart .hoverlayer .hovertext").first
    label.wait_for(timeout=30_000)
    texts = page.locator(".st-key-explore_loss_chart .hoverlayer .hovertext").all_text_contents()
    if not any(re.search(r"cut \d+", t) for t in texts):  # the EMA line lies nearer: hide it, as a user would
        page.locator(".st-key-explore_loss_chart .legend .traces", has_text="EMA").first.click()
        page.mouse.move(spot["x"] - 6, spot["y"])
        page.mouse.move(spot["x"], spot["y"], steps=3)
        page.wait_for_function(
            """() => [...document.querySelectorAll('.st-key-explore_loss_chart .hoverlayer .hovertext')]
                     .some((el) => /cut \\d+/.test(el.textContent))""",
            timeout=30_000,
        )
        texts = page.locator(".st-key-explore_loss_chart .hoverlayer .hovertext").all_text_contents()
    shown = next((m for t in texts if (m := re.search(r"cut (\d+).*L̂ = ([0-9.]+)", t))), None)
    assert shown is not None, texts
    at = int(shown.group(1))
    exact = float(run.tokens.loc[run.tokens["cut"] == at, "loss"].iloc[0])
    assert float(shown.group(2)) == pytest.approx(exact, abs=5e-4 + 1e-9)  # the exact L̂ of that token, as shown
