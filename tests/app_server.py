"""Helpers to run the real app for browser tests and the UI benchmark: a free port, a
``streamlit run`` subprocess on 127.0.0.1, and Debian's Chromium via playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
# Deadlines, not sleeps: a wait returns as soon as its condition holds. A fresh server's first
# page imports the app cold, and a busy 2-core machine (the suite, other work, CPU burners) can
# take minutes for it.
FIRST_PAGE_MS = 240_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_app(cache_dir: str | Path, port: int | None = None, timeout: float = 90.0):
    """Start ``streamlit run app/main.py`` against ``cache_dir``; yields the base URL."""
    port = port or free_port()
    argv = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "app" / "main.py"),
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    with _server(argv, cache_dir, port, timeout) as url:
        yield url


@contextmanager
def raml_serve(cache_dir: str | Path, *args: str, port: int | None = None, timeout: float = 90.0):
    """Start ``raml serve ARGS`` (``python -m backend serve``) against ``cache_dir``; yields the base URL."""
    port = port or free_port()
    argv = [sys.executable, "-m", "backend", "--cache-dir", str(cache_dir), "serve", "--port", str(port), *args]
    with _server(argv, cache_dir, port, timeout) as url:
        yield url


@contextmanager
def _server(argv: list[str], cache_dir: str | Path, port: int, timeout: float):
    env = dict(os.environ, RAML_CACHE_DIR=str(cache_dir), PYTHONUNBUFFERED="1")
    log_path = Path(cache_dir).parent / f"streamlit-{port}.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start within {timeout:.0f} s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


# In-page probe: is the Explore view fully at boundary `want.step`? The step label, the
# highlighted text, and the cursor marks the browser draws over the loss chart, lens heatmap and
# path chart (app/stepper.py); the loss chart's line must sit at progress `want.x`.
# Explore is live and laid out for this window: the stepper runs, and the server drew the views for
# this height (the stepper reports a height off by more than 40 px, and the page reruns for it).
# Click a control only after this: a click during that rerun can land on a button it replaces.
EXPLORE_LIVE_JS = """() => document.body.classList.contains('raml-live') && window.__ramlStepper
    && Math.abs(window.__ramlStepper.data.viewport_h - window.innerHeight) <= 40"""

VIEW_AT_JS = """
(want) => {
  const label = document.getElementById('raml-step-label');
  if (!label || !label.textContent.startsWith(want.label)) return false;
  const cur = document.getElementById('raml-current');
  if (want.step > 0 ? !(cur && cur.dataset.step === String(want.step)) : cur !== null) return false;
  for (const k of ['explore_loss_chart', 'explore_lens_chart', 'explore_path_chart']) {
    const gd = document.querySelector('.st-key-' + k + ' .js-plotly-plot');
    if (!gd || gd.dataset.ramlCursor !== String(want.step)) return false;
  }
  const loss = document.querySelector('.st-key-explore_loss_chart .js-plotly-plot');
  const mark = loss.querySelector('.raml-cursor-mark');
  const xa = loss._fullLayout.xaxis;
  return !!mark && Math.abs(parseFloat(mark.style.left) - (xa._offset + xa.l2p(want.x) - 1)) < 1.5;
}
"""

# Click "Next" and resolve with the milliseconds until the whole view shows boundary `want`.
TIME_NEXT_JS = """
async (want) => {
  const isAt = %s;
  const t0 = performance.now();
  document.querySelector('.st-key-explore_next button').click();
  return await new Promise((resolve, reject) => {
    const limit = t0 + 20000;
    function check() {
      if (isAt(want)) return resolve(performance.now() - t0);
      if (performance.now() > limit) return reject(new Error('view did not update'));
      requestAnimationFrame(check);
    }
    requestAnimationFrame(check);
  });
}
""" % VIEW_AT_JS.strip()


# ----------------------------------------------------------------------------- fit to present (issue 26)
# Every plotly chart on the page has been drawn and has stopped changing: no Streamlit element is
# about to be replaced, every visible chart has its layout, and the charts' sizes, margins and
# number of texts read the same for 400 ms (a condition polled with a deadline, not a sleep).
CHARTS_SETTLED_JS = """
(want) => {
  if (document.querySelector('[data-stale="true"]')) return false;
  const sig = [];
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const r = gd.getBoundingClientRect();
    if (r.width < 2 || r.height < 2) continue;  // in a hidden tab
    if (!gd._fullLayout || !gd._fullLayout._size || !gd.querySelector('.main-svg')) return false;
    const s = gd._fullLayout._size;
    sig.push([r.width, r.height, s.l, s.r, s.t, s.b, gd.querySelectorAll('text').length].map(Math.round).join(','));
  }
  const now = performance.now(), key = sig.join('|');
  if (window.__fitSig !== key) { window.__fitSig = key; window.__fitSince = now; return false; }
  return sig.length >= want && now - window.__fitSince > 400;
}
"""

# The text of every visible plotly chart that must stay readable: its title (and subtitle), axis
# titles, tick labels, legend entries, colour bars (title and ticks), annotations, and plotly's
# toolbar (the modebar: shown on hover, so its box counts though it is transparent now). Returns
# one line per problem (two boxes that overlap by more than 1 px, or a box outside its chart's
# container) and, per chart, how many boxes of each kind it measured.
CHART_TEXT_BOXES_JS = """
() => {
  const problems = [], counts = {};
  function shown(el, gd) {
    for (let e = el; e && e !== gd; e = e.parentElement) {
      const cs = getComputedStyle(e);
      if (cs.display === 'none' || cs.visibility === 'hidden' || parseFloat(cs.opacity) === 0) return false;
    }
    return true;
  }
  function rect(el) { const r = el.getBoundingClientRect(); return {l: r.left, t: r.top, r: r.right, b: r.bottom}; }
  function fmt(b) { return '[' + [b.l, b.t, b.r - b.l, b.b - b.t].map(Math.round).join(',') + ']'; }
  let n = 0;
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const g = gd.getBoundingClientRect();
    if (g.width < 2 || g.height < 2) continue;
    const keyed = gd.closest('[class*="st-key-"]');
    const m = keyed && keyed.className.match(/st-key-([A-Za-z0-9_-]+)/);
    const name = m ? m[1] : 'chart ' + (n + 1);
    n++;
    const host = (gd.closest('[data-testid="stPlotlyChart"]') || gd).getBoundingClientRect();
    const frame = {l: Math.max(g.left, host.left), t: Math.max(g.top, host.top),
                   r: Math.min(g.right, host.right), b: Math.min(g.bottom, host.bottom)};
    const items = [];
    function add(kind, group, el, always) {
      if (!always && !shown(el, gd)) return;
      const text = (el.textContent || '').trim();
      if (!always && !text) return;
      const b = rect(el);
      if (b.r - b.l < 0.5 || b.b - b.t < 0.5) return;
      items.push({kind: kind, group: group, text: always ? kind : text.slice(0, 40), box: b});
    }
    gd.querySelectorAll('.g-gtitle text').forEach((el) => add('title', 'title', el));
    gd.querySelectorAll('.infolayer > g[class^="g-"][class$="title"]:not(.g-gtitle) text').forEach(
      (el) => add('axis title', el.parentElement.getAttribute('class'), el));
    gd.querySelectorAll('.xaxislayer-above text, .yaxislayer-above text').forEach(
      (el) => add('tick label', el.parentElement.getAttribute('class'), el));
    gd.querySelectorAll('.legend .traces').forEach((el) => add('legend entry', 'legend', el));
    gd.querySelectorAll('.colorbar').forEach((cb, i) => {
      cb.querySelectorAll('.cbtitle text').forEach((el) => add('colour bar title', 'colorbar' + i, el));
      cb.querySelectorAll('text').forEach((el) => { if (!el.closest('.cbtitle')) add('colour bar tick', 'colorbar' + i, el); });
    });
    gd.querySelectorAll('.annotation text').forEach((el) => add('annotation', 'annotation', el));
    const bar = gd.querySelector('.modebar');
    if (bar) add('toolbar', 'toolbar', bar, true);
    counts[name] = {};
    for (const it of items) counts[name][it.kind] = (counts[name][it.kind] || 0) + 1;
    for (const it of items) {
      const b = it.box;
      if (b.l < frame.l - 1 || b.t < frame.t - 1 || b.r > frame.r + 1 || b.b > frame.b + 1)
        problems.push(name + ': ' + it.kind + ' "' + it.text + '" ' + fmt(b) + ' is clipped by its chart ' + fmt(frame));
    }
    for (let i = 0; i < items.length; i++) {
      for (let j = i + 1; j < items.length; j++) {
        const a = items[i], c = items[j];
        if (a.group === 'legend' && c.group === 'legend') continue;  // plotly lays out its own entries
        const w = Math.min(a.box.r, c.box.r) - Math.max(a.box.l, c.box.l);
        const h = Math.min(a.box.b, c.box.b) - Math.max(a.box.t, c.box.t);
        if (w > 1 && h > 1)
          problems.push(name + ': ' + a.kind + ' "' + a.text + '" ' + fmt(a.box) + ' overlaps ' + c.kind + ' "' + c.text + '" ' + fmt(c.box));
      }
    }
  }
  return {problems: problems, counts: counts};
}
"""

# The question header (app/panels/header.py): the whole question, nothing cut or hidden.
QUESTION_SHOWN_JS = """
() => {
  const el = document.getElementById('raml-question');
  if (!el) return {found: false};
  return {found: true, text: el.textContent, clipped: el.scrollHeight > el.clientHeight + 1 || el.scrollWidth > el.clientWidth + 1,
          full: el.getAttribute('title')};
}
"""
