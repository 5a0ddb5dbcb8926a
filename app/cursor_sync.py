"""Draw the cursor marks over already-drawn charts in the browser, without re-sending them.

Streamlit re-mounts a ``st.plotly_chart`` whenever its figure changes, and even an in-place
``Plotly.relayout`` of three charts costs 100-200 ms on this 2-core machine. The Explore page
therefore draws its charts once per full rerun with no cursor in them, and on every step change
(a fragment rerun) mounts this tiny component with the new cursor position. Its script places
three absolutely positioned marks (the loss chart's vertical line, the lens column outline and
the ring on the 2-D path) using each chart's own axis mapping (``_fullLayout.xaxis.l2p``), and
re-places them when a chart is zoomed, panned or resized. It costs a few milliseconds.

If a chart exposes no axis mapping (a future plotly.js), the component reports ``ok = false``
and the page falls back to drawing the cursor into the figures (slower, but correct).
"""

from __future__ import annotations

import streamlit as st

from backend.plots.figures import CURSOR_COLOR

CURSOR_SYNC_JS = r"""
const COLOR = '__COLOR__';
function chart(key) {
  return document.querySelector('.st-key-' + key + ' .js-plotly-plot');
}
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
function axes(gd, x, y) {
  const fl = gd._fullLayout;
  if (!fl) return null;
  const xa = fl[x || 'xaxis'], ya = fl[y || 'yaxis'];
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
  loss: function (gd, want) {
    const a = axes(gd); if (!a) return false;
    const bottom = a.fl.yaxis2 ? a.fl.yaxis2._offset + a.fl.yaxis2._length : a.ya._offset + a.ya._length;
    const x = a.xa._offset + a.xa.l2p(want.loss_x);
    place(mark(gd, 'border-left:2px solid ' + COLOR + ';'), x - 1, a.ya._offset, 2, bottom - a.ya._offset, inside(a.xa, x));
    return true;
  },
  lens: function (gd, want) {
    const a = axes(gd); if (!a) return false;
    const x0 = a.xa._offset + a.xa.l2p(want.step - 0.5), x1 = a.xa._offset + a.xa.l2p(want.step + 0.5);
    place(mark(gd, 'border:3px solid ' + COLOR + ';'), x0, a.ya._offset, x1 - x0, a.ya._length,
          inside(a.xa, (x0 + x1) / 2));
    return true;
  },
  path: function (gd, want) {
    const a = axes(gd); if (!a) return false;
    const cx = a.xa._offset + a.xa.l2p(want.path_xy[0]), cy = a.ya._offset + a.ya.l2p(want.path_xy[1]);
    place(mark(gd, 'border:3px solid ' + COLOR + ';border-radius:50%;'), cx - 13, cy - 13, 26, 26,
          inside(a.xa, cx) && inside(a.ya, cy));
    return true;
  },
};
function paint(want) {
  if (!want) return {ok: true, pending: false};
  let pending = false, ok = true;
  for (const name of ['loss', 'lens', 'path']) {
    const key = want[name + '_chart'];
    if (!key || (name === 'path' && !want.path_xy)) continue;
    const gd = chart(key);
    if (!gd || !gd._fullLayout) { pending = true; continue; }
    if (!painters[name](gd, want)) { ok = false; continue; }
    gd.dataset.ramlCursor = String(want.step);
    if (!gd.__ramlHooked && gd.on) {  // zoom, pan, resize or a redraw: place the mark again
      gd.__ramlHooked = true;
      const again = function () { paint(window.__ramlCursor); };
      gd.on('plotly_afterplot', again);
      gd.on('plotly_relayout', again);
    }
  }
  return {ok: ok, pending: pending};
}
export default function (component) {
  const { data, setStateValue } = component;
  window.__ramlCursor = data;
  let tries = 0;
  function attempt() {
    const r = paint(window.__ramlCursor);
    if (!r.ok) { setStateValue('ok', false); return; }
    if (r.pending && tries++ < 100) { setTimeout(attempt, 30); return; }  // charts still mounting
    document.body.dataset.ramlCursor = String(window.__ramlCursor.step);
  }
  attempt();
}
""".replace("__COLOR__", CURSOR_COLOR)

_cursor_sync = st.components.v2.component("raml_cursor_sync", js=CURSOR_SYNC_JS)


def cursor_payload(
    *,
    step: int,
    loss_x: float | None,
    path_xy: tuple[float, float] | None,
    loss_chart: str | None,
    lens_chart: str | None,
    path_chart: str | None,
) -> dict:
    """What the browser needs to place the marks (chart keys name the ``st-key-`` containers)."""
    return {
        "step": int(step),
        "loss_x": None if loss_x is None else float(loss_x),
        "path_xy": None if path_xy is None else [float(v) for v in path_xy],
        "loss_chart": loss_chart,
        "lens_chart": lens_chart,
        "path_chart": path_chart,
    }


def sync_cursor(payload: dict, *, key: str):
    """Mount the component; returns its result (``.ok`` is False if the marks cannot be placed)."""
    return _cursor_sync(key=key, data=payload, default={"ok": True}, on_ok_change=lambda: None)
