"""Explore: step through one run; text, loss curve, 2-D path, lens and step card follow one cursor.

The page is thin: URL -> state (``app/state.py``) -> sidebar -> :class:`ExploreSettings` ->
panels (``app/panels/``). The cursor is a step boundary b in 0..K−1 (0 = before any thinking).
In the browser it is moved by one client-side component (``app/stepper.py``) that got every
panel's marks once; the server only mirrors the step into the URL (``?run=&step=&layer=&space=``).
Without the component (AppTest, or a plotly.js without axis mappings) the Streamlit controls
below step on the server, in a fragment that redraws only the cursor panels.
"""

from __future__ import annotations

import time

import streamlit as st

from app import data, state, stepper, ui
from app.panels import CHART_PANELS, CURSOR_PANELS, header
from app.panels import branches as branches_panel
from app.panels import importance as importance_panel
from app.panels import lens as lens_panel
from app.panels.common import View
from backend.plots import figures

CURSOR = "explore_cursor"  # current boundary, 0..K-1 (the server's copy)
SLIDER = "explore_slider"
PLAYING = "explore_playing"  # server-side play (no browser component)
LAST_TICK = "explore_last_tick"
RUN_KEY = "explore_run"  # run the cursor belongs to
PATH_CHART = "explore_path_chart"
REDRAW_CHARTS = "explore_redraw_charts"  # set if the browser cannot move chart cursors in place
CURSOR_PAYLOAD = "explore_cursor_payload"  # last cursor positions sent to the browser (tests read it)
STEPPER = "explore_stepper"
VIEWPORT = "explore_viewport_h"  # the browser's window height, reported by the stepper
JUMP = "explore_jump"  # counts cursor moves decided on the server; the browser follows a new number
FOLLOW = "explore_follow"  # the browser's step changed while a panel needs the server's copy: rerun the page
ALPHA_OPTIONS = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
SPEEDS = {"slow (2 s)": 2.0, "normal (1 s)": 1.0, "fast (0.5 s)": 0.5}


# ----------------------------------------------------------------------------- callbacks
def _go_to(boundary: int, n_steps: int) -> None:
    """Move the cursor on the server (a callback: before any widget exists, so the slider's state may be set)."""
    b = int(min(max(boundary, 0), n_steps))
    st.session_state[CURSOR] = b
    st.session_state[SLIDER] = b
    st.session_state[JUMP] = int(st.session_state.get(JUMP, 0)) + 1  # the browser's stepper follows
    ui.set_query_params(step=b)  # the URL is the truth a full rerun starts from


def _step_by(delta: int, n_steps: int) -> None:
    _go_to(st.session_state.get(CURSOR, 0) + delta, n_steps)


def _on_slider(n_steps: int) -> None:
    _go_to(st.session_state[SLIDER], n_steps)


def _on_path_click(n_steps: int) -> None:
    """Server-side fallback: a selected path point (its customdata) moves the cursor."""
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


def _on_browser_step(n_steps: int) -> None:
    """The browser moved the cursor: mirror it into the session and the URL."""
    value = getattr(st.session_state.get(STEPPER), "step", None)
    if value is None and isinstance(st.session_state.get(STEPPER), dict):
        value = st.session_state[STEPPER].get("step")
    if value is not None:
        b = int(min(max(int(value), 0), n_steps))
        if b != st.session_state.get(CURSOR) and branches_panel.needs_cursor():
            st.session_state[FOLLOW] = True  # the open branch form shows the step's own text
        st.session_state[CURSOR] = b
        ui.set_query_params(step=b)


def _on_viewport() -> None:
    result = st.session_state.get(STEPPER)
    value = getattr(result, "viewport_h", None)
    if value is None and isinstance(result, dict):
        value = result.get("viewport_h")
    if value:
        st.session_state[VIEWPORT] = int(value)


def _on_run_change() -> None:
    ui.set_query_params(run=st.session_state["explore_run_select"], step=None, layer=None)


