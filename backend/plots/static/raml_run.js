/* RaML Explorer: one run's linked views, moved by one cursor in the browser.
 *
 * The one script of every exported run page (the one-file export, the static site's run pages)
 * and of the notebook widget (backend/notebook/widget.py appends an anywidget `render` to this
 * text and uses it as the widget's ESM). A classic script: it defines `RamlRun` on the global
 * object and nothing else (`run_page.run_js()` puts static/raml_fill.js's `ramlFillAt` before it);
 * it fetches nothing (pages open from file://).
 *
 *   RamlRun.mount(host, data, opts) -> {go(b), step(), destroy()}
 *     host: the `.raml-run` element of backend/plots/run_page.py's template; every element is
 *           looked up inside it (`data-raml="..."`), so several runs can share one document;
 *     data: the run's view data (run_page.RunView.data): n_steps, labels [B], cursor_x [B],
 *           path [B, 2] | null, card (the step card at every boundary: a fill mark of
 *           backend/plots/fill.py, the markup once and the values per boundary), config, figures {loss, path, lens,
 *           importance} (plotly JSON, null when absent), template (the figures' shared plotly
 *           template, kept once);
 *     opts: keys 'document' (a page) | 'host' (a widget: keys only while it has the focus),
 *           onStep(b, why) called after every move.
 *   RamlRun.page(): a run page's start (reads #raml-data, #step=N from the URL, keeps the URL's
 *           hash in step).
 *
 * Boundary b = 0..S (S steps; b = 0 is before any thinking, step s ends at boundary s), as in
 * docs/architecture.md §3. One move repaints, in one synchronous call: the step label and slider,
 * the text (past / current / future steps), the step card, the loss cursor, the path ring, the
 * lens column and the importance strip's column.
 */
