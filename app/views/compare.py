"""Compare: several runs of one question (sampled trajectories, or models with the same hidden
size) in one fitted basis; their loss curves over normalized progress; which ended correct.
A second tab shows one run's loss landscapes: the proxy-plane surface (single-layer proxy)
and the random-direction landscape of the RaML reference: a button submits a ``surface`` or
``landscape`` job (the page never computes), the tab follows it, and draws the cached result.

State in the URL: ``?q=<question id>&space=&layer=&method=``; ``?focus=KEY`` opens that run's
question with the run and its thinking partner chosen (a no-thinking run and the run of the same
settings with thinking, ``meta.partner``), and any linked pair among the chosen runs gets the
"Thinking vs no thinking" panel: both curves over the tokens read and the final L̂ side by side.
Runs from models of different hidden sizes get loss curves only, with a note saying why there is
no shared space.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app import data, jobs_view, ui  # noqa: E402
from app.exact_view import draw_exact_landscape  # noqa: E402
from app.panels.header import question_html  # noqa: E402
from backend.errors import RamlError
from backend.plots import proxy as figures_proxy
from backend.store.runs import RunData, RunStore  # noqa: E402
from backend.store.schema import CONDITION_NO_THINKING

try:
    from backend.plots.figures import PLOTLY_CONFIG
except ImportError:  # pragma: no cover
    PLOTLY_CONFIG = {"displaylogo": False}

EXPLORE_PAGE = "views/explore.py"
MAX_DEFAULT_RUNS = 8
SPACE_LABELS = {
    "proxy": "parameter-proxy (MLP ΔW)",
    "hidden": "hidden state (residual stream)",
    "exact": "exact all-layer update (layer -1 = all)",
}
METHOD_LABELS = {"pca": "PCA", "umap": "UMAP"}


# ----------------------------------------------------------------------------- pure helpers
def question_id(question: str) -> str:
    """Short stable id of a question text, for the URL."""
    return hashlib.sha256(question.strip().encode()).hexdigest()[:12]


def question_groups(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per question text: qid, question, n_runs, models, n_correct, keys (newest first).

    Sorted by number of runs (most first), then by question."""
    if runs.empty:
        return pd.DataFrame(columns=["qid", "question", "n_runs", "models", "n_correct", "keys"])
    rows = []
    for question, g in runs.groupby(runs["question"].fillna("").str.strip(), sort=False):
        rows.append(
            {
                "qid": question_id(question),
                "question": question,
                "n_runs": len(g),
                "models": ", ".join(sorted(g["model"].astype(str).unique())),
                "n_correct": int((g["correct"].fillna(-1) == 1).sum()),
                "keys": g["key"].astype(str).tolist(),
            }
        )
    return pd.DataFrame(rows).sort_values(["n_runs", "question"], ascending=[False, True], ignore_index=True)


def shared_space_problem(runs: list[RunData]) -> str | None:
    """Why these runs cannot share one basis (different hidden sizes), or None if they can."""
    sizes = {r.d_model or -1 for r in runs}
    if len(sizes) > 1:
        per_model = sorted({(r.model_name, r.d_model or -1) for r in runs})
        listed = ", ".join(f"{name}: {d}" for name, d in per_model)
        return (
            f"These runs come from models with different hidden sizes ({listed}). Their hidden states and "
            "MLP pre-activations live in spaces of different dimension, so no shared basis exists: "
            "showing loss curves only."
        )
    return None


def common_layers(runs: list[RunData], space: str) -> list[int]:
    """Layers every run stores for ``space``."""
    from backend.analysis.spaces import proxy

    layers = None
    for r in runs:
        have = set(proxy.available_layers(r, space))
        layers = have if layers is None else layers & have
    return sorted(layers or [])


def condition_label(condition) -> str:
    """How a run's thinking condition is named on the page."""
    return "no thinking" if condition == CONDITION_NO_THINKING else "thinking"