def _on_space_change() -> None:
    ui.set_query_params(space=st.session_state["explore_space"], layer=None)


def _on_layer_change() -> None:
    ui.set_query_params(layer=st.session_state["explore_layer"])


def _set_present(on: bool) -> None:
    ui.set_query_params(present="1" if on else None, step=st.session_state.get(CURSOR))
    st.session_state[PLAYING] = False


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
    fallback = None if url.run in keys else data.default_run(runs, store)  # newest healthy run
    key, warning = state.resolve_run(url.run, keys, fallback)
    for w in url.warnings + ([warning] if warning else []):
        st.warning(ui.md(w))  # before the run loads: a damaged run's error must not hide them
    warnings: list[str] = []
    if not url.present:
        labels = {r.key: _run_label(r) for r in runs.itertuples()}
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
    if st.session_state.get(RUN_KEY) != key:  # a new run: the URL's step, else the start; never auto-play
        st.session_state[RUN_KEY] = key
        st.session_state[PLAYING] = False
    step, warning = state.clamp_step(url.step, n_steps)
    warnings += [warning] if warning else []

    space = url.space
    proxy_ok = data.proxy_available()
    layers = data.available_layers(store, key, space) if proxy_ok else []
    if proxy_ok and space in ("proxy", "exact") and not layers:
        what = "no proxy layers" if space == "proxy" else "no exact update yet (compute it below, or `raml exact`)"
        warnings.append(f"This run has {what}; showing the hidden-state space.")
        space, layers = "hidden", data.available_layers(store, key, "hidden")
    fell_back = space != url.space
    layer, warning = state.resolve_layer(None if fell_back else url.layer, layers, space)
    warnings += [warning] if warning else []
    for w in warnings:
        st.warning(w)
    # a fallback keeps the asked-for space in the URL (shown once its data exists), not a borrowed layer
    ui.set_query_params(run=key, step=step, layer=None if fell_back else layer, space=url.space)
    st.session_state[CURSOR] = step
    st.session_state[SLIDER] = step

    settings = _sidebar(run, key, space, layers, layer, n_steps, url.present, url.lens)
    view = View(
        store=store,
        run=run,
        key=key,
        n_steps=n_steps,
        layer=layer,
        space=space,
        settings=settings,
        layout=state.explore_layout(st.session_state.get(VIEWPORT), url.present, len(run.question.strip())),
        present=url.present,
        proxy_ok=proxy_ok,
        cursor=step,
        redraw=bool(st.session_state.get(REDRAW_CHARTS)),
    )
    view.slots["on_path_select"] = lambda: _on_path_click(n_steps)
    header.draw(run, url.present)

    # Layout: controls, then two rows of two views (text + step card | loss, path | lens).
    view.slots["controls"] = st.container()
    view.slots["left1"], view.slots["right1"] = st.columns([5, 7], gap="medium")
    view.slots["left2"], view.slots["right2"] = st.columns([5, 7], gap="medium")
    if not view.redraw:
        for panel in CHART_PANELS:
            with view.slots[panel.SLOT]:
                ui.guard(lambda panel=panel: panel.draw(view))

    interval = settings.speed if st.session_state.get(PLAYING) else None

    @st.fragment(run_every=interval)
    def cursor_views() -> None:
        _cursor_views(view)

    cursor_views()
    if not view.redraw:
        _mount_stepper(view)
    if not url.present:  # issue 13: importance strip and branches (app/panels/), below the linked views
        from app.panels import exact

        importance_panel.render(view, lambda b: _go_to(b, n_steps))
        exact.render(store, run)
        branches_panel.render(view)


