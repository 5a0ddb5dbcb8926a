"""Stepping in the browser: one client-side component moves the cursor of every Explore view.

The page draws its views once per full rerun (text box, step card, loss chart, path, lens) and
mounts this component with the run's view data for every boundary (``marks``: the step labels,
each panel's cursor positions, per-boundary HTML). From then on the browser owns the cursor:
Next/Prev, the arrow keys, Home/End, the slider, Play (client-side timer) and clicks on the loss
curve, a path point (the same one twice too) or a lens column change the label, the text, the
step card and the marks over the three charts in one synchronous function, so all of them
change in the same frame. The server is told the step only to keep the URL in sync (debounced,
``on_step_change``), inside a fragment that redraws nothing else.

The Streamlit buttons and slider stay on the page for browsers without the component (and for
AppTest); in the browser the component takes their clicks before Streamlit sees them and puts a
native range input in place of the slider.

Marks (``marks`` payload; a new panel adds its own entries, no JS change needed):

- ``labels`` [B]: text of ``#raml-step-label``;
- ``text``: ``{"chars": [S], "future_chars": int, "html": [S], "window": [B] [lo, hi], "before": str}``:
  the text box holds steps lo..hi of ``window[b]`` (``backend.plots.text.text_window``), rendered
  from each step's ``html``, with notes of the steps left out on either side; so the page holds a
  bounded number of ``.raml-step`` spans however long the run;
- ``fill`` {element id: fill mark}: replaces the element with that id (the step card, the branch
  panel's "acts on step s" line) by its HTML at the boundary, sent once as a template with its
  values per boundary (``backend.plots.fill``; the step card's fixed markup B times was 1.86 MB of
  a long run's payload);
- ``texts`` {CSS selector: [B] text}: the text of every element matching the selector (the
  labels of buttons that act on the step on screen, e.g. "Branch at step s");
- ``charts`` [{chart: key, kind: "vline" | "column" | "ring", x: [B], y?: [B], x0?: [B], x1?: [B]}]:
  marks drawn over a plotly chart with its own axis mapping (``_fullLayout.xaxis.l2p``); a click on
  the chart jumps to the nearest boundary (``vline``), the clicked column (``column``) or point
  (``ring``). A ``column`` mark of a binned grid (a long run) gives each boundary's bin edges
  ``x0``/``x1`` and outlines the whole bin; a click on a bin jumps to its middle.

If a chart exposes no axis mapping (a future plotly.js) the component sets ``ok = false`` and the
page falls back to drawing the cursor into the figures on the server.

The step a button acts on is the step on screen (issue 25): a click on any other control of the
page first sends the browser's step to the server (``sync``), so the click's rerun reads it. A
jump decided on the server (a row of the importance table) comes with a new ``jump`` number,
and the browser moves there.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from backend.plots.figures import CURSOR_COLOR
from backend.plots.fill import FILL_JS

STEPPER_CSS = """
body.raml-live .st-key-explore_slider [data-testid="stSlider"] { display: none !important; }
input.raml-range { width: 100%; accent-color: __COLOR__; margin: 0.55rem 0 0.2rem 0; cursor: pointer; }
"""

STEPPER_JS = r"""
const COLOR = '__COLOR__';
const CSS = `__CSS__`;
function chart(key) { return document.querySelector('.st-key-' + key + ' .js-plotly-plot'); }
function button(key) { return document.querySelector('.st-key-' + key + ' button'); }
function mark(gd, style) {
  let el = gd.__ramlMark;
  const host = gd.querySelector('.svg-container') || gd;
  if (!el || !el.isConnected) {
    el = document.createElement('div');
    el.className = 'raml-cursor-mark';
    el.style.cssText = 'position:absolute;pointer-events:none;z-index:3;box-sizing:border-box;' + style;
    host.appendChild(el);
    gd.__ramlMark = el;
  }
  return el;
}
function axes(gd) {
  const fl = gd._fullLayout;
  if (!fl) return null;
  const xa = fl.xaxis, ya = fl.yaxis;
  if (!xa || !ya || typeof xa.l2p !== 'function' || typeof ya.l2p !== 'function') return null;
  return {xa: xa, ya: ya, fl: fl};
}
function place(el, left, top, width, height, visible) {
  el.style.left = left + 'px'; el.style.top = top + 'px';
  el.style.width = width + 'px'; el.style.height = height + 'px';
  el.style.display = visible ? 'block' : 'none';
}
function inside(a, px) { return px >= a._offset - 1 && px <= a._offset + a._length + 1; }
const painters = {
  vline: function (gd, m, b) {
    const a = axes(gd); if (!a) return false;
    const bottom = a.fl.yaxis2 ? a.fl.yaxis2._offset + a.fl.yaxis2._length : a.ya._offset + a.ya._length;
    const x = a.xa._offset + a.xa.l2p(m.x[b]);
    place(mark(gd, 'border-left:2px solid ' + COLOR + ';'), x - 1, a.ya._offset, 2, bottom - a.ya._offset, inside(a.xa, x));
    return true;
  },
  column: function (gd, m, b) {  // x[b] ± 0.5, or the bin [x0[b], x1[b]] of a binned grid
    const a = axes(gd); if (!a) return false;
    const lo = m.x0 ? m.x0[b] : m.x[b] - 0.5, hi = m.x1 ? m.x1[b] : m.x[b] + 0.5;
    const x0 = a.xa._offset + a.xa.l2p(lo), x1 = a.xa._offset + a.xa.l2p(hi);
    place(mark(gd, 'border:3px solid ' + COLOR + ';'), x0, a.ya._offset, x1 - x0, a.ya._length, inside(a.xa, (x0 + x1) / 2));
    return true;
  },
  ring: function (gd, m, b) {
    const a = axes(gd); if (!a) return false;
    const cx = a.xa._offset + a.xa.l2p(m.x[b]), cy = a.ya._offset + a.ya.l2p(m.y[b]);
    place(mark(gd, 'border:3px solid ' + COLOR + ';border-radius:50%;'), cx - 14, cy - 14, 28, 28,
          inside(a.xa, cx) && inside(a.ya, cy));
    return true;
  },
};
function nearest(xs, x) {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (Math.abs(xs[i] - x) < Math.abs(xs[best] - x)) best = i;
  return best;
}
function hookChart(gd, m) {
  if (gd.__ramlHooked || !gd.on) return;
  gd.__ramlHooked = true;
  const again = function () { const s = window.__ramlStepper; if (s) paintCharts(s, s.step); };
  gd.on('plotly_afterplot', again);  // zoom, pan, resize or a redraw: place the mark again
  gd.on('plotly_relayout', again);
  gd.on('plotly_click', function (ev) {  // a click jumps; the same point twice jumps twice
    const s = window.__ramlStepper, p = ev && ev.points && ev.points[0];
    if (!s || !p) return;
    const mm = (s.data.marks.charts || []).find(function (c) { return chart(c.chart) === gd; }) || m;
    let b = null;
    if (mm.kind === 'ring') b = Array.isArray(p.customdata) ? p.customdata[0] : p.customdata;
    else if (mm.kind === 'column') b = Math.round(p.x);
    else b = nearest(mm.x, p.x);
    if (b !== null && b !== undefined && isFinite(b)) go(Number(b), 'click');
  });
}
function paintCharts(s, b) {
  let pending = false, ok = true;
  for (const m of s.data.marks.charts || []) {
    const gd = chart(m.chart);
    if (!gd || !gd._fullLayout) { pending = true; continue; }
    if (!painters[m.kind](gd, m, b)) { ok = false; continue; }
    gd.dataset.ramlCursor = String(b);
    hookChart(gd, m);
  }
  return {ok: ok, pending: pending};
}
function note(n, what, before) {  // "… 3 more steps" / "… 12 earlier steps" (backend/plots/text.py)
  if (!n) return '';
  const t = '… ' + n + ' ' + what + ' step' + (n === 1 ? '' : 's');
  return before ? t + '\n' : '\n' + t;
}
function paintText(s, b) {  // the window of steps around b (text.window[b]), rendered from text.html
  const t = s.data.marks.text;
  const box = document.querySelector('.raml-traj-inner');
  if (!t || !box || !t.window || !t.html) return;
  const w = t.window[b] || [1, 0], lo = w[0], hi = w[1], S = t.html.length;
  const sig = s.data.sig + ':' + b;
  if (box.dataset.ramlWindow !== sig) {
    const parts = ['<span class="raml-more' + (b === 0 ? '' : ' hidden') + '" id="raml-before"></span>',
                   '<span class="raml-more' + (lo > 1 ? '' : ' hidden') + '" id="raml-earlier"></span>'];
    for (let i = lo; i <= hi; i++) {
      const cls = i < b ? 'past' : (i === b ? 'current' : 'future');
      parts.push('<span class="raml-step ' + cls + '" data-step="' + i + '"' + (i === b ? ' id="raml-current"' : '') + '>' + t.html[i - 1] + '</span>');
    }
    parts.push('<span class="raml-more' + (hi < S ? '' : ' hidden') + '" id="raml-more"></span>');
    box.innerHTML = parts.join('');
    box.querySelector('#raml-before').textContent = t.before || '';
    box.querySelector('#raml-earlier').textContent = note(lo - 1, 'earlier', true);
    box.querySelector('#raml-more').textContent = note(S - hi, 'more', false);
    box.dataset.ramlWindow = sig;
  }
  const current = document.getElementById('raml-current');
  const outer = box.parentElement;  // scroll inside the text box, never the page
  if (!current) { outer.scrollTop = 0; return; }  // the start: the box from its beginning
  const r = current.getBoundingClientRect(), o = outer.getBoundingClientRect();
  if (r.top < o.top || r.bottom > o.bottom) {  // out of view: its end in view, its beginning if it is taller
    outer.scrollTop += (r.top < o.top || r.height > o.height - 16) ? r.top - o.top - 8 : r.bottom - o.bottom + 8;
  }
}
function paintControls(s, b) {
  const n = s.data.n_steps;
  const label = document.getElementById('raml-step-label');
  if (label) label.textContent = s.data.marks.labels[b];
  const prev = button('explore_prev'), next = button('explore_next');
  if (prev) prev.disabled = b <= 0;
  if (next) next.disabled = b >= n;
  if (s.range) s.range.value = String(b);
  const play = button('explore_play');
  const p = play && play.querySelector('p');
  if (p) p.textContent = s.timer ? 'Pause' : 'Play';
}
function htmlMarks(marks, b) {  // {element id: its HTML at boundary b} of the fill marks
  const out = {}, fills = marks.fill || {};
  for (const id in fills) out[id] = ramlFillAt(fills[id], b);
  return out;
}
function paint(s, b) {
  paintControls(s, b);
  paintText(s, b);
  const html = htmlMarks(s.data.marks, b);
  for (const id in html) {
    const el = document.getElementById(id);
    if (el) el.outerHTML = html[id];
  }
  const texts = s.data.marks.texts || {};
  for (const sel in texts) {
    if (texts[sel][b] === undefined) continue;
    for (const el of document.querySelectorAll(sel)) if (el.textContent !== texts[sel][b]) el.textContent = texts[sel][b];
  }
  const r = paintCharts(s, b);
  document.body.dataset.ramlCursor = String(b);
  return r;
}
function paintLate(s, b) {
  // A control a rerun drew after the last paint (a panel it opened: "Branch at step s") comes with
  // the server's step, which can lag the browser's; give it the step on screen. An html mark is
  // replaced only when it says which step it shows (data-step) and that is not the one it should.
  const texts = s.data.marks.texts || {};
  for (const sel in texts) {
    const want = texts[sel][b];
    if (want === undefined) continue;
    for (const el of document.querySelectorAll(sel)) if (el.textContent !== want) el.textContent = want;
  }
  const html = htmlMarks(s.data.marks, b);
  for (const id in html) {
    const el = document.getElementById(id);
    if (!el || el.dataset.step === undefined) continue;
    const t = document.createElement('template');
    t.innerHTML = html[id];
    const want = t.content.firstElementChild;
    if (want && want.dataset.step !== undefined && want.dataset.step !== el.dataset.step) el.outerHTML = html[id];
  }
}
function go(b, why) {
  const s = window.__ramlStepper;
  if (!s) return;
  const t0 = performance.now();
  b = Math.max(0, Math.min(s.data.n_steps, Math.round(b)));
  if (why !== 'play' && s.timer) stop(s);
  s.step = b;
  paint(s, b);
  s.times.push(performance.now() - t0);
  if (s.times.length > 500) s.times.shift();
  clearTimeout(s.syncTimer);  // the server only mirrors the step into the URL: debounced
  s.syncTimer = setTimeout(function () { sync(s); }, 350);
}
function sync(s) {
  clearTimeout(s.syncTimer);
  if (s.sent !== s.step) { s.sent = s.step; s.setStateValue('step', s.step); }
}
function stop(s) { clearInterval(s.timer); s.timer = null; paintControls(s, s.step); }
function togglePlay() {
  const s = window.__ramlStepper;
  if (!s) return;
  if (s.timer) { stop(s); return; }
  if (s.step >= s.data.n_steps) go(0, 'play');
  s.timer = setInterval(function () {
    if (s.step >= s.data.n_steps) { stop(s); sync(s); return; }
    go(s.step + 1, 'play');
  }, s.data.speed_ms);
  paintControls(s, s.step);
}
function typing(el) {
  if (!el || el === document.body || typeof el.closest !== 'function') return false;
  const tag = (el.tagName || '').toLowerCase();
  return tag === 'input' || tag === 'textarea' || tag === 'select' || el.isContentEditable || !!el.closest('[role="listbox"],[role="slider"],[data-baseweb="select"]');
}
function onKey(e) {
  const s = window.__ramlStepper;
  if (!s || !s.live() || e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
  let handled = true;
  if (e.key === 'ArrowRight') go(s.step + 1, 'key');
  else if (e.key === 'ArrowLeft') go(s.step - 1, 'key');
  else if (e.key === 'Home') go(0, 'key');
  else if (e.key === 'End') go(s.data.n_steps, 'key');
  else if (e.key === ' ' || e.key === 'k') togglePlay();
  else if (e.key === 'p' && !s.data.present) { sync(s); const b = button('explore_present'); if (b) b.click(); }
  else if (e.key === 'Escape' && s.data.present) { sync(s); const b = button('explore_exit_present'); if (b) b.click(); }
  else handled = false;
  if (handled) { e.preventDefault(); e.stopPropagation(); }
}
function onClick(e) {
  const s = window.__ramlStepper;
  if (!s || !s.live() || !e.target.closest) return;
  const hit = e.target.closest('.st-key-explore_prev button, .st-key-explore_next button, .st-key-explore_play button, .st-key-explore_present button, .st-key-explore_exit_present button');
  if (!hit) { sync(s); return; }  // any other control acts on the step on screen: the server hears it first
  const host = hit.closest('[class*="st-key-explore_"]');
  if (host.classList.contains('st-key-explore_present') || host.classList.contains('st-key-explore_exit_present')) {
    sync(s);  // the server gets the step before the click reruns the page
    return;
  }
  e.preventDefault(); e.stopPropagation();
  if (host.classList.contains('st-key-explore_prev')) go(s.step - 1, 'button');
  else if (host.classList.contains('st-key-explore_next')) go(s.step + 1, 'button');
  else togglePlay();
}
function mountRange(s) {
  const host = document.querySelector('.st-key-explore_slider');
  if (!host) return;
  let r = host.querySelector('input.raml-range');
  if (!r) {
    r = document.createElement('input');
    r.type = 'range'; r.className = 'raml-range'; r.setAttribute('aria-label', 'Step');
    r.addEventListener('input', function () { go(Number(r.value), 'slider'); });
    host.appendChild(r);
  }
  r.min = '0'; r.max = String(s.data.n_steps); r.step = '1'; r.value = String(s.step);
  s.range = r;
}
export default function (component) {
  const { data, setStateValue } = component;
  if (!data) return;
  if (!document.getElementById('raml-stepper-css')) {
    const st = document.createElement('style');
    st.id = 'raml-stepper-css'; st.textContent = CSS;
    document.head.appendChild(st);
  }
  let s = window.__ramlStepper;
  if (!s || s.data.run !== data.run) {  // a new run: start where the server (the URL) says
    if (s && s.timer) clearInterval(s.timer);
    s = {step: data.start, sent: data.start, times: (s && s.times) || [], timer: null, range: null};
  } else if (data.jump !== s.data.jump) {  // the server moved the cursor (e.g. an importance row)
    if (s.timer) { clearInterval(s.timer); s.timer = null; }
    s.step = Math.min(data.start, data.n_steps);
    s.sent = s.step;
  } else if (s.data.sig !== data.sig) {  // new view settings or sizes: the browser's cursor stays
    s.step = Math.min(s.step, data.n_steps);
    s.sent = data.start;
    if (s.step !== data.start) setTimeout(function () { sync(s); }, 0);
  }
  s.data = data;
  s.setStateValue = setStateValue;
  s.live = function () { return document.body.classList.contains('raml-live'); };
  window.__ramlStepper = s;
  if (!window.__ramlStepperListening) {
    window.__ramlStepperListening = true;
    window.addEventListener('keydown', onKey, true);
    window.addEventListener('click', onClick, true);
  }
  if (data.viewport_h && Math.abs(window.innerHeight - data.viewport_h) > 40) setStateValue('viewport_h', window.innerHeight);
  let tries = 0;
  function attempt() {
    if (window.__ramlStepper !== s) return;
    const r = paintCharts(s, s.step);
    if (!r.ok) { document.body.classList.remove('raml-live'); setStateValue('ok', false); return; }
    if (r.pending && tries++ < 150) { setTimeout(attempt, 30); return; }
    document.body.classList.add('raml-live');
    mountRange(s);
    paint(s, s.step);
  }
  attempt();
  if (!window.__ramlWatch) {  // a chart re-mounted by a rerun (resize, new figure): mark it again
    window.__ramlWatch = setInterval(function () {
      const s = window.__ramlStepper;
      if (!s || !s.live()) return;
      paintLate(s, s.step);
      for (const m of s.data.marks.charts || []) {
        const gd = chart(m.chart);
        if (gd && gd._fullLayout && (gd.dataset.ramlCursor !== String(s.step) || !(gd.__ramlMark && gd.__ramlMark.isConnected))) {
          paintCharts(s, s.step);
          return;
        }
      }
      const host = document.querySelector('.st-key-explore_slider');
      if (host && !host.querySelector('input.raml-range')) mountRange(s);
    }, 200);
  }
}
""".replace("__COLOR__", CURSOR_COLOR).replace("__CSS__", STEPPER_CSS.replace("__COLOR__", CURSOR_COLOR))
STEPPER_JS = FILL_JS + STEPPER_JS  # ramlFillAt: the fill marks' join (backend/plots/static/raml_fill.js)

_stepper = st.components.v2.component("raml_stepper", js=STEPPER_JS)


def stepper_payload(
    *,
    signature: str,
    run_key: str,
    start: int,
    n_steps: int,
    marks: dict,
    speed_s: float,
    present: bool,
    viewport_h: int | None,
    jump: int = 0,
) -> dict:
    """Everything the browser needs to move every view for boundaries 0..``n_steps`` itself."""
    return {
        "sig": signature,
        "run": run_key,
        "start": int(start),
        "n_steps": int(n_steps),
        "marks": marks,
        "speed_ms": round(float(speed_s) * 1000),
        "present": bool(present),
        "viewport_h": viewport_h,
        "jump": int(jump),  # a new number: the server moved the cursor to ``start``
    }


def cursor_marks_at(marks: dict, boundary: int) -> dict:
    """The marks of one boundary (what the server would draw; tests and the fallback read it)."""
    charts = {c["chart"]: c for c in marks.get("charts", [])}
    loss = next((c for c in charts.values() if c["kind"] == "vline"), None)
    ring = next((c for c in charts.values() if c["kind"] == "ring"), None)
    column = next((c for c in charts.values() if c["kind"] == "column"), None)
    return {
        "step": int(boundary),
        "loss_x": None if loss is None else float(loss["x"][boundary]),
        "path_xy": None if ring is None else [float(ring["x"][boundary]), float(ring["y"][boundary])],
        "loss_chart": None if loss is None else loss["chart"],
        "lens_chart": None if column is None else column["chart"],
        "path_chart": None if ring is None else ring["chart"],
    }


def mount(payload: dict, *, key: str, on_step: Callable[[], None], on_viewport: Callable[[], None]):
    """Mount the component; its result carries ``step`` (the browser's cursor), ``viewport_h`` and
    ``ok`` (False if the chart marks cannot be placed)."""
    return _stepper(
        key=key,
        data=payload,
        default={"ok": True},
        on_step_change=on_step,
        on_viewport_h_change=on_viewport,
        on_ok_change=lambda: None,
    )