def linked_pairs(runs: list[RunData]) -> list[tuple[RunData, RunData]]:
    """(thinking run, no-thinking run) for every linked pair among ``runs``, in their order."""
    by_key = {r.key: r for r in runs}
    pairs = []
    for r in runs:
        partner = by_key.get(r.partner or "")
        if r.condition == CONDITION_NO_THINKING and partner is not None and partner.condition != r.condition:
            pairs.append((partner, r))
    return pairs


def pair_table(thinking: RunData, no_thinking: RunData) -> pd.DataFrame:
    """The two runs of a pair side by side: condition, final L̂, start L̂, tokens, answer, key."""
    rows = []
    for r in (thinking, no_thinking):
        s = r.summary
        rows.append(
            {
                "condition": condition_label(r.condition),
                "L̂ end": s.final_loss,
                "L̂ start": s.initial_loss,
                "tokens": s.n_tokens,
                "ended": figures_proxy.CORRECT_TEXT[figures_proxy.correctness(r.correct)],
                "model said": r.predicted_answer or "",
                "key": r.key,
            }
        )
    return pd.DataFrame(rows)


def curve_of(run: RunData, label: str) -> figures_proxy.CompareCurve:
    t = run.tokens
    return figures_proxy.CompareCurve(
        key=run.key,
        label=label,
        progress=t["progress"].to_numpy(np.float64),
        loss=t["loss"].to_numpy(np.float64),
        after_answer=t["after_answer_seen"].to_numpy(bool),
        correct=figures_proxy.correctness(run.correct),
    )


def boundary_loss(run: RunData) -> np.ndarray:
    """L̂ at every boundary [S+1] (0 = no trajectory)."""
    loss_at = dict(zip(run.tokens["cut"].astype(int), run.tokens["loss"].astype(float)))
    ends = [0] + run.steps["end"].astype(int).tolist()
    return np.array([loss_at.get(c, np.nan) for c in ends])


def _num(value) -> float:
    return np.nan if value is None else float(value)


def summary_table(runs: list[RunData], labels: list[str]) -> pd.DataFrame:
    rows = []
    for r, label in zip(runs, labels):
        s = r.summary
        ok = figures_proxy.correctness(r.correct)
        rows.append(
            {
                "run": label,
                "model": r.model_name,
                "ended": figures_proxy.CORRECT_TEXT[ok],
                "model said": r.predicted_answer or "",
                "tokens": s.n_tokens,
                "steps": s.n_steps,
                "L̂ start": s.initial_loss,
                "L̂ end": s.final_loss,
                "ΔL̂": _num(s.final_loss) - _num(s.initial_loss),
                "key": r.key,
            }
        )
    return pd.DataFrame(rows)


