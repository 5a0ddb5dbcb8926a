"""One run's page: the view data, the one template and the one script of every exported run view.

The one-file HTML export (``raml export KEY --html``), the static site's run pages (``raml export
--site DIR``) and the notebook widget (``backend.notebook.RunWidget``) all show a run the same
way: the trajectory text with the step card, the loss-descent chart (and the fidelity line when
the exact update is cached), the 2-D path, the lens heatmap and the importance strip (when
importance is cached), all moved by one cursor in the browser (``static/raml_run.js``: the step
slider, Prev/Next, ←/→/Home/End and clicks on the charts).

``build_run_view(run, ...)`` gathers what the browser needs as a ``RunView``: ``data`` (JSON for
the script: labels, cursor positions and step cards for every boundary 0..S, the plotly figures)
and the parts of the template. ``run_body_html`` is the template (one ``.raml-run`` element with
its own CSS: a page's body, a widget's content); ``run_page_html`` wraps it in a document.
Derived data (importance, counterfactual rows, fidelity) is passed in by the caller
(``backend.export.view`` reads it), so this module stays pure: no Streamlit, no torch.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from backend.errors import InputError
from backend.plots import figures, fill, step_card
from backend.plots import importance as importance_plots
from backend.plots import text as text_view

STATIC = Path(__file__).resolve().parent / "static"
RUN_JS_FILE = STATIC / "raml_run.js"
PLOTLYJS_MODES = ("inline", "cdn")

RUN_CSS = (
    """