(function (root) {
  'use strict';

  function part(host, name) { return host.querySelector('[data-raml="' + name + '"]'); }

  function named(items, name) {
    for (let i = (items || []).length - 1; i >= 0; i--) if (items[i] && items[i].name === name) return i;
    return -1;
  }

  function nearest(xs, x) {
    let best = 0;
    for (let i = 1; i < xs.length; i++) if (Math.abs(xs[i] - x) < Math.abs(xs[best] - x)) best = i;
    return best;
  }

  function typing(el) {
    if (!el || !el.tagName) return false;
    const tag = el.tagName.toLowerCase();
    return tag === 'input' || tag === 'textarea' || tag === 'select' || el.isContentEditable;
  }

  function mount(host, data, opts) {
    opts = opts || {};
    const Plotly = root.Plotly;
    const charts = {};
    for (const name of ['loss', 'path', 'lens', 'importance']) {
      const el = part(host, name), fig = data.figures && data.figures[name];
      if (el && fig && Plotly) {
        const layout = data.template && !fig.layout.template ? Object.assign({template: data.template}, fig.layout) : fig.layout;
        Plotly.newPlot(el, fig.data, layout, data.config);
        charts[name] = el;
      }
    }
    const label = part(host, 'label'), range = part(host, 'range'), card = part(host, 'card');
    const prev = part(host, 'prev'), next = part(host, 'next');
    const box = host.querySelector('.raml-traj');
    const spans = Array.prototype.slice.call(host.querySelectorAll('.raml-step'));
    let step = -1;

    function moveShape(gd, x0, x1, visible) {
      const i = named(gd.layout && gd.layout.shapes, 'cursor');
      if (i < 0) return;
      const update = {};
      update['shapes[' + i + '].x0'] = x0;
      update['shapes[' + i + '].x1'] = x1;
      update['shapes[' + i + '].visible'] = visible;
      Plotly.relayout(gd, update);
    }

    function paintText(b) {
      let current = null;
      for (const el of spans) {
        const s = Number(el.dataset.step);
        el.classList.remove('past', 'current', 'future', 'hidden');
        el.classList.add(s < b ? 'past' : (s === b ? 'current' : 'future'));
        if (s === b) { current = el; el.id = 'raml-current'; } else if (el.id) el.removeAttribute('id');
      }
      const before = host.querySelector('#raml-before');
      if (before) before.classList.toggle('hidden', b !== 0);
      if (current && box) {  // keep the current step in view inside the text box, not the page
        const r = current.getBoundingClientRect(), o = box.getBoundingClientRect();
        if (r.bottom > o.bottom) box.scrollTop += r.bottom - o.bottom + 8;
        else if (r.top < o.top) box.scrollTop -= o.top - r.top + 8;
      }
    }

    function paint(b) {
      if (label) label.textContent = data.labels[b];
      if (range) range.value = String(b);
      if (prev) prev.disabled = b <= 0;
      if (next) next.disabled = b >= data.n_steps;
      host.dataset.step = String(b);
      paintText(b);
      if (card && data.card) card.innerHTML = ramlFillAt(data.card, b);  // static/raml_fill.js, prepended by run_js()
      if (charts.loss) moveShape(charts.loss, data.cursor_x[b], data.cursor_x[b], true);
      if (charts.path && data.path) {
        const i = named(charts.path.data, 'cursor');
        if (i >= 0) Plotly.restyle(charts.path, {x: [[data.path[b][0]]], y: [[data.path[b][1]]]}, [i]);
      }
      if (charts.lens) moveShape(charts.lens, b - 0.5, b + 0.5, true);
      if (charts.importance) moveShape(charts.importance, b - 0.5, b + 0.5, b > 0);  // column of step b
    }

    function go(b, why) {
      b = Math.round(Number(b));
      if (!isFinite(b)) b = 0;
      b = Math.max(0, Math.min(data.n_steps, b));
      if (b !== step) {
        step = b;
        paint(b);
        if (opts.onStep) opts.onStep(b, why || 'call');
      }
      return b;
    }

    function clicked(name) {
      return function (ev) {
        const p = ev && ev.points && ev.points[0];
        if (!p) return;
        let b = null;
        if (name === 'loss') b = nearest(data.cursor_x, p.x);
        else if (name === 'path') b = Array.isArray(p.customdata) ? p.customdata[0] : p.customdata;
        else b = Math.round(p.x);  // a lens column is boundary b; an importance column is step s = boundary s
        if (b !== null && b !== undefined && isFinite(b)) go(Number(b), 'click');
      };
    }
    for (const name in charts) if (charts[name].on) charts[name].on('plotly_click', clicked(name));

    const onSlider = function () { go(range.value, 'slider'); };
    if (range) { range.max = String(data.n_steps); range.addEventListener('input', onSlider); }
    const onPrev = function () { go(step - 1, 'button'); }, onNext = function () { go(step + 1, 'button'); };
    if (prev) prev.addEventListener('click', onPrev);
    if (next) next.addEventListener('click', onNext);
    const keyTarget = opts.keys === 'host' ? host : document;
    const onKey = function (e) {
      if (e.ctrlKey || e.metaKey || e.altKey || e.target === range || typing(e.target)) return;
      let b = null;
      if (e.key === 'ArrowRight') b = step + 1;
      else if (e.key === 'ArrowLeft') b = step - 1;
      else if (e.key === 'Home') b = 0;
      else if (e.key === 'End') b = data.n_steps;
      if (b === null) return;
      e.preventDefault();
      e.stopPropagation();
      go(b, 'key');
    };
    keyTarget.addEventListener('keydown', onKey);

    function destroy() {
      keyTarget.removeEventListener('keydown', onKey);
      if (range) range.removeEventListener('input', onSlider);
      if (prev) prev.removeEventListener('click', onPrev);
      if (next) next.removeEventListener('click', onNext);
      for (const name in charts) Plotly.purge(charts[name]);
    }

    return {go: go, step: function () { return step; }, destroy: destroy, charts: charts};
  }

  function page() {
    const host = document.querySelector('.raml-run');
    const data = JSON.parse(document.getElementById('raml-data').textContent);
    function asked() {
      const m = /(?:^#|[#&])step=(\d+)/.exec(window.location.hash || '');
      return m ? Number(m[1]) : 0;
    }
    const view = mount(host, data, {
      keys: 'document',
      onStep: function (b) {
        document.body.dataset.step = String(b);
        try { window.history.replaceState(null, '', '#step=' + b); } catch (e) { /* some file:// pages refuse it */ }
      },
    });
    view.go(asked(), 'start');
    window.addEventListener('hashchange', function () { view.go(asked(), 'url'); });  // a link to #step=N
    window.ramlSetStep = function (b) { return view.go(b, 'call'); };
    window.ramlView = view;
    return view;
  }

  root.RamlRun = {mount: mount, page: page};
})(typeof globalThis !== 'undefined' ? globalThis : window);