def _sidebar(
    run, key: str, space: str, layers: list[int], layer, n_steps: int, present: bool, lens_kind: str = "logit"
) -> state.ExploreSettings:
    n_tokens = int(run.n_tokens)
    alpha_default = figures.default_ema_alpha(n_tokens)
    if present:
        return state.ExploreSettings(alpha=alpha_default, lens_kind=lens_kind)
    methods = state.projection_methods(n_steps + 1)
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
            st.selectbox(
                "Layer",
                layers,
                key="explore_layer",
                on_change=_on_layer_change,
                format_func=lambda layer: state.layer_label(space, layer),
            )
        if st.session_state.get("explore_method") not in methods:
            st.session_state["explore_method"] = "pca"
        method = st.radio(
            "2-D projection",
            methods,
            horizontal=True,
            format_func=str.upper,
            key="explore_method",
            help=None
            if len(methods) > 1
            else f"UMAP needs at least {state.MIN_UMAP_POINTS} boundaries; this run has {n_steps + 1}.",
        )
        alpha = st.select_slider(
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
        lens_value = st.radio(
            "Lens colour",
            ["nll", "p_answer"],
            horizontal=True,
            format_func={"nll": "answer NLL", "p_answer": "p(answer)"}.get,
            key="explore_lens_value",
        )
        lens_kind = lens_panel.lens_switch(lens_kind)
        colour_tokens = st.toggle(
            "Colour tokens by ΔL̂",
            key="explore_colour_tokens",
            help="Tint each token of the text by the change of L̂ it caused (blue = answer more likely).",
        )
        speed = st.selectbox("Play speed", list(SPEEDS), index=1, key="explore_speed")
        if run.partner:  # a thinking pair: this run and the same request in the other condition
            st.page_link(
                "views/compare.py",
                label="Compare thinking vs no thinking",
                icon=":material/compare_arrows:",
                query_params={"focus": key},
                help="Compare with this run and its partner: both curves and the final L̂ side by side",
            )
        _export_controls(run)
    return state.ExploreSettings(
        alpha=float(alpha),
        lens_value=str(lens_value),
        lens_kind=lens_kind,
        method=str(method),
        speed=SPEEDS[speed],
        colour_tokens=bool(colour_tokens),
    )


def _run_label(row) -> str:
    q = str(row.question).replace("\n", " ")
    return f"{q[:48]}{'…' if len(q) > 48 else ''} · {row.model} · {row.n_steps} steps · {row.key[:8]}"


def _export_controls(run) -> None:
    from backend.export import single as export

    st.divider()
    st.markdown("**Export**")
    st.download_button(
        "Interactive HTML (works offline)",
        data=lambda: export.build_export_html(run, store=data.get_store()),
        file_name=f"raml-{run.key[:12]}.html",
        mime="text/html",
        key="explore_export_html",
        help="One self-contained file: text, step card, loss, path, lens (and importance when computed) with one step cursor (plotly bundled).",
    )
    from app.panels.downloads import render_downloads

    render_downloads(run, data.get_store())


def _marks(view: View) -> dict:
    """Every panel's marks for every boundary, merged (``app/stepper.py`` documents the keys)."""
    marks: dict = {"labels": [figures.step_label(b, view.n_steps) for b in range(view.n_steps + 1)], "charts": []}
    below = () if view.present else (importance_panel, branches_panel)  # drawn under the linked views
    for panel in (*CURSOR_PANELS, *CHART_PANELS, *below):
        part = panel.marks(view)
        marks["charts"] += part.pop("charts", [])
        for name, value in part.items():
            if isinstance(value, dict) and isinstance(marks.get(name), dict):
                marks[name].update(value)
            else:
                marks[name] = value
    return marks


def _cursor_views(view: View) -> None:
    """Controls and the cursor panels at the server's cursor (server-side stepping)."""
    if st.session_state.get(RUN_KEY) != view.key:
        return  # the run changed under this fragment; the full rerun redraws it
    n_steps = view.n_steps
    playing = bool(st.session_state.get(PLAYING))
    if playing:
        now = time.monotonic()
        if now - st.session_state.get(LAST_TICK, 0.0) >= view.settings.speed * 0.8:
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
    view.cursor = cursor

    with view.slots["controls"]:
        _controls(view, cursor, playing)
    if view.redraw:
        for panel in CHART_PANELS:
            with view.slots[panel.SLOT]:
                ui.guard(lambda panel=panel: panel.draw(view))
    for panel in CURSOR_PANELS:
        with view.slots[panel.SLOT]:
            ui.guard(lambda panel=panel: panel.draw(view))
    st.session_state[CURSOR_PAYLOAD] = stepper.cursor_marks_at(
        {"charts": [c for p in CHART_PANELS for c in p.marks(view).get("charts", [])]}, cursor
    )


def _controls(view: View, cursor: int, playing: bool) -> None:
    n_steps = view.n_steps
    c_buttons, c_label, c_slider, c_mode = st.columns([4.2, 1.8, 4.6, 1.6], gap="small", vertical_alignment="center")
    with c_buttons.container(horizontal=True, vertical_alignment="center", gap="small", wrap=False):
        st.button(
            "◀ Prev",
            key="explore_prev",
            on_click=_step_by,
            args=(-1, n_steps),
            disabled=cursor <= 0,
            help="Previous step (←)",
        )
        st.button(
            "Next ▶",
            key="explore_next",
            on_click=_step_by,
            args=(1, n_steps),
            disabled=cursor >= n_steps,
            help="Next step (→)",
        )
        if st.button("Pause" if playing else "Play", key="explore_play", help="Play / pause the cursor (Space)"):
            st.session_state[PLAYING] = not playing
            st.session_state[LAST_TICK] = time.monotonic()
            if not playing and cursor >= n_steps:
                _go_to(0, n_steps)
            st.rerun(scope="app")
    c_label.html(f'<div class="raml-step-label" id="raml-step-label">{figures.step_label(cursor, n_steps)}</div>')
    c_slider.slider("Step", 0, n_steps, key=SLIDER, on_change=_on_slider, args=(n_steps,), label_visibility="collapsed")
    with c_mode:
        if view.present:
            if st.button(
                "Exit",
                key="explore_exit_present",
                icon=":material/close_fullscreen:",
                help="Leave presentation mode (Esc)",
            ):
                _set_present(False)
                st.rerun(scope="app")
        elif st.button("Present", key="explore_present", icon=":material/slideshow:", help="Presentation mode (p)"):
            _set_present(True)
            st.rerun(scope="app")


def _mount_stepper(view: View) -> None:
    """The browser-side stepper, in its own fragment: its step reports rerun only this fragment."""
    marks = _marks(view)
    s = view.settings
    signature = f"{view.key}:{view.space}:{view.layer}:{s.method}:{s.alpha}:{s.lens_value}:{s.lens_kind}:{s.colour_tokens}:{view.layout}"
    payload = stepper.stepper_payload(
        signature=signature,
        run_key=view.key,
        start=view.cursor,
        n_steps=view.n_steps,
        marks=marks,
        speed_s=s.speed,
        present=view.present,
        viewport_h=view.layout.viewport_h,
        jump=int(st.session_state.get(JUMP, 0)),
    )

    @st.fragment
    def browser_stepper() -> None:
        result = stepper.mount(
            payload, key=STEPPER, on_step=lambda: _on_browser_step(view.n_steps), on_viewport=_on_viewport
        )
        if st.session_state.pop(FOLLOW, False):
            st.rerun(scope="app")  # a panel drawn on the server shows the step on screen
        if result is not None and getattr(result, "ok", True) is False:
            st.session_state[REDRAW_CHARTS] = True  # no plotly.js axis mapping: draw cursors on the server
            st.rerun(scope="app")
        reported = st.session_state.get(VIEWPORT)
        if (
            reported
            and reported != view.layout.viewport_h
            and state.explore_layout(reported, view.present, len(view.run.question.strip())) != view.layout
        ):
            st.rerun(scope="app")  # size the views for this window

    with st.container(key="explore_stepper_host"):
        browser_stepper()


if __name__ == "__main__":  # executed as a page script by st.navigation
    render()
