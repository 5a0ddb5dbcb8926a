"""One run as a single self-contained interactive HTML file (plotly.js inlined, works offline).

The page holds the loss-descent chart, the 2-D path (parameter-proxy space, PCA, middle proxy
layer; hidden-state space if the run stores no proxy layers), the lens heatmap and the
trajectory text, all driven by one step slider (and the arrow keys). No Streamlit here.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from backend.errors import InputError
from backend.plots import figures
from backend.plots import text as text_view
from backend.store import atomic

EXPORT_CSS = """
body { font-family: Inter, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2937; margin: 0; background: #fff; }
header { padding: 14px 24px 6px; border-bottom: 1px solid #e2e8f0; }
header h1 { font-size: 1.25rem; margin: 0 0 4px; }
header .meta { color: #475569; font-size: 0.92rem; }
.controls { display: flex; align-items: center; gap: 12px; padding: 10px 24px; position: sticky; top: 0;
  background: #fff; z-index: 5; border-bottom: 1px solid #f1f5f9; }
.controls button { font-size: 0.95rem; padding: 4px 12px; border: 1px solid #cbd5e1; border-radius: 6px;
  background: #f8fafc; cursor: pointer; }
.controls input[type=range] { flex: 1; }
#raml-step-label { font-weight: 600; color: #2a3f7a; min-width: 14em; }
.grid { display: grid; grid-template-columns: 5fr 7fr; gap: 12px 20px; padding: 12px 24px; }
.panel h2 { font-size: 0.95rem; color: #334155; margin: 4px 0; }
.note { color: #64748b; font-size: 0.82rem; }
@media (max-width: 1000px) { .grid { grid-template-columns: 1fr; } }
"""

EXPORT_JS = """
(function () {
  const D = JSON.parse(document.getElementById('raml-data').textContent);
  const slider = document.getElementById('raml-step');
  const label = document.getElementById('raml-step-label');
  function draw(fig, id) {
    const el = document.getElementById(id);
    if (!el || !fig) return null;
    Plotly.newPlot(el, fig.data, fig.layout, D.config);
    return el;
  }
  const lossEl = draw(D.figures.loss, 'raml-loss');
  const pathEl = draw(D.figures.path, 'raml-path');
  const lensEl = draw(D.figures.lens, 'raml-lens');
  function setStep(b) {
    b = Math.max(0, Math.min(D.n_steps, b | 0));
    slider.value = b;
    label.textContent = D.labels[b];
    document.body.dataset.step = b;
    if (lossEl) {
      const i = lossEl.layout.shapes.length - 1;
      Plotly.relayout(lossEl, {[`shapes[${i}].x0`]: D.cursor_x[b], [`shapes[${i}].x1`]: D.cursor_x[b]});
    }
    if (pathEl && D.path) {
      Plotly.restyle(pathEl, {x: [[D.path[b][0]]], y: [[D.path[b][1]]]}, [pathEl.data.length - 1]);
    }
    if (lensEl) {
      const i = lensEl.layout.shapes.length - 1;
      Plotly.relayout(lensEl, {[`shapes[${i}].x0`]: b - 0.5, [`shapes[${i}].x1`]: b + 0.5});
    }
    let current = null;
    document.querySelectorAll('.raml-step').forEach(function (el) {
      const s = parseInt(el.dataset.step, 10);
      el.classList.remove('past', 'current', 'future');
      el.classList.add(s < b ? 'past' : (s === b ? 'current' : 'future'));
      if (s === b) { current = el; el.id = 'raml-current'; } else if (el.id) { el.removeAttribute('id'); }
    });
    const before = document.querySelector('.raml-more');
    if (before) before.style.display = b === 0 ? '' : 'none';
    if (current) current.scrollIntoView({block: 'nearest'});
  }
  slider.addEventListener('input', function () { setStep(parseInt(slider.value, 10)); });
  document.getElementById('raml-prev').addEventListener('click', function () { setStep(+slider.value - 1); });
  document.getElementById('raml-next').addEventListener('click', function () { setStep(+slider.value + 1); });
  document.addEventListener('keydown', function (e) {
    if (e.target === slider) return;
    if (e.key === 'ArrowRight') setStep(+slider.value + 1);
    if (e.key === 'ArrowLeft') setStep(+slider.value - 1);
  });
  setStep(0);
  window.ramlSetStep = setStep;
})();
"""

# The export shows every step (no truncation): the text box scrolls to the current one.
EXPORT_TEXT_CSS = ".raml-traj { flex-direction: column; }"


def _path_data(run) -> tuple[np.ndarray | None, str]:
    """PCA path [B, 2] of the middle proxy layer (or hidden layer), with its caption."""
    try:
        from backend.analysis.spaces import proxy
    except ImportError:
        return None, "2-D path unavailable (backend.analysis.spaces.proxy missing)."
    for space in ("proxy", "hidden"):
        layers = proxy.available_layers(run, space)
        if layers:
            layer = layers[len(layers) // 2]
            proj = proxy.project([run], layer, space, method="pca")
            kind = "MLP ΔW proxy (single layer, exact at the probe token)" if space == "proxy" else "hidden state"
            ev = proj.explained_variance
            axes = (
                tuple(f"PC{i + 1} ({v:.0%} of variance)" for i, v in enumerate(ev))
                if ev is not None
                else ("PC1", "PC2")
            )
            return np.asarray(proj.coords[0], dtype=np.float64), f"{kind}, layer {layer}, PCA|{axes[0]}|{axes[1]}"
    return None, "2-D path unavailable: the run stores no layers."


PLOTLYJS_MODES = ("inline", "cdn")


def plotlyjs_tag(mode: str = "inline") -> str:
    """``inline``: plotly.js inside the page (4.8 MB, works offline); ``cdn``: a script tag that
    loads the same plotly.js version from cdn.plot.ly (a small file that needs the network)."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    if mode == "inline":
        return f'<script type="text/javascript">{get_plotlyjs()}</script>'
    if mode == "cdn":
        return f'<script src="https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js" charset="utf-8"></script>'
    raise InputError(f"unknown --plotlyjs '{mode}': use inline or cdn")


def build_export_html(run, plotlyjs: str = "inline") -> str:
    """The whole HTML document for ``run`` (a ``backend.store.runs.RunData``); ``plotlyjs`` as
    in ``plotlyjs_tag``."""
    script_tag = plotlyjs_tag(plotlyjs)

    tokens, steps, lens = run.tokens, run.steps, run.lens
    n_steps = len(steps)
    n_tokens = max(run.n_tokens, 1)
    alpha = figures.default_ema_alpha(n_tokens)
    bcuts = figures.boundary_cuts(steps)
    loss_fig = figures.loss_descent_figure(tokens, steps, cursor=0, alpha=alpha, height=400)
    lens_fig = figures.lens_heatmap_figure(lens, cursor=0, height=380)
    coords, caption = _path_data(run)
    path_fig = None
    if coords is not None:
        kind, axis_x, axis_y = caption.split("|")
        caption = kind
        path_fig = figures.path_figure(
            coords,
            figures.boundary_losses(tokens, steps),
            cursor=0,
            axis_titles=(axis_x, axis_y),
            height=380,
            step_texts=[""] + steps["text"].astype(str).tolist(),
        )
    payload = {
        "n_steps": n_steps,
        "labels": [figures.step_label(b, n_steps) for b in range(n_steps + 1)],
        "cursor_x": (bcuts / n_tokens).tolist(),
        "path": None if coords is None else coords.tolist(),
        "config": dict(figures.PLOTLY_CONFIG, responsive=True),
        "figures": {
            "loss": json.loads(loss_fig.to_json()),
            "lens": json.loads(lens_fig.to_json()),
            "path": None if path_fig is None else json.loads(path_fig.to_json()),
        },
    }
    data_json = json.dumps(payload, ensure_ascii=False).replace("</", "<\\/")
    text = text_view.trajectory_html(steps, run.reflections, 0, future_chars=10**9, height_px=420)
    correct = run.correct
    verdict = "no reference" if correct is None else ("correct" if correct else "incorrect")
    s = run.summary
    esc = html.escape
    title = f"RaML Explorer · {run.question[:80]}"
    path_panel = (
        f'<div id="raml-path"></div><div class="note">{esc(caption)}</div>'
        if path_fig is not None
        else f'<div class="note">{esc(caption)}</div>'
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
{script_tag}
<style>{EXPORT_CSS}</style>
</head><body data-step="0">
<header><h1>{esc(run.question)}</h1>
<div class="meta">answer <b>{esc(run.answer)}</b> ({esc(run.answer_source)}) · predicted
<b>{esc(str(run.predicted_answer or "—"))}</b> ({verdict}) · model {esc(run.model_name)} ·
{s.n_tokens} tokens · {s.n_steps} steps · L̂ {s.initial_loss:.3f} → {s.final_loss:.3f} nats ·
run {esc(run.key)}</div></header>
<div class="controls"><button id="raml-prev" title="previous step (←)">◀ Prev</button>
<button id="raml-next" title="next step (→)">Next ▶</button><span id="raml-step-label"></span>
<input type="range" id="raml-step" min="0" max="{n_steps}" value="0" step="1" aria-label="step"></div>
<div class="grid">
<div class="panel"><h2>Trajectory</h2>{text}<style>{EXPORT_TEXT_CSS}</style></div>
<div class="panel"><h2>Loss descent: L̂ of the answer per cut point</h2><div id="raml-loss"></div></div>
<div class="panel"><h2>Path of the step boundaries</h2>{path_panel}</div>
<div class="panel"><h2>Logit lens: answer NLL per layer and step</h2><div id="raml-lens"></div></div>
</div>
<script type="application/json" id="raml-data">{data_json}</script>
<script>{EXPORT_JS}</script>
</body></html>
"""


def export_html(run, path: str | Path, plotlyjs: str = "inline", *, follow_symlinks: bool = False) -> Path:
    """Write ``run`` as one HTML file at ``path`` (atomically, mode 0644) and return the path.

    ``path`` must be a regular file or absent: a directory, device, pipe or socket is refused,
    and a symbolic link is written through (its target replaced) only with ``follow_symlinks``.
    ``plotlyjs``: ``inline`` (works offline) or ``cdn`` (a script tag; small file).
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise InputError(f"export target {path} is a directory; give a file name such as run.html")
    atomic.resolve_target(path, follow_symlinks=follow_symlinks)  # refuse before building the page
    atomic.write_text(path, build_export_html(run, plotlyjs), follow_symlinks=follow_symlinks)
    return path
