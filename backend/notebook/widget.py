"""One run's linked views as a Jupyter widget (anywidget; the extra ``notebook``).

The widget is the exported run page in a notebook cell: the same template
(``backend.plots.run_page.run_body_html``) and the same script (``static/raml_run.js``, whose text
plus the ``render`` below is the widget's ESM). The cursor is the synced trait ``step`` (boundary
0..S): stepping in the widget (←/→/Home/End while it has the focus, Prev/Next, the slider, clicks
on a chart) sets ``widget.step`` in Python, and setting ``widget.step`` moves every view.

plotly.js travels with the widget (``_plotlyjs``, inlined once into the page when the page has no
``Plotly`` yet) unless ``plotlyjs="cdn"`` (then the browser loads it from cdn.plot.ly).
"""

from __future__ import annotations

import anywidget
import traitlets

from backend.plots.run_page import check_plotlyjs_mode, plotlyjs_cdn_url, plotlyjs_source, run_body_html, run_js

WIDGET_RENDER = r"""
function ramlEnsurePlotly(model) {
  if (globalThis.Plotly) return Promise.resolve();
  const src = model.get('_plotlyjs'), url = model.get('_plotly_url');
  const define = globalThis.define;
  globalThis.define = undefined;  // plotly.js is UMD: with requirejs on the page it would not set window.Plotly
  const script = document.createElement('script');
  if (src) {
    try { script.textContent = src; document.head.appendChild(script); } finally { globalThis.define = define; }
    return Promise.resolve();
  }
  return new Promise(function (ok, fail) {
    script.src = url; script.charset = 'utf-8';
    script.onload = function () { globalThis.define = define; ok(); };
    script.onerror = function () { globalThis.define = define; fail(new Error('could not load plotly.js from ' + url)); };
    document.head.appendChild(script);
  });
}

export default {
  async render({ model, el }) {
    await ramlEnsurePlotly(model);
    el.innerHTML = model.get('_body');
    const host = el.querySelector('.raml-run');
    const view = globalThis.RamlRun.mount(host, model.get('_data'), {
      keys: 'host',
      onStep: function (b) {
        if (model.get('step') !== b) { model.set('step', b); model.save_changes(); }
      },
    });
    view.go(model.get('step'), 'start');
    const follow = function () { view.go(model.get('step'), 'model'); };
    model.on('change:step', follow);
    return function () { model.off('change:step', follow); view.destroy(); };
  },
};
"""


def widget_esm() -> str:
    """The widget's ES module: the run pages' script, then anywidget's ``render``."""
    return run_js() + "\n" + WIDGET_RENDER


class RunWidget(anywidget.AnyWidget):
    """One run (a ``RunData``) with its linked views; ``step`` is the cursor (boundary 0..S)."""

    _esm = widget_esm()
    _body = traitlets.Unicode("").tag(sync=True)
    _data = traitlets.Dict().tag(sync=True)
    _plotlyjs = traitlets.Unicode("").tag(sync=True)
    _plotly_url = traitlets.Unicode("").tag(sync=True)
    key = traitlets.Unicode("").tag(sync=True)
    n_steps = traitlets.Int(0).tag(sync=True)
    step = traitlets.Int(0).tag(sync=True)

    def __init__(self, run, step: int = 0, *, store=None, plotlyjs: str = "inline", **kwargs):
        from backend.export.view import gather_run_view
        from backend.notebook.api import store_of

        check_plotlyjs_mode(plotlyjs)
        view = gather_run_view(run, store if store is not None else store_of(run))
        super().__init__(
            _body=run_body_html(view, focusable=True),
            _data=view.data,
            _plotlyjs=plotlyjs_source() if plotlyjs == "inline" else "",
            _plotly_url=plotlyjs_cdn_url() if plotlyjs == "cdn" else "",
            key=run.key,
            n_steps=view.n_steps,
            **kwargs,
        )
        self.step = step

    @traitlets.validate("step")
    def _check_step(self, proposal) -> int:
        value = int(proposal["value"])
        if not 0 <= value <= self.n_steps:
            raise traitlets.TraitError(f"step {value} is outside 0..{self.n_steps} (0 = before any thinking)")
        return value
