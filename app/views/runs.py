"""Runs: the library (filter, open, delete), a new-run form and a JSONL import.

New runs and imports are jobs of the backend queue (``backend.jobs.queue``, run by this
server's worker thread): the page shows the estimate from this machine's measured
throughput, submits, and links the result; the sidebar's jobs panel shows the progress
on every page, so leaving this page loses nothing.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from app import data, ui
from backend.errors import RamlError

EXPLORE_PAGE = "views/explore.py"
CONFIRM_DELETE = "runs_confirm_delete"
PENDING = "runs_pending_request"
LAST_JOB = "runs_last_job"
IMPORT_CONFIRM = "runs_import_confirm_pending"
SEGMENTATIONS = ["sentences", "lines", "paragraphs", "tokens:8", "tokens:16", "tokens:32"]
CUTS = {
    "all": "every token (as the paper)",
    "stride:4": "every 4th token",
    "stride:16": "every 16th token",
    "steps": "step boundaries only",
}
CPU_TOKENS_PER_S = 400  # SmolLM2-135M forward throughput on this 2-core CPU (docs/architecture.md §4)


def render() -> None:
    ui.guard(_render)


def _render() -> None:
    st.html(ui.BASE_CSS)
    st.title("Runs")
    store = data.get_store()
    library, new_run, import_tab = st.tabs(["Library", "New run", "Import"])
    with library:
        ui.guard(lambda: _library(store))
    with new_run:
        ui.guard(_last_job)
        ui.guard(lambda: _new_run_form(store))
    with import_tab:
        ui.guard(lambda: _import_jsonl(store))


# ----------------------------------------------------------------------------- library
def filter_runs(
    runs: pd.DataFrame,
    text: str = "",
    models: list[str] | None = None,
    correctness: str = "all",
    tokens: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Library rows matching the filters (question/label text, models, correctness, n_tokens range)."""
    out = runs
    if text.strip():
        needle = text.strip().lower()
        hay = out["question"].fillna("").str.lower() + " " + out["label"].fillna("").str.lower()
        out = out[hay.str.contains(needle, regex=False)]
    if models:
        out = out[out["model"].isin(models)]
    if correctness == "correct":
        out = out[out["correct"] == 1]
    elif correctness == "incorrect":
        out = out[out["correct"] == 0]
    elif correctness == "no reference":
        out = out[out["correct"].isna()]
    if tokens is not None:
        out = out[(out["n_tokens"] >= tokens[0]) & (out["n_tokens"] <= tokens[1])]
    return out


def _library(store) -> None:
    runs = data.list_runs(store)
    if runs.empty:
        st.info(ui.EMPTY_STATE)
        return
    f1, f2, f3, f4 = st.columns([3, 2, 1.4, 2.4])
    text = f1.text_input("Question contains", key="runs_filter_text", placeholder="e.g. apples")
    models = f2.multiselect("Model", sorted(runs["model"].dropna().unique()), key="runs_filter_model")
    correctness = f3.selectbox("Answer", ["all", "correct", "incorrect", "no reference"], key="runs_filter_correct")
    lo, hi = int(runs["n_tokens"].min()), int(runs["n_tokens"].max())
    tokens = None
    if lo < hi:
        tokens = f4.slider("Trajectory length (tokens)", lo, hi, (lo, hi), key="runs_filter_tokens")
    view = filter_runs(runs, text, models, correctness, tokens)
    st.caption(f"{len(view)} of {len(runs)} runs")
    table = view.assign(
        created=pd.to_datetime(view["created"], unit="s").dt.strftime("%Y-%m-%d %H:%M"),
        correct=view["correct"].map({1: "✓", 0: "✗"}).fillna("–"),
    )[
        [
            "question",
            "model",
            "answer",
            "correct",
            "n_tokens",
            "n_steps",
            "initial_loss",
            "final_loss",
            "label",
            "created",
            "key",
        ]
    ]
    event = st.dataframe(
        table,
        hide_index=True,
        key="runs_table",
        on_select="rerun",
        selection_mode="single-row",
        column_config={
            "question": st.column_config.TextColumn("question", width="large"),
            "initial_loss": st.column_config.NumberColumn("L̂ start (nats)", format="%.3f"),
            "final_loss": st.column_config.NumberColumn("L̂ end (nats)", format="%.3f"),
            "n_tokens": st.column_config.NumberColumn("tokens"),
            "n_steps": st.column_config.NumberColumn("steps"),
            "key": st.column_config.TextColumn("key", width="small"),
        },
    )
    if view.empty:
        return
    keys = view["key"].tolist()
    rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    if rows and rows[0] < len(keys):
        st.session_state["runs_selected"] = keys[rows[0]]
    if st.session_state.get("runs_selected") not in keys:
        st.session_state["runs_selected"] = keys[0]
    labels = dict(zip(view["key"], view["question"].fillna("").str.slice(0, 70)))
    c1, c2, c3 = st.columns([5.4, 1.8, 1.3], vertical_alignment="bottom")
    key = c1.selectbox("Selected run", keys, key="runs_selected", format_func=lambda k: f"{labels[k]} · {k[:12]}")
    if c2.button("Open in Explore", type="primary", key="runs_open", width="stretch"):
        st.switch_page(EXPLORE_PAGE, query_params={"run": key})
    if c3.button("Delete…", key="runs_delete", width="stretch"):
        st.session_state[CONFIRM_DELETE] = key
    pending = st.session_state.get(CONFIRM_DELETE)
    if pending:
        question = labels.get(pending, "")
        st.warning(f"Delete run {pending[:12]} ({question})? Its cached files are removed; it can be recomputed.")
        d1, d2, _ = st.columns([1.3, 1, 6])
        if d1.button("Yes, delete", type="primary", key="runs_delete_confirm"):
            st.session_state.pop(CONFIRM_DELETE, None)
            deleted = store.delete(pending)
            st.session_state.pop("runs_selected", None)
            st.toast(f"Deleted run {pending[:12]}" if deleted else f"Run {pending[:12]} was already gone")
            st.rerun()
        if d2.button("Cancel", key="runs_delete_cancel"):
            st.session_state.pop(CONFIRM_DELETE, None)
            st.rerun()