.raml-run { font-family: Inter, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2937; background: #fff; }
.raml-run:focus { outline: none; }
.raml-run:focus-visible { outline: 2px solid #cbd5e1; }
.raml-run .raml-head { padding: 14px 24px 6px; border-bottom: 1px solid #e2e8f0; }
.raml-run .raml-head h1 { font-size: 1.25rem; margin: 0 0 4px; }
.raml-run .raml-head .raml-meta { color: #475569; font-size: 0.92rem; }
.raml-run .raml-head a { color: #2a3f7a; }
.raml-run .raml-controls { display: flex; align-items: center; gap: 12px; padding: 10px 24px; position: sticky;
  top: 0; background: #fff; z-index: 5; border-bottom: 1px solid #f1f5f9; }
.raml-run .raml-controls button { font-size: 0.95rem; padding: 4px 12px; border: 1px solid #cbd5e1; border-radius: 6px;
  background: #f8fafc; cursor: pointer; }
.raml-run .raml-controls button:disabled { opacity: 0.45; cursor: default; }
.raml-run .raml-controls input[type=range] { flex: 1; accent-color: """
    + figures.CURSOR_COLOR
    + """; }
.raml-run .raml-label { font-weight: 600; color: #2a3f7a; min-width: 14em; }
.raml-run .raml-views { display: grid; grid-template-columns: 5fr 7fr; gap: 12px 20px; padding: 12px 24px; }
.raml-run .raml-wide { grid-column: 1 / -1; }
.raml-run .raml-panel h2 { font-size: 0.95rem; color: #334155; margin: 4px 0; }
.raml-run .raml-note { color: #64748b; font-size: 0.82rem; }
.raml-run .raml-card { margin-top: 8px; }
.raml-run .raml-traj { flex-direction: column; }
@media (max-width: 1000px) { .raml-run .raml-views { grid-template-columns: 1fr; } }
"""
    + step_card.CARD_CSS
)


@lru_cache(maxsize=1)
def run_js() -> str:
    """The script every run view shares: the fill marks' join (``static/raml_fill.js``, the same as
    Explore's stepper) and ``static/raml_run.js``."""
    return fill.FILL_JS + RUN_JS_FILE.read_text(encoding="utf-8")


def plotlyjs_source() -> str:
    """plotly.js as the installed plotly package ships it (minified, about 4.8 MB)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def plotlyjs_cdn_url() -> str:
    """The same plotly.js version on cdn.plot.ly."""
    from plotly.offline import get_plotlyjs_version

    return f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"


def plotlyjs_tag(mode: str = "inline") -> str:
    """``inline``: plotly.js inside the page (4.8 MB, works offline); ``cdn``: a script tag that
    loads the same plotly.js version from cdn.plot.ly (a small file that needs the network)."""
    check_plotlyjs_mode(mode)
    if mode == "inline":
        return f'<script type="text/javascript">{plotlyjs_source()}</script>'
    return f'<script src="{plotlyjs_cdn_url()}" charset="utf-8"></script>'


def check_plotlyjs_mode(mode: str) -> str:
    if mode not in PLOTLYJS_MODES:
        raise InputError(f"unknown --plotlyjs '{mode}': use inline or cdn")
    return mode


def path_data(run, store=None) -> tuple[np.ndarray | None, str, object]:
    """PCA path ``[B, 2]`` of the middle proxy layer (or hidden layer), its caption
    (``kind|x title|y title``) and the step geometry (``step_geometry`` rows [B], or None)."""
    try:
        from backend.analysis.spaces import proxy
    except ImportError:
        return None, "2-D path unavailable (backend.analysis.spaces.proxy missing).", None
    for space in ("proxy", "hidden"):
        layers = proxy.available_layers(run, space)
        if layers:
            layer = layers[len(layers) // 2]
            proj = proxy.project([run], layer, space, method="pca", store=store)
            kind = "MLP ΔW proxy (single layer, exact at the probe token)" if space == "proxy" else "hidden state"
            ev = proj.explained_variance
            axes = (
                tuple(f"PC{i + 1} ({v:.0%} of variance)" for i, v in enumerate(ev))
                if ev is not None
                else ("PC1", "PC2")
            )
            geometry = proxy.step_geometry(proxy.space_vectors(run, layer, space))
            coords = np.asarray(proj.coords[0], dtype=np.float64)
            return coords, f"{kind}, layer {layer}, PCA|{axes[0]}|{axes[1]}", geometry
    return None, "2-D path unavailable: the run stores no layers.", None


@dataclass
class RunView:
    """What a run view needs: ``data`` for the script (JSON-ready) and the template's parts."""

    key: str
    data: dict
    header: dict  # question, answer, answer_source, predicted, verdict, model, n_tokens, n_steps, losses
    text_html: str
    path_caption: str
    fidelity_line: str | None
    importance_note: str | None

    @property
    def n_steps(self) -> int:
        return int(self.data["n_steps"])

    def data_json(self) -> str:
        """``data`` as JSON safe inside a ``<script>`` element."""
        return json.dumps(self.data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


def _fig_json(fig) -> dict | None:
    return None if fig is None else json.loads(fig.to_json())


def _shared_template(figs: dict) -> dict | None:
    """The plotly template the figures share, taken out of each (about 10 kB apiece) and kept once:
    the script puts it back before drawing."""
    templates = [f["layout"].get("template") for f in figs.values() if f is not None]
    if not templates or any(t != templates[0] for t in templates):
        return None
    for f in figs.values():
        if f is not None:
            f["layout"].pop("template", None)
    return templates[0]


def importance_figure(rows: dict, texts: list[str]):
    """The importance strip with a column mark named ``cursor`` (moved by the script; hidden at b = 0)."""
    fig = importance_plots.importance_strip(rows, texts)
    fig.add_shape(
        type="rect",
        name="cursor",
        x0=-0.5,
        x1=0.5,
        y0=-0.5,
        y1=len(rows) - 0.5,
        xref="x",
        yref="y",
        line=dict(color=figures.CURSOR_COLOR, width=3),
        fillcolor="rgba(0,0,0,0)",
        visible=False,
    )
    return fig


def build_run_view(
    run,
    *,
    store=None,
    importance: dict | None = None,
    counterfactual: list[dict] | None = None,
    fidelity: dict | None = None,
) -> RunView:
    """The view of ``run`` (a ``backend.store.runs.RunData``); ``importance`` (the stored payload),
    ``counterfactual`` (``backend.pipeline.lineage.counterfactual`` rows) and ``fidelity`` (the exact
    update's fidelity block) add the importance strip and the fidelity line."""
    tokens, steps, lens = run.tokens, run.steps, run.lens
    n_steps = len(steps)
    n_tokens = max(run.n_tokens, 1)
    texts = steps["text"].astype(str).tolist()
    alpha = figures.default_ema_alpha(n_tokens)
    bcuts = figures.boundary_cuts(steps)
    loss_fig = figures.loss_descent_figure(tokens, steps, cursor=0, alpha=alpha, height=400)
    lens_fig = figures.lens_heatmap_figure(lens, cursor=0, height=380)
    coords, caption, geometry = path_data(run, store)
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
            step_texts=[""] + texts,
        )
    rows = importance_plots.strip_rows(n_steps, importance, counterfactual)
    strip = importance_figure(rows, texts) if rows else None
    note = None
    if importance:
        note = f"L̂ at the end {importance['final_loss']:.3f} nats; ablation = L̂ without the step − L̂ with it"
    elif rows:
        note = "resampling: mean final L̂ of branches resampled at the step − of those that kept it"
    data = {
        "key": run.key,
        "n_steps": n_steps,
        "labels": [figures.step_label(b, n_steps) for b in range(n_steps + 1)],
        "cursor_x": (bcuts / n_tokens).tolist(),
        "path": None if coords is None else coords.tolist(),
        "card": step_card.card_fill(run, geometry),  # a fill mark (backend/plots/fill.py): template + values
        "config": dict(figures.PLOTLY_CONFIG, responsive=True),
        "figures": {
            "loss": _fig_json(loss_fig),
            "lens": _fig_json(lens_fig),
            "path": _fig_json(path_fig),
            "importance": _fig_json(strip),
        },
    }
    data["template"] = _shared_template(data["figures"])
    correct = run.correct
    s = run.summary
    header = {
        "question": run.question,
        "answer": run.answer,
        "answer_source": run.answer_source,
        "predicted": str(run.predicted_answer or "—"),
        "verdict": "no reference" if correct is None else ("correct" if correct else "incorrect"),
        "correct": correct,
        "model": run.model_name,
        "n_tokens": int(s.n_tokens),
        "n_steps": int(s.n_steps),
        "initial_loss": float(s.initial_loss),
        "final_loss": float(s.final_loss),
    }
    line = None
    if fidelity:
        from backend.plots.exact import fidelity_line

        line = "Exact update · " + fidelity_line(fidelity)
    return RunView(
        key=run.key,
        data=data,
        header=header,
        text_html=text_view.trajectory_html(steps, run.reflections, 0, future_chars=10**9, height_px=420),
        path_caption=caption,
        fidelity_line=line,
        importance_note=note,
    )


def run_body_html(view: RunView, *, index_href: str | None = None, focusable: bool = False) -> str:
    """The template: one ``.raml-run`` element (its CSS inside) holding the header, the step
    controls and every view; ``index_href`` adds a link back to a site's index; ``focusable``
    makes the element take the keyboard's focus (a widget, whose keys act only while focused)."""
    esc = html.escape
    h = view.header
    back = f'<a href="{esc(index_href)}" class="raml-back">← all runs</a> · ' if index_href else ""
    path_panel = (
        f'<div data-raml="path" id="raml-path"></div><div class="raml-note">{esc(view.path_caption)}</div>'
        if view.data["figures"]["path"] is not None
        else f'<div class="raml-note">{esc(view.path_caption)}</div>'
    )
    fidelity = (
        f'<div class="raml-note" data-raml="fidelity">{esc(view.fidelity_line)}</div>' if view.fidelity_line else ""
    )
    importance = ""
    if view.data["figures"]["importance"] is not None:
        importance = (
            '<div class="raml-panel raml-wide"><h2>Step importance</h2>'
            '<div data-raml="importance" id="raml-importance"></div>'
            f'<div class="raml-note">{esc(view.importance_note or "")}</div></div>'
        )
    n = view.n_steps
    tab = ' tabindex="0"' if focusable else ""
    return f"""<div class="raml-run" data-step="0" data-run="{esc(view.key)}"{tab}>
<style>{RUN_CSS}</style>
<div class="raml-head"><h1>{esc(h["question"])}</h1>
<div class="raml-meta">{back}answer <b>{esc(h["answer"])}</b> ({esc(h["answer_source"])}) · predicted
<b>{esc(h["predicted"])}</b> ({esc(h["verdict"])}) · model {esc(h["model"])} ·
{h["n_tokens"]} tokens · {h["n_steps"]} steps · L̂ {h["initial_loss"]:.3f} → {h["final_loss"]:.3f} nats ·
run {esc(view.key)}</div></div>
<div class="raml-controls"><button data-raml="prev" id="raml-prev" title="previous step (←)">◀ Prev</button>
<button data-raml="next" id="raml-next" title="next step (→)">Next ▶</button>
<span data-raml="label" class="raml-label" id="raml-step-label"></span>
<input type="range" data-raml="range" id="raml-step" min="0" max="{n}" value="0" step="1" aria-label="step"></div>
<div class="raml-views">
<div class="raml-panel"><h2>Trajectory</h2>{view.text_html}<div data-raml="card"></div></div>
<div class="raml-panel"><h2>Loss descent: L̂ of the answer per cut point</h2><div data-raml="loss" id="raml-loss"></div>{fidelity}</div>
<div class="raml-panel"><h2>Path of the step boundaries</h2>{path_panel}</div>
<div class="raml-panel"><h2>Logit lens: answer NLL per layer and step</h2><div data-raml="lens" id="raml-lens"></div></div>
{importance}
</div>
</div>"""


def run_page_html(
    view: RunView,
    *,
    plotly_script: str,
    run_script: str,
    index_href: str | None = None,
) -> str:
    """A whole document for ``view``: ``plotly_script`` and ``run_script`` are the script tags that
    bring plotly.js and ``raml_run.js`` (inline or ``src=``); the data is inline (no fetch, so the
    page opens from ``file://``)."""
    title = f"RaML Explorer · {view.header['question'][:80]}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
{plotly_script}
{run_script}
<style>body {{ margin: 0; background: #fff; }}</style>
</head><body data-step="0">
{run_body_html(view, index_href=index_href)}
<script type="application/json" id="raml-data">{view.data_json()}</script>
<script>RamlRun.page();</script>
</body></html>
"""


def inline_script(source: str) -> str:
    """``source`` as an inline script element (``</script`` inside it escaped)."""
    return "<script>" + source.replace("</script", "<\\/script") + "</script>"
