"""Explore: step through one run; text, loss curve, 2-D path, lens and step card follow one cursor.

The cursor is a step boundary b in 0..S (0 = before any thinking, b = end of step b). It lives
in the URL (``?run=&step=&layer=&space=``); the views that follow it are one ``st.fragment``,
so a step change reruns only them, and everything they draw from is cached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import cursor_sync, data, state, ui
from backend.plots import figures
from backend.plots import text as text_view

CURSOR = "explore_cursor"  # current boundary, 0..S
SLIDER = "explore_slider"
PLAYING = "explore_playing"
LAST_TICK = "explore_last_tick"
RUN_KEY = "explore_run"  # run the cursor belongs to
PATH_CHART = "explore_path_chart"
REDRAW_CHARTS = "explore_redraw_charts"
CURSOR_PAYLOAD = "explore_cursor_payload"  # last cursor positions sent to the browser (tests read it)  # set if the browser cannot move chart cursors in place
ALPHA_OPTIONS = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
SPEEDS = {"slow (2 s)": 2.0, "normal (1 s)": 1.0, "fast (0.5 s)": 0.5}


# ----------------------------------------------------------------------------- callbacks
def _go_to(boundary: int, n_steps: int) -> None:
    b = int(min(max(boundary, 0), n_steps))
    st.session_state[CURSOR] = b
    st.session_state[SLIDER] = b
    ui.set_query_params(step=b)  # the URL is the truth a full rerun starts from


def _step_by(delta: int, n_steps: int) -> None:
    _go_to(st.session_state.get(CURSOR, 0) + delta, n_steps)


def _on_slider(n_steps: int) -> None:
    _go_to(st.session_state[SLIDER], n_steps)


def _on_path_click(n_steps: int) -> None:
    event = st.session_state.get(PATH_CHART)
    points = (
        (event or {}).get("selection", {}).get("points", [])
        if isinstance(event, dict)
        else (event.selection.points if event is not None else [])
    )
    for point in points:
        custom = point.get("customdata")
        if isinstance(custom, (list, tuple)):
            custom = custom[0] if custom else None
        if custom is not None:
            _go_to(int(custom), n_steps)
            return


def _on_run_change() -> None:
    ui.set_query_params(run=st.session_state["explore_run_select"], step=None, layer=None)


def _on_space_change() -> None:
    ui.set_query_params(space=st.session_state["explore_space"], layer=None)


def _on_layer_change() -> None:
    ui.set_query_params(layer=st.session_state["explore_layer"])


# ----------------------------------------------------------------------------- cached figures
# Shared, never mutated figure objects (cache_resource: no copy), so a chart's spec is identical
# on every rerun and the browser never re-mounts it; the fallback path copies before drawing.
@st.cache_resource(show_spinner=False, max_entries=32)
def _loss_base(root: str, key: str, stamp: float, alpha: float, scale: float):
    run = data._load_run(root, key, stamp)
    return figures.loss_descent_figure(
        run.tokens, run.steps, cursor=None, alpha=alpha, scale=scale, height=round(400 * scale)
    )


@st.cache_resource(show_spinner=False, max_entries=32)
def _lens_base(root: str, key: str, stamp: float, value: str, scale: float):
    run = data._load_run(root, key, stamp)
    return figures.lens_heatmap_figure(run.lens, cursor=None, value=value, scale=scale, height=round(380 * scale))


@st.cache_resource(show_spinner=False, max_entries=32)
def _path_base(root: str, key: str, stamp: float, layer: int, space: str, method: str, scale: float):
    run = data._load_run(root, key, stamp)
    proj = data._projection(root, key, stamp, layer, space, method)
    ev = proj["explained_variance"]
    names = ("PC1", "PC2") if method == "pca" else ("UMAP 1", "UMAP 2")
    axis = tuple(f"{n} ({v:.0%} of variance)" for n, v in zip(names, ev)) if ev is not None else names
    fig = figures.path_figure(
        proj["coords"],
        figures.boundary_losses(run.tokens, run.steps),
        cursor=None,
        axis_titles=axis,
        scale=scale,
        height=round(380 * scale),
        step_texts=[""] + run.steps["text"].astype(str).tolist(),
    )
    return fig, proj["coords"], proj["geometry"], proj["trustworthiness"]


# ----------------------------------------------------------------------------- page
def render() -> None:
    ui.guard(_render)


def _render() -> None:
    st.html(ui.BASE_CSS)
    store = data.get_store()
    runs = data.list_runs(store)
    url = state.parse_query(st.query_params.to_dict())
    if url.present:
        st.html(ui.PRESENT_CSS)
    if runs.empty:
        st.title("RaML Explorer")
        st.info(ui.EMPTY_STATE)
        return
    keys = runs["key"].tolist()
    key, warning = state.resolve_run(url.run, keys, data.default_run(runs))
    warnings = url.warnings + ([warning] if warning else [])

    labels = {r.key: _run_label(r) for r in runs.itertuples()}
    if not url.present:
        with st.sidebar:
            st.session_state["explore_run_select"] = key
            st.selectbox(
                "Run",
                keys,
                format_func=lambda k: labels.get(k, k),
                key="explore_run_select",
                on_change=_on_run_change,
                help="Runs in the cache, newest first (manage them on the Runs page)",
            )

    run = data.load_run(store, key)
    n_steps = int(len(run.steps))
    if n_steps == 0:
        st.warning("This run has no steps to show.")
        return
    if st.session_state.get(RUN_KEY) != key:  # a new run: the URL's step, else the start
        st.session_state[RUN_KEY] = key
        st.session_state[PLAYING] = bool(url.present)
    step, warning = state.clamp_step(url.step, n_steps)
    warnings += [warning] if warning else []

    space = url.space
    proxy_ok = data.proxy_available()
    layers = data.available_layers(store, key, space) if proxy_ok else []
    if proxy_ok and space == "proxy" and not layers:
        warnings.append("This run stores no proxy layers; showing the hidden-state space.")
        space, layers = "hidden", data.available_layers(store, key, "hidden")
    layer, warning = state.resolve_layer(url.layer, layers, space)
    warnings += [warning] if warning else []
    for w in warnings:
        st.warning(w)
    ui.set_query_params(run=key, step=step, layer=layer, space=space)
    st.session_state[CURSOR] = step
    st.session_state[SLIDER] = step

    n_tokens = int(run.meta["summary"]["n_tokens"])
    alpha_default = figures.default_ema_alpha(n_tokens)
    settings = {"alpha": alpha_default, "lens_value": "nll", "method": "pca", "speed": 1.0}
    if not url.present:
        with st.sidebar:
            st.session_state["explore_space"] = space
            st.radio(
                "Space",
                state.SPACES,
                format_func=lambda s: state.SPACE_LABELS[s],
                key="explore_space",
                on_change=_on_space_change,
                help="Where the 2-D path lives: the implicit MLP weight update ΔW of one layer, or the "
                "residual stream at the probe position",
            )
            if layers:
                st.session_state["explore_layer"] = layer
                st.selectbox("Layer", layers, key="explore_layer", on_change=_on_layer_change)
            settings["method"] = st.radio(
                "2-D projection", ["pca", "umap"], horizontal=True, format_func=str.upper, key="explore_method"
            )
            settings["alpha"] = st.select_slider(
                "EMA smoothing α",
                ALPHA_OPTIONS,
                value=alpha_default,
                key=f"explore_alpha_{key}",
                help="The paper smooths with α = 0.01 over thousands of tokens. "
                f"This trajectory has {n_tokens} tokens, so the default here is {alpha_default:g}"
                + (" (short runs: a larger α lets the smoothed curve move)." if n_tokens < 300 else "."),
            )
            if n_tokens < figures.SHORT_RUN_TOKENS:
                st.caption(f"Short run ({n_tokens} tokens < 300): EMA α defaults to 0.05 instead of the paper's 0.01.")
            settings["lens_value"] = st.radio(
                "Lens colour",
                ["nll", "p_answer"],
                horizontal=True,
                format_func={"nll": "answer NLL", "p_answer": "p(answer)"}.get,
                key="explore_lens_value",
            )
            speed = st.selectbox("Play speed", list(SPEEDS), index=1, key="explore_speed")
            settings["speed"] = SPEEDS[speed]
            _export_controls(run)
    _header(run, url.present)
    interval = settings["speed"] if st.session_state.get(PLAYING) else None
    scale = 1.3 if url.present else 1.0
    view = View(
        store=store,
        run=run,
        key=key,
        n_steps=n_steps,
        layer=layer,
        space=space,
        settings=settings,
        scale=scale,
        present=url.present,
        proxy_ok=proxy_ok,
    )

    # Layout: the fragment writes the controls, text and step card; the charts are drawn here,
    # once per full rerun, and the fragment only moves their cursor marks (app/cursor_sync.py).
    view.controls = st.container()
    view.left1, view.right1 = st.columns([5, 7], gap="medium")
    view.left2, view.right2 = st.columns([5, 7], gap="medium")
    redraw = bool(st.session_state.get(REDRAW_CHARTS))  # fallback: charts inside the fragment
    if not redraw:
        _draw_charts(view, None)  # no cursor in the figures: the browser draws it (cursor_sync)

    @st.fragment(run_every=interval)
    def cursor_views() -> None:
        _cursor_views(view, redraw)

    cursor_views()
    if not url.present:  # issue 13: importance strip and branches (app/panels/), below the linked views
        from app.panels import branches, importance

        importance.render(store, run, st.session_state.get(CURSOR, step), lambda b: _go_to(b, n_steps))
        branches.render(store, run, st.session_state.get(CURSOR, step))


@dataclass
class View:
    """Everything the cursor fragment needs from the full run (fixed until the next full rerun)."""

    store: object
    run: object
    key: str
    n_steps: int
    layer: int | None
    space: str
    settings: dict
    scale: float
    present: bool
    proxy_ok: bool
    controls: object = None
    left1: object = None
    right1: object = None
    left2: object = None
    right2: object = None
    path_coords: np.ndarray | None = None
    geometry: pd.DataFrame | None = None


def _run_label(row) -> str:
    q = str(row.question).replace("\n", " ")
    return f"{q[:48]}{'…' if len(q) > 48 else ''} · {row.model} · {row.n_steps} steps · {row.key[:8]}"


def _header(run, present: bool) -> None:
    meta = run.meta
    q = meta["question"].strip()
    title = q if len(q) <= 160 else q[:160] + "…"
    st.markdown(f"#### {_md_escape(title)}")
    predicted = meta.get("predicted_answer")
    source = "reference" if meta.get("answer_source") == "reference" else "model's own (no reference given)"
    summary = meta["summary"]
    st.html(
        f'<div style="color:#475569">answer <b>{_html(meta["answer"])}</b> ({source}) · predicted '
        f"<b>{_html(predicted) if predicted else '—'}</b> {ui.correctness_badge(meta.get('correct'))} · "
        f"{_html(meta['model']['name'])} · {summary['n_tokens']} tokens · {summary['n_steps']} steps "
        f"({_html(meta.get('segmentation', ''))}) · L̂ {summary['initial_loss']:.2f} → {summary['final_loss']:.2f} nats</div>"
    )
    if not present and len(q) > 160:
        with st.expander("Full question"):
            st.text(q)
    for w in meta.get("warnings", []) or []:
        st.caption(f"⚠ {w}")


def _html(value) -> str:
    import html

    return html.escape(str(value))


def _md_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\`*_{}[]()#+-.!|<>$~" else c for c in text)


def _export_controls(run) -> None:
    from backend.plots import html_export as export

    st.divider()
    st.markdown("**Export**")
    st.download_button(
        "Interactive HTML (works offline)",
        data=lambda: export.build_export_html(run),
        file_name=f"raml-{run.key[:12]}.html",
        mime="text/html",
        key="explore_export_html",
        help="One self-contained file: loss chart, path and text with a step slider (plotly bundled).",
    )
    st.caption("PNG: use the camera icon at the top right of any chart.")


def _cursor_views(view: View, redraw: bool) -> None:
    if st.session_state.get(RUN_KEY) != view.key:
        return  # the run changed under this fragment; the full rerun redraws it
    n_steps = view.n_steps
    playing = bool(st.session_state.get(PLAYING))
    if playing:
        now = time.monotonic()
        if now - st.session_state.get(LAST_TICK, 0.0) >= view.settings["speed"] * 0.8:
            st.session_state[LAST_TICK] = now
            if st.session_state.get(CURSOR, 0) >= n_steps:
                st.session_state[PLAYING] = False
                st.rerun(scope="app")
            _step_by(1, n_steps)
    cursor = int(min(max(st.session_state.get(CURSOR, 0), 0), n_steps))
    st.session_state[CURSOR] = cursor
    if SLIDER not in st.session_state or st.session_state[SLIDER] != cursor:
        st.session_state[SLIDER] = cursor
    ui.set_query_params(step=cursor)

    # -- cursor controls: prev / next (arrow keys) / play, the step label and a slider
    with view.controls:
        c_buttons, c_label, c_slider = st.columns([4.8, 1.9, 5.3], gap="small", vertical_alignment="center")
        with c_buttons.container(horizontal=True, vertical_alignment="center", gap="small", wrap=False):
            st.button(
                "◀ Prev",
                key="explore_prev",
                on_click=_step_by,
                args=(-1, n_steps),
                shortcut="Left",
                disabled=cursor <= 0,
                help="Previous step (← key)",
            )
            st.button(
                "Next ▶",
                key="explore_next",
                on_click=_step_by,
                args=(1, n_steps),
                shortcut="Right",
                disabled=cursor >= n_steps,
                help="Next step (→ key)",
            )
            if st.button(
                "Pause" if playing else "Play",
                key="explore_play",
                shortcut="P",
                icon=":material/pause:" if playing else ":material/play_arrow:",
                help="Play / pause the cursor (P key)",
            ):
                st.session_state[PLAYING] = not playing
                st.session_state[LAST_TICK] = time.monotonic()
                if not playing and cursor >= n_steps:
                    _go_to(0, n_steps)
                st.rerun(scope="app")
        c_label.html(f'<div class="raml-step-label" id="raml-step-label">{figures.step_label(cursor, n_steps)}</div>')
        c_slider.slider(
            "Step", 0, n_steps, key=SLIDER, on_change=_on_slider, args=(n_steps,), label_visibility="collapsed"
        )

    if redraw:
        _draw_charts(view, cursor)
    with view.left1:
        st.html(
            text_view.trajectory_html(
                view.run.steps,
                view.run.meta.get("reflections", []),
                cursor,
                height_px=round(300 * view.scale),
                font_rem=0.95 * view.scale,
            )
        )
        _step_card(view.run, cursor, view.geometry)
        if not redraw:
            coords = view.path_coords
            payload = cursor_sync.cursor_payload(
                step=cursor,
                loss_x=_loss_x(view.run, cursor),
                path_xy=None if coords is None else (coords[cursor, 0], coords[cursor, 1]),
                loss_chart="explore_loss_chart",
                lens_chart="explore_lens_chart",
                path_chart=PATH_CHART if coords is not None else None,
            )
            st.session_state[CURSOR_PAYLOAD] = payload
            result = cursor_sync.sync_cursor(payload, key="explore_cursor_sync")
            if result is not None and getattr(result, "ok", True) is False:
                st.session_state[REDRAW_CHARTS] = True  # no plotly.js handle: redraw per step instead
                st.rerun(scope="app")


def _loss_x(run, cursor: int) -> float:
    """Progress (x of the loss chart) of boundary ``cursor``."""
    return float(figures.boundary_cuts(run.steps)[cursor]) / max(int(run.meta["summary"]["n_tokens"]), 1)


def _draw_charts(view: View, cursor: int | None) -> None:
    """Loss chart, 2-D path and lens heatmap; with their cursor marks at ``cursor`` unless None."""
    root, stamp, key, run = str(view.store.root), data.run_stamp(view.store, view.key), view.key, view.run
    settings, scale, layer, space = view.settings, view.scale, view.layer, view.space
    with view.right1:
        st.html('<div class="raml-h">Loss descent: L̂ of the answer at every cut point</div>')
        loss_fig = _loss_base(root, key, stamp, float(settings["alpha"]), scale)
        if cursor is not None:
            loss_fig = go.Figure(loss_fig)
            figures.set_loss_cursor(loss_fig, _loss_x(run, cursor))
        st.plotly_chart(loss_fig, key="explore_loss_chart", config=_config("loss"))
    with view.left2:
        st.html(
            f'<div class="raml-h">Path of the step boundaries · {state.SPACE_LABELS[space]}'
            f"{f' · layer {layer}' if layer is not None else ''}</div>"
        )
        if not view.proxy_ok:
            st.info("The 2-D path needs backend.analysis.proxy, which this checkout does not have yet.")
        elif layer is None:
            st.info(f"This run stores no layers for the {space} space.")
        else:
            try:
                path_fig, coords, geometry, trust = _path_base(
                    root, key, stamp, int(layer), space, settings["method"], scale
                )
            except ValueError as exc:  # e.g. UMAP on too few points: say why, keep the rest
                st.warning(str(exc))
            else:
                view.path_coords, view.geometry = coords, geometry
                if cursor is not None:
                    path_fig = go.Figure(path_fig)
                    figures.set_path_cursor(path_fig, coords, cursor)
                    path_fig.data[-1].customdata = [cursor]
                st.plotly_chart(
                    path_fig,
                    key=PATH_CHART,
                    on_select=lambda: _on_path_click(view.n_steps),
                    selection_mode="points",
                    config=_config("path"),
                )
                kind = "MLP ΔW proxy" if space == "proxy" else "hidden state"
                trust_txt = f" · trustworthiness {trust:.2f}" if trust is not None else ""
                st.caption(
                    f"{kind} at layer {layer}, {settings['method'].upper()}{trust_txt}. "
                    + (
                        "Single-layer proxy: exact for this layer's MLP at the probe token. "
                        if space == "proxy"
                        else ""
                    )
                    + "Click a point to jump there."
                )
    with view.right2:
        st.html('<div class="raml-h">Logit lens: what each layer predicts for the answer</div>')
        lens_fig = _lens_base(root, key, stamp, settings["lens_value"], scale)
        if cursor is not None:
            lens_fig = go.Figure(lens_fig)
            figures.set_lens_cursor(lens_fig, cursor, int(run.lens["layer"].max()) + 1)
        st.plotly_chart(lens_fig, key="explore_lens_chart", config=_config("lens"))


def _config(name: str) -> dict:
    cfg = dict(figures.PLOTLY_CONFIG)
    cfg["toImageButtonOptions"] = dict(cfg["toImageButtonOptions"], filename=f"raml-{name}")
    return cfg


def _step_card(run, cursor: int, geometry: pd.DataFrame | None) -> None:
    """Δ L̂ over the step, step size and cosine in the path space, top answer tokens now."""
    st.html(step_card_html(run, cursor, geometry))


def step_card_html(run, cursor: int, geometry: pd.DataFrame | None) -> str:
    steps = run.steps
    loss_now = figures.boundary_losses(run.tokens, steps)[cursor]
    if cursor == 0:
        head, delta = "<b>Before any thinking</b>: the model sees only the question.", None
    else:
        row = steps.iloc[cursor - 1]
        words = str(row.get("reflection_words", "") or "")
        head = f"<b>Step {cursor}</b>" + (
            f' · reflection: <mark class="raml-refl">{_html(words)}</mark>' if words else ""
        )
        delta = float(row["delta_loss"])
    size = cos = None
    if geometry is not None and cursor < len(geometry):
        g = geometry.iloc[cursor]
        size = None if pd.isna(g["step_size"]) else float(g["step_size"])
        cos = None if pd.isna(g["cosine_prev"]) else float(g["cosine_prev"])
    cells = [
        ("L̂ now", f"{loss_now:.3f}", "answer loss at this boundary (nats)"),
        ("ΔL̂ over step", "—" if delta is None else f"{delta:+.3f}", "nats; negative = closer to the answer"),
        ("step size ‖g‖", "—" if size is None else f"{size:.3g}", "distance moved in the path space"),
        ("cos to previous", "—" if cos is None else f"{cos:+.2f}", "+1 momentum, −1 oscillation"),
    ]
    grid = "".join(
        f'<div title="{_html(tip)}"><div class="raml-k">{_html(k)}</div><div class="raml-v">{v}</div></div>'
        for k, v, tip in cells
    )
    lens = run.lens
    last = lens[(lens["boundary"] == cursor) & (lens["layer"] == lens["layer"].max())]
    chips = ""
    if not last.empty:
        toks, probs = last.iloc[0]["top_tokens"], last.iloc[0]["top_probs"]
        chips = "".join(
            f'<span class="raml-chip"><code>{_html(repr(str(t))[1:-1])}</code> {float(p):.2f}</span>'
            for t, p in zip(toks, probs)
        )
        chips = f'<div class="raml-tokens">Top next tokens where the answer starts: {chips}</div>'
    return (
        f'<div class="raml-card" id="raml-step-card"><div>{head}</div><div class="raml-grid">{grid}</div>{chips}</div>'
    )


if __name__ == "__main__":  # executed as a page script by st.navigation
    render()