def geometry_table(runs: list[RunData], labels: list[str], layer: int, space: str) -> pd.DataFrame:
    """Per run: path length, net displacement, straightness and mean cosine between steps."""
    from backend.analysis.spaces import proxy

    rows = []
    for r, label in zip(runs, labels):
        g = proxy.step_geometry(proxy.space_vectors(r, layer, space))
        rows.append(
            {
                "run": label,
                "path length": float(g["path_length"].iloc[-1]),
                "displacement": float(g["displacement"].iloc[-1]),
                "straightness": float(g["straightness"].iloc[-1]),
                "mean cos(step, previous)": float(np.nanmean(g["cosine_prev"]))
                if g["cosine_prev"].notna().any()
                else np.nan,
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- cached loaders
@st.cache_data(show_spinner="Fitting the shared basis…", max_entries=32)
def _shared_projection(
    root: str, keys: tuple[str, ...], stamps: tuple[float, ...], layer: int, space: str, method: str
) -> dict:
    from backend.analysis.spaces import proxy

    store = RunStore(root)
    runs = [store.open(k) for k in keys]
    p = proxy.project(runs, layer, space, method=method, store=store)
    return {
        "coords": [np.asarray(c, dtype=np.float64) for c in p.coords],
        "explained_variance": p.explained_variance,
        "trustworthiness": p.trustworthiness,
    }


def _int_param(name: str) -> int | None:
    raw = st.query_params.get(name)
    try:
        return int(str(raw).strip()) if raw is not None else None
    except ValueError:
        st.warning(ui.md(f"URL parameter {name}='{str(raw)[:40]}' is not a whole number; ignored."))
        return None


# ----------------------------------------------------------------------------- page
def render() -> None:
    ui.guard(_render)


def _render() -> None:
    st.html(ui.BASE_CSS)
    st.title("Compare")
    store = data.get_store()
    runs_df = data.list_runs(store)
    if runs_df.empty:
        st.info(
            ui.EMPTY_STATE + "\n- `python -m backend batch QUESTIONS.jsonl --samples K` for K trajectories "
            "of each question."
        )
        return
    groups = question_groups(runs_df)
    wanted = str(st.query_params.get("q", "")).strip()
    focus = _focus_run(store, runs_df)  # ?focus=KEY: that run and its partner
    if focus is not None:
        wanted = question_id(str(runs_df.set_index("key").at[focus[0], "question"] or ""))
    if wanted and wanted not in set(groups["qid"]):
        st.warning(ui.md(f"No question '{wanted[:40]}' in the cache; showing the one with most runs."))
        wanted = ""
    index = int(np.flatnonzero(groups["qid"] == wanted)[0]) if wanted else 0
    choice = st.selectbox(
        "Question",
        range(len(groups)),
        index=index,
        key="compare_question",
        format_func=lambda i: (
            f"({int(groups['n_runs'][i])} run{'' if int(groups['n_runs'][i]) == 1 else 's'}) "
            f"{groups['question'][i][:110]}"
        ),
        help="runs are grouped by their question text; sample several trajectories with `batch --samples K`",
    )
    group = groups.iloc[int(choice)]
    ui.set_query_params(q=group["qid"])
    if focus is not None and focus[0] not in group["keys"]:  # another question was picked: the run is left
        focus = None
        del st.query_params["focus"]
    st.html(question_html(group["question"], present=False))  # whole and wrapping: the select box cuts it

    by_key = runs_df.set_index("key")
    conditions = by_key["condition"] if "condition" in by_key else pd.Series(dtype=object)
    labels_of = {
        k: figures_proxy.run_label(k, by_key.at[k, "label"], str(by_key.at[k, "model"]), by_key.at[k, "correct"])
        + (" · no thinking" if conditions.get(k) == CONDITION_NO_THINKING else "")
        for k in group["keys"]
    }
    healthy = [k for k in group["keys"] if by_key.at[k, "status"] == "ok"] if "status" in by_key else group["keys"]
    default = healthy[:MAX_DEFAULT_RUNS]  # a damaged run is never preselected (it would fail the page)
    if focus is not None:
        default = [k for k in focus if k in healthy]
    chosen = st.multiselect(
        "Runs",
        group["keys"],
        default=default,
        format_func=lambda k: labels_of[k],
        key=f"compare_runs_{group['qid']}" + (f"_{focus[0][:12]}" if focus is not None else ""),
    )
    if not chosen:
        st.info("Pick at least one run.")
        return
    runs = [data.load_run(store, k) for k in chosen]
    labels = [labels_of[k] for k in chosen]
    n_ok = sum(figures_proxy.correctness(r.correct) is True for r in runs)
    st.caption(
        f"{len(runs)} run(s) · {n_ok} ended correct · reference answer: "
        f"{runs[0].answer!s:.60} ({runs[0].answer_source})"
    )

    tab_runs, tab_landscape = st.tabs(["Runs in one basis", "Loss landscapes"])
    with tab_runs:
        _runs_tab(store, runs, labels)
    with tab_landscape:
        _landscape_tab(store, runs, labels)


def _focus_run(store: RunStore, runs_df: pd.DataFrame) -> tuple[str, ...] | None:
    """``?focus=KEY`` (a key or a unique prefix): (that run, its partner if it has one); None without
    the parameter, with a warning when it names no run."""
    raw = str(st.query_params.get("focus", "")).strip()
    if not raw:
        return None
    try:
        key = store.resolve(raw)
    except RamlError as exc:
        st.warning(ui.md(f"URL parameter focus: {exc}; showing the question with most runs."))
        return None
    if key not in set(runs_df["key"]):
        st.warning(ui.md(f"Run {key[:12]} is not in the library; showing the question with most runs."))
        return None
    partner = runs_df.set_index("key")["partner"].get(key) if "partner" in runs_df else None
    return (key, partner) if isinstance(partner, str) and partner in set(runs_df["key"]) else (key,)


def _pair_panel(runs: list[RunData]) -> None:
    """Thinking vs no thinking for each linked pair among the chosen runs."""
    for i, (thinking, no_thinking) in enumerate(linked_pairs(runs)):
        st.subheader("Thinking vs no thinking")
        t_end, n_end = thinking.summary.final_loss, no_thinking.summary.final_loss
        c1, c2, c3 = st.columns(3)
        c1.metric("Final L̂, thinking", f"{t_end:.3f}", help=f"nats; {thinking.summary.n_tokens} tokens of thinking")
        c2.metric(
            "Final L̂, no thinking",
            f"{n_end:.3f}",
            delta=f"{n_end - t_end:+.3f} nats",
            delta_color="inverse",  # a higher loss without thinking is worse
            help=f"nats; {no_thinking.summary.n_tokens} tokens after the empty thinking part",
        )
        how = no_thinking.empty_thinking.get("method", "")
        c3.metric(
            "Thinking part emptied by", {"template-switch": "template switch", "prefill": "prefill"}.get(how, "—")
        )
        st.dataframe(
            pair_table(thinking, no_thinking),
            hide_index=True,
            key=f"compare_pair_table_{i}",
            column_config={
                "L̂ end": st.column_config.NumberColumn(format="%.3f"),
                "L̂ start": st.column_config.NumberColumn(format="%.3f"),
                "key": st.column_config.TextColumn(width="small"),
            },
        )
        curves = [  # over the tokens read, not the share of the trajectory: the two lengths differ
            replace(curve_of(r, condition_label(r.condition)), progress=r.tokens["cut"].to_numpy(np.float64))
            for r in (thinking, no_thinking)
        ]
        fig = figures_proxy.compare_loss_figure(
            curves, title="L̂ over the tokens read: thinking vs no thinking", over_tokens=True
        )
        st.plotly_chart(fig, key=f"compare_pair_chart_{i}", config=PLOTLY_CONFIG)


def _runs_tab(store: RunStore, runs: list[RunData], labels: list[str]) -> None:
    _pair_panel(runs)
    st.dataframe(
        summary_table(runs, labels),
        hide_index=True,
        key="compare_summary",
        column_config={
            "L̂ start": st.column_config.NumberColumn(format="%.3f"),
            "L̂ end": st.column_config.NumberColumn(format="%.3f"),
            "ΔL̂": st.column_config.NumberColumn(format="%+.3f"),
            "key": st.column_config.TextColumn(width="small"),
        },
    )
    curves = [curve_of(r, label) for r, label in zip(runs, labels)]
    st.plotly_chart(figures_proxy.compare_loss_figure(curves), key="compare_loss_chart", config=PLOTLY_CONFIG)

    problem = shared_space_problem(runs)
    if problem:
        st.info(problem)
        return
    c1, c2, c3 = st.columns([2, 1, 1], vertical_alignment="bottom")
    space_param = str(st.query_params.get("space", "proxy"))
    space = c1.radio(
        "Space",
        list(SPACE_LABELS),
        index=list(SPACE_LABELS).index(space_param) if space_param in SPACE_LABELS else 0,
        format_func=SPACE_LABELS.get,
        horizontal=True,
        key="compare_space",
    )
    layers = common_layers(runs, space)
    if not layers:
        st.info(f"These runs store no common layer for the {SPACE_LABELS[space]} space; showing loss curves only.")
        return
    wanted_layer = _int_param("layer")
    default_layer = wanted_layer if wanted_layer in layers else layers[len(layers) // 2]
    if wanted_layer is not None and wanted_layer not in layers:
        st.warning(f"Layer {wanted_layer} is not stored by all these runs; showing layer {default_layer}.")
    layer = c2.selectbox("Layer", layers, index=layers.index(default_layer), key=f"compare_layer_{space}")
    method_param = str(st.query_params.get("method", "pca"))
    method = c3.radio(
        "Projection",
        list(METHOD_LABELS),
        index=list(METHOD_LABELS).index(method_param) if method_param in METHOD_LABELS else 0,
        format_func=METHOD_LABELS.get,
        horizontal=True,
        key="compare_method",
    )
    ui.set_query_params(space=space, layer=layer, method=method)

    keys = tuple(r.key for r in runs)
    stamps = tuple(data.run_stamp(store, k) for k in keys)
    proj = _shared_projection(str(store.root), keys, stamps, int(layer), space, method)
    if method == "pca":
        ev = proj["explained_variance"]
        axis = (f"PC1 ({ev[0]:.0%} of variance)", f"PC2 ({ev[1]:.0%})")
        fidelity = f"PCA keeps {float(np.sum(ev)):.0%} of the variance"
    else:
        axis, fidelity = ("UMAP 1", "UMAP 2"), "UMAP (seed 0)"
    trust = proj["trustworthiness"]
    fidelity += f"; trustworthiness {trust:.2f}" if trust is not None else "; too few points for trustworthiness"
    models = {r.model_name for r in runs}
    note = " Runs of different models share the basis but not the parameters." if len(models) > 1 else ""
    fig = figures_proxy.compare_paths_figure(
        proj["coords"],
        [boundary_loss(r) for r in runs],
        labels,
        [r.correct for r in runs],
        keys=list(keys),
        axis_titles=axis,
        title=f"Paths in one {METHOD_LABELS[method]} basis · {SPACE_LABELS[space]} · layer {layer}",
    )
    st.plotly_chart(fig, key="compare_path_chart", config=PLOTLY_CONFIG)
    st.caption(
        f"One basis fitted on all {sum(len(c) for c in proj['coords'])} boundaries of these runs: "
        f"{fidelity}. ■ = start (no trajectory), ★/✕ = end (correct/incorrect).{note}"
    )
    st.dataframe(
        geometry_table(runs, labels, int(layer), space),
        hide_index=True,
        key="compare_geometry",
        column_config={
            c: st.column_config.NumberColumn(format="%.3f")
            for c in ("path length", "displacement", "straightness", "mean cos(step, previous)")
        },
    )
    if st.button("Open the first run in Explore", key="compare_open"):
        st.switch_page(EXPLORE_PAGE, query_params={"run": runs[0].key, "space": space, "layer": str(layer)})


def _landscape_tab(store: RunStore, runs: list[RunData], labels: list[str]) -> None:
    from backend.analysis.landscapes import surfaces as landscape
    from backend.analysis.spaces import proxy

    st.caption(
        "How the answer's loss $L_q$ changes around the model's weights θ with no trajectory in context. "
        "The proxy plane is spanned by the top-2 PCA directions of one run's ΔW path at one layer "
        "(a single-layer proxy); the random landscape perturbs every layer as in the RaML reference."
    )
    c1, c2 = st.columns([3, 1])
    i = c1.selectbox("Run", range(len(runs)), format_func=lambda j: labels[j], key="compare_landscape_run")
    run = runs[int(i)]
    draw_exact_landscape(store, run)
    layers = proxy.available_layers(run, "proxy")
    if not layers:
        st.info("This run stores no proxy layer.")
        return
    layer = c2.selectbox("Proxy layer", layers, index=len(layers) // 2, key="compare_landscape_layer")
    g1, g2, g3 = st.columns([1, 1, 2], vertical_alignment="bottom")
    grid = int(
        g1.number_input(
            "Grid",
            3,
            41,
            15,
            step=2,
            key="compare_surface_grid",
            help="points per side; 15 x 15 takes well under a minute for SmolLM2 on a CPU",
        )
    )
    view = g2.radio("View", ["contour", "3-D"], horizontal=True, key="compare_surface_view")
    surface = landscape.load_surface(run, int(layer), grid=grid, store=store)
    surface_job = jobs_view.active_job("surface", run.key, layer=int(layer), grid=grid)
    if surface_job is not None:
        with g3:
            jobs_view.follow(surface_job, f"Loss surface, {grid} x {grid} grid", key="compare_surface_progress")
    elif surface is None and not ui.read_only():  # a read-only server shows what is cached
        if g3.button("Compute the proxy-plane surface", key="compare_surface_go", type="primary"):
            if jobs_view.submit("surface", {"key": run.key, "layer": int(layer), "grid": grid}) is not None:
                st.rerun()
        failure = jobs_view.last_failure("surface", run.key, layer=int(layer), grid=grid)
        if failure:
            st.error(failure)
    if surface is not None:
        if view == "contour":
            fig = figures_proxy.surface_contour_figure(surface)
        else:
            fig = figures_proxy.surface_3d_figure(surface)
        st.plotly_chart(fig, key="compare_surface_chart", config=PLOTLY_CONFIG)
        st.plotly_chart(figures_proxy.path_losses_figure(surface), key="compare_surface_path", config=PLOTLY_CONFIG)
        st.caption(
            f"$L_q(θ)$ = {surface.base_loss:.3f} nats; computed in {surface.seconds:.1f} s"
            f"{' (from the cache)' if surface.cached else ''}."
        )
    else:
        st.caption(
            "Not computed for this run, layer and grid."
            if ui.read_only()
            else "Not computed yet for this run, layer and grid (needs the model; cached afterwards)."
        )

    st.divider()
    r1, r2, r3, r4 = st.columns([1, 1, 1, 2], vertical_alignment="bottom")
    rgrid = int(
        r1.number_input(
            "Grid",
            3,
            31,
            11,
            step=2,
            key="compare_random_grid",
            help="every point is one forward of the whole model with perturbed weights "
            "(about 1 s for SmolLM2 on a CPU)",
        )
    )
    span = float(
        r2.number_input(
            "Span ±",
            0.05,
            2.0,
            1.0,
            step=0.05,
            key="compare_random_span",
            help="α, β in [−span, span]; 1 = as far as each tensor's own norm",
        )
    )
    seed = int(r3.number_input("Seed", 0, 10_000, 0, key="compare_random_seed"))
    random_view = landscape.load_random_landscape(run, grid=rgrid, span=span, seed=seed, store=store)
    match = {"grid": rgrid, "span": span, "seed": seed}
    random_job = jobs_view.active_job("landscape", run.key, **match)
    if random_job is not None:
        with r4:
            jobs_view.follow(random_job, f"Random landscape, {rgrid} x {rgrid} grid", key="compare_random_progress")
    elif random_view is None and not ui.read_only():
        if r4.button("Compute the random-direction landscape", key="compare_random_go"):
            if jobs_view.submit("landscape", {"key": run.key, **match}) is not None:
                st.rerun()
        failure = jobs_view.last_failure("landscape", run.key, **match)
        if failure:
            st.error(failure)
    if random_view is not None:
        kind = "surface" if view == "3-D" else "contour"
        st.plotly_chart(
            figures_proxy.random_landscape_figure(random_view, kind=kind),
            key="compare_random_chart",
            config=PLOTLY_CONFIG,
        )
        st.caption(f"{random_view.n_params:,} parameters perturbed; $L_q(θ)$ = {random_view.base_loss:.3f} nats.")


if __name__ == "__main__":  # executed as a page script by st.navigation
    render()