# ----------------------------------------------------------------------------- new run
def estimate_cost(trajectory: str | None, answer: str | None, max_new_tokens: int, cuts: str) -> dict:
    """Rough cost before starting (no tokenizer loaded): trajectory tokens ≈ chars / 4."""
    from backend.pipeline.run import estimate_probe_tokens

    n_tokens = max(1, math.ceil(len(trajectory) / 4)) if trajectory else int(max_new_tokens)
    n_probe = 8 + max(1, math.ceil(len(answer or "xx") / 3))  # template (~8 tokens) + answer
    n_steps = max(1, n_tokens // 20)
    total = estimate_probe_tokens(n_tokens, cuts, n_probe, n_steps)
    return {
        "n_tokens": n_tokens,
        "n_probe": n_probe,
        "probe_tokens": total,
        "seconds": total / CPU_TOKENS_PER_S + (max_new_tokens / 20 if not trajectory else 0),
    }


def _new_run_form(store) -> None:
    from backend.engine.models import DEFAULT_MODEL
    from backend.engine.trajectory import GenerationSettings
    from backend.pipeline.run import RunRequest

    with st.form("runs_new_form"):
        model = st.text_input(
            "Model",
            value=DEFAULT_MODEL,
            key="runs_new_model",
            help="smollm2-135m (bundled), a local directory, a .gguf file, or a hub id in the local HF cache",
        )
        question = st.text_area("Question", key="runs_new_question", height=90)
        answer = st.text_input(
            "Reference answer (optional)",
            key="runs_new_answer",
            help="Leave empty to use the model's own final answer (marked as such)",
        )
        trajectory = st.text_area(
            "Trajectory to import (optional)",
            key="runs_new_trajectory",
            height=90,
            help="Paste a chain of thought to analyze it; leave empty to generate one",
        )
        g1, g2, g3, g4 = st.columns(4)
        max_new = g1.number_input("Max new tokens", 1, 4096, 256, key="runs_new_max_tokens")
        temperature = g2.number_input("Temperature (0 = greedy)", 0.0, 2.0, 0.0, 0.1, key="runs_new_temperature")
        top_p = g3.number_input("Top-p", 0.05, 1.0, 1.0, 0.05, key="runs_new_top_p")
        seed = g4.number_input("Seed", 0, 2**31 - 1, 0, key="runs_new_seed")
        s1, s2 = st.columns(2)
        segmentation = s1.selectbox("Steps", SEGMENTATIONS, key="runs_new_segmentation")
        cuts = s2.selectbox("Cut points", list(CUTS), format_func=CUTS.get, key="runs_new_cuts")
        submitted = st.form_submit_button("Estimate cost")
    if submitted:
        req = RunRequest(
            question=question,
            answer=answer.strip() or None,
            trajectory=trajectory if trajectory.strip() else None,
            model=model.strip() or DEFAULT_MODEL,
            segmentation=segmentation,
            cuts=cuts,
            generation=GenerationSettings(
                max_new_tokens=int(max_new), temperature=float(temperature), top_p=float(top_p), seed=int(seed)
            ),
        )
        try:
            req.validate()
        except RamlError as exc:
            st.session_state.pop(PENDING, None)
            st.error(f"Cannot start: {exc}")
            return
        st.session_state[PENDING] = req
    req = st.session_state.get(PENDING)
    if req is None:
        return
    cost = estimate_cost(req.trajectory, req.answer, req.generation.max_new_tokens, req.cuts)
    estimate = _estimate_run(req)
    source = "imported trajectory" if req.trajectory else f"up to {req.generation.max_new_tokens} generated tokens"
    st.info(
        f"**Estimated cost:** {estimate.describe()}: ≈ {cost['probe_tokens']:,} tokens of forward compute "
        f"(≈ {cost['n_tokens']} trajectory tokens from the {source}, {CUTS[req.cuts]}). "
        "A cached identical run opens at once."
    )
    if estimate.warn:
        st.warning(f"This run should take more than a minute ({estimate.describe()}).")
    b1, b2, _ = st.columns([1.2, 1, 6])
    start = b1.button("Start run", type="primary", key="runs_new_start")
    if b2.button("Cancel", key="runs_new_cancel"):
        st.session_state.pop(PENDING, None)
        st.rerun()
    if start:
        from app import jobs_panel
        from backend.jobs import request_params

        job_id = jobs_panel.submit(
            "run", request_params(req), title=f"Run: {req.question.strip()[:60]}", estimate_s=estimate.seconds
        )
        st.session_state[LAST_JOB] = job_id
        st.session_state.pop(PENDING, None)
        st.rerun()


def _estimate_run(req):
    from app import jobs_panel
    from backend.jobs.estimates import estimate_run

    queue = jobs_panel.get_queue()
    override = data.model_override(req.model)
    model_state = (override.fingerprint, True, False) if override is not None else None
    return estimate_run(req, queue, _device(), model_state_=model_state)


def _device() -> str:
    from backend.jobs.queue import default_device

    return default_device()


def _last_job() -> None:
    """The job this session submitted last: its progress line and, once finished, its run."""
    job_id = st.session_state.get(LAST_JOB)
    if job_id is None:
        return
    from app import jobs_panel

    job = jobs_panel.get_queue().get(job_id)
    if job is None:
        return
    with st.container(border=True, key="runs_last_job"):
        st.markdown(f"**Job #{job.id}** · {job.title}")
        st.caption(jobs_panel.job_line(job))
        if job.state in ("queued", "running"):
            st.caption("It runs in the server: open other pages meanwhile; the Jobs panel in the sidebar follows it.")
        for key in job.results[:1]:
            if st.button("Open the run in Explore", type="primary", key="runs_last_job_open"):
                st.switch_page(EXPLORE_PAGE, query_params={"run": key})


# ----------------------------------------------------------------------------- JSONL import
def _import_jsonl(store) -> None:
    from pathlib import Path

    from backend.io.fields import PRESETS, FieldMap
    from backend.io.readers import UPLOAD_SUFFIXES, read_questions, read_questions_bytes
    from backend.io.records import MAX_FILE_BYTES

    st.markdown(
        'JSONL (one question per line: `{"id"?: ..., "question": "...", "answer"?: "...", "trajectory"?: "..."}`), '
        "Parquet (a file or a folder of shards), Arrow, CSV, a Hugging Face `save_to_disk` folder or Thought Anchors "
        "problem folders. Rows without a trace are generated by the model; a list of traces gives one run per element."
    )
    c1, c2, c3 = st.columns(3)
    origin = c1.radio("Source", ["Upload", "Path on the server"], horizontal=True, key="runs_import_origin")
    preset = c2.selectbox("Layout preset", ["none", *PRESETS], key="runs_import_preset")
    limit = int(c3.number_input("First N records", 1, 100_000, 500, key="runs_import_limit"))
    with st.expander("Column names (override the preset)"):
        f1, f2, f3 = st.columns(3)
        named = [
            f1.text_input("Question field", key="runs_import_question_field", placeholder="question"),
            f2.text_input("Answer field", key="runs_import_answer_field", placeholder="answer"),
            f3.text_input("Trace field", key="runs_import_trajectory_field", placeholder="trajectory"),
        ]
    fields = FieldMap.build(None if preset == "none" else preset, *[n.strip() or None for n in named])
    if origin == "Upload":
        upload = st.file_uploader(
            "Question or trace file",
            type=list(UPLOAD_SUFFIXES),
            key="runs_import_file",
            max_upload_size=MAX_FILE_BYTES >> 20,
        )
        if upload is None:
            return
        name = upload.name
        records, errors = read_questions_bytes(upload.getvalue(), name, fields, limit=limit)
    else:
        name = st.text_input("File or folder on the server's disk", key="runs_import_path").strip()
        if not name:
            return
        records, errors = read_questions(Path(name).expanduser(), fields, limit=limit)
    if not records and len(errors) == 1 and errors[0].line == 0:  # the whole file or folder: one message
        st.error(str(errors[0]))
        return
    if errors:
        st.error(
            f"{len(errors)} line{'s' if len(errors) > 1 else ''} of {name} cannot be used "
            f"(the other {len(records)} can):"
        )
        st.dataframe(
            pd.DataFrame([{"line": e.line, "field": e.field or "", "problem": e.message} for e in errors]),
            hide_index=True,
            key="runs_import_errors",
        )
    if not records:
        return
    st.success(f"{len(records)} question{'s' if len(records) > 1 else ''} ready to run.")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "line": r.line,
                    "id": r.id,
                    "question": r.question[:100],
                    "answer": r.answer,
                    "trajectory": "imported" if r.trajectory else "generate",
                }
                for r in records
            ]
        ),
        hide_index=True,
        key="runs_import_records",
    )
    from backend.engine.models import DEFAULT_MODEL

    c1, c2 = st.columns(2)
    model = c1.text_input("Model", value=DEFAULT_MODEL, key="runs_import_model")
    max_new = c2.number_input("Max new tokens (generated lines)", 1, 4096, 256, key="runs_import_max_tokens")
    from backend.engine.trajectory import GenerationSettings
    from backend.pipeline.run import RunRequest

    model = model.strip() or DEFAULT_MODEL
    requests = [
        RunRequest(
            question=rec.question,
            answer=rec.answer,
            trajectory=rec.trajectory,
            model=model,
            label=rec.id,
            generation=GenerationSettings(max_new_tokens=int(max_new)),
        )
        for rec in records
    ]
    from app import jobs_panel
    from backend.jobs.estimates import estimate_batch

    override = data.model_override(model)
    model_state = (override.fingerprint, True, False) if override is not None else None
    estimate = estimate_batch(requests, jobs_panel.get_queue(), _device(), model_state_=model_state)
    n = len(records)
    plural = "s" if n > 1 else ""
    st.info(f"**Estimated cost of {n} question{plural}:** {estimate.describe()}. Cached runs are reused.")
    confirm_id = f"{name}:{n}:{model}:{int(max_new)}"
    if st.button(f"Run {n} question{plural}…", type="primary", key="runs_import_start"):
        st.session_state[IMPORT_CONFIRM] = confirm_id
    if st.session_state.get(IMPORT_CONFIRM) != confirm_id:
        return
    warn = " That is more than a minute." if estimate.warn else ""
    st.warning(f"Queue {n} question{plural} from {name} ({estimate.describe()})?{warn}")
    c1, c2, _ = st.columns([1.4, 1, 6])
    if c2.button("Cancel", key="runs_import_cancel"):
        st.session_state.pop(IMPORT_CONFIRM, None)
        st.rerun()
    if not c1.button("Yes, queue them", type="primary", key="runs_import_confirm"):
        return
    from backend.jobs import request_params

    st.session_state.pop(IMPORT_CONFIRM, None)
    params = {
        "requests": [request_params(r) | {"line": rec.line} for r, rec in zip(requests, records)],
        "source": name,
    }
    job_id = jobs_panel.submit("batch", params, title=f"Import {name} ({n})", estimate_s=estimate.seconds)
    st.session_state[LAST_JOB] = job_id
    st.success(
        f"Queued as job #{job_id}: it runs in the server, so you can leave this page; "
        "the Jobs panel in the sidebar shows its progress and links the runs."
    )


if __name__ == "__main__":  # executed as a page script by st.navigation
    render()
