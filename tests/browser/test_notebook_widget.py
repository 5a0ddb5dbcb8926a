"""The notebook widget's front end in real Chromium (issue 24): the widget's ESM (the run pages'
script plus anywidget's ``render``) is imported in a blank page and rendered with a minimal
anywidget model holding the Python object's traits. The views render, stepping with the keyboard
sets ``step`` on the model (and saves it: Python's ``widget.step``), and a ``step`` set from
Python moves every view."""

from __future__ import annotations

import pytest

pytest.importorskip("anywidget")

MODEL_JS = """
async ([esm, traits]) => {
  const handlers = {};
  window.saved = [];
  const model = {
    get: (k) => traits[k],
    set: (k, v) => { traits[k] = v; for (const f of handlers['change:' + k] || []) f(); },
    on: (e, f) => { (handlers[e] = handlers[e] || []).push(f); },
    off: (e, f) => { handlers[e] = (handlers[e] || []).filter((g) => g !== f); },
    save_changes: () => { window.saved.push(traits.step); },
  };
  window.model = model;
  const url = URL.createObjectURL(new Blob([esm], {type: 'text/javascript'}));
  const mod = await import(url);
  const el = document.createElement('div');
  document.body.appendChild(el);
  window.cleanup = await mod.default.render({model, el});
  return typeof window.cleanup;
}
"""


def test_widget_renders_and_syncs_step_both_ways(tiny_run, browser):
    from backend.notebook import RunWidget

    store, key = tiny_run
    run = store.open(key)
    widget = RunWidget(run, step=1, store=store)
    n_steps = widget.n_steps
    assert n_steps == len(run.steps) and widget.key == key
    with pytest.raises(Exception, match="outside 0"):
        widget.step = n_steps + 1
    traits = {name: getattr(widget, name) for name in ("_body", "_data", "_plotlyjs", "_plotly_url", "step")}
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.set_content("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body></body></html>")
        assert page.evaluate(MODEL_JS, [widget._esm, traits]) == "function"
        page.wait_for_function("() => document.querySelectorAll('.raml-run .js-plotly-plot').length >= 3")
        label = page.locator(".raml-run [data-raml=label]")
        assert label.inner_text() == f"Step 1 / {n_steps}"  # the widget opens at widget.step
        assert page.locator(".raml-step.current").get_attribute("data-step") == "1"

        page.locator(".raml-run [data-raml=card]").click()  # the widget takes the focus; keys act inside it
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        assert label.inner_text() == f"Step 3 / {n_steps}"
        assert page.evaluate("window.model.get('step')") == 3 and page.evaluate("window.saved") == [2, 3]

        page.evaluate("window.model.set('step', 4)")  # Python sets widget.step = 4
        assert label.inner_text() == f"Step 4 / {n_steps}"
        assert page.locator(".raml-step.current").get_attribute("data-step") == "4"
        assert "Step 4" in page.locator(".raml-run [data-raml=card]").inner_text()
        marks = page.evaluate(
            """() => { const q = (n) => document.querySelector('.raml-run [data-raml=' + n + ']');
                       const shape = (gd) => gd.layout.shapes.find((s) => s.name === 'cursor').x0;
                       const ring = q('path').data.find((d) => d.name === 'cursor');
                       return {loss: shape(q('loss')), lens: shape(q('lens')), ring: [ring.x[0], ring.y[0]]}; }"""
        )
        data = widget._data
        assert marks["loss"] == pytest.approx(data["cursor_x"][4])
        assert marks["lens"] == 3.5 and marks["ring"] == pytest.approx(data["path"][4])
        assert page.evaluate("window.saved") == [2, 3]  # a step from Python is not sent back

        page.keyboard.press("Home")
        assert page.evaluate("window.model.get('step')") == 0
        page.evaluate("window.cleanup()")  # the view is taken down: keys no longer reach the model
        page.keyboard.press("End")
        assert page.evaluate("window.model.get('step')") == 0
    finally:
        page.close()
    assert not errors, errors
