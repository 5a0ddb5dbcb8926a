"""Runs: the library (filter, open, delete), a new-run form and a JSONL import.

New runs and imports are jobs of the backend queue (kinds ``run`` and ``batch``, run by this
server's worker thread): the page shows the estimate from this machine's measured
throughput, submits, and links the result; the sidebar's jobs panel shows the progress
on every page, so leaving this page loses nothing. An uploaded file is saved under the cache
(``<cache>/uploads/<sha256>.<ext>``) and the ``batch`` job reads it by path: the page has no
batch loop of its own, and no page imports the model code.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import streamlit as st

from app import data, ui
from backend.errors import RamlError

EXPLORE_PAGE = "views/explore.py"
DATASET_PAGE = "views/dataset.py"
CONFIRM_DELETE = "runs_confirm_delete"
PENDING = "runs_pending_request"
LAST_SAMPLES = "runs_last_samples_question"  # the question of the last K-samples job (opens the Samples view)
LAST_JOB = "runs_last_job"
IMPORT_CONFIRM = "runs_import_confirm_pending"
SEGMENTATIONS = ["sentences", "lines", "paragraphs", "tokens:8", "tokens:16", "tokens:32"]
CUTS = {
    "auto": "every token if it fits the budget, else a stride (boundaries kept)",
    "all": "every token (as the paper)",
    "stride:4": "every 4th token",
    "stride:16": "every 16th token",
    "steps": "step boundaries only",
}
CPU_TOKENS_PER_S = 400  # SmolLM2-135M forward throughput on this 2-core CPU (docs/architecture.md §4)
# backend.engine.models.DEFAULT_MODEL (tests/unit/test_app_no_compute.py checks they agree): importing
# that module would import torch into the page
DEFAULT_MODEL = "smollm2-135m"
MAX_NEW_TOKENS = 4096  # the most tokens a run from this page generates (the field says so when exceeded)
MAX_NEW_HELP = f"Tokens the model may generate, 1 to {MAX_NEW_TOKENS:,}"
WARN_ABOVE_S = 60.0  # backend.jobs.estimates.WARN_ABOVE_S: say so when a job should take over a minute
MAX_SAMPLES = 64  # the batch kind's bound on K samples per question (it refuses more at submit)
UPLOADS_DIR = "uploads"  # <cache>/uploads/<sha256>.<ext>: files the Import tab saved for a batch job


def render() -> None:
    ui.guard(_render)


def _render() -> None:
    st.html(ui.BASE_CSS)
    st.title("Runs")
    store = data.get_store()
    if ui.read_only():  # `raml serve --read-only`: the library only, without Delete (backend/readonly.py)
        st.caption(ui.READ_ONLY_NOTE)
        ui.guard(lambda: _library(store))
        return
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
    if ui.read_only():
        return  # no Delete (and the store refuses one anyway)
    if c3.button("Delete…", key="runs_delete", width="stretch"):
        st.session_state[CONFIRM_DELETE] = key
    pending = st.session_state.get(CONFIRM_DELETE)
    if pending:
        question = labels.get(pending, "")
        st.warning(
            f"Delete run {pending[:12]} ({ui.md(question)})? Its cached files are removed; it can be recomputed."
        )
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
def max_new_refusal(max_new: int) -> str | None:
    """The message for a Max new tokens the page does not start (None if it is fine)."""
    if 1 <= max_new <= MAX_NEW_TOKENS:
        return None
    return (
        f"Max new tokens {max_new:,} is more than {MAX_NEW_TOKENS:,}, the most this page generates for one run: "
        "lower it, or import a longer trajectory instead."
    )


def estimate_cost(trajectory: str | None, answer: str | None, max_new_tokens: int, cuts: str) -> dict:
    """Rough cost before starting (no tokenizer loaded): trajectory tokens ≈ chars / 4; forward
    tokens n + C·m (``backend.pipeline.run.estimate_probe_tokens``, without importing the pipeline)."""
    from backend.engine.specs import parse_cuts

    cuts = "all" if cuts == "auto" else cuts  # auto: at most every token
    n_tokens = max(1, math.ceil(len(trajectory) / 4)) if trajectory else int(max_new_tokens)
    n_probe = 8 + max(1, math.ceil(len(answer or "xx") / 3))  # template (~8 tokens) + answer
    n_steps = max(1, n_tokens // 20)
    chosen = parse_cuts(cuts, n_tokens, list(range(n_steps + 1)))
    total = n_tokens + (n_tokens + 1 if chosen is None else len(chosen)) * n_probe
    return {
        "n_tokens": n_tokens,
        "n_probe": n_probe,
        "probe_tokens": total,
        "seconds": total / CPU_TOKENS_PER_S + (max_new_tokens / 20 if not trajectory else 0),
    }


def _prepare(kind: str, params: dict):
    """The queue's own check of a submission (the kind's typed params, run keys, the run request's
    validation) and its estimate, without queueing: ``Prepared`` or a one-line ``RamlError``."""
    from app import jobs_panel

    queue = jobs_panel.get_queue()
    return queue.registry.prepare(kind, params, queue)


def _new_run_form(store) -> None:
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
        max_new = g1.number_input(  # no max_value: a too large number gets a message, not a red field
            "Max new tokens", min_value=1, value=256, step=1, key="runs_new_max_tokens", help=MAX_NEW_HELP
        )
        temperature = g2.number_input("Temperature (0 = greedy)", 0.0, 2.0, 0.0, 0.1, key="runs_new_temperature")
        top_p = g3.number_input("Top-p", 0.05, 1.0, 1.0, 0.05, key="runs_new_top_p")
        seed = g4.number_input("Seed", 0, 2**31 - 1, 0, key="runs_new_seed")
        s1, s2, s3, s4 = st.columns(4)
        segmentation = s1.selectbox("Steps", SEGMENTATIONS, key="runs_new_segmentation")
        cuts = s2.selectbox("Cut points", list(CUTS), format_func=CUTS.get, key="runs_new_cuts")
        budget = s4.number_input(
            "Scoring budget (s)",
            min_value=1.0,
            value=float(default_budget_s()),
            step=30.0,
            key="runs_new_budget",
            help="With cut points 'auto': the seconds the scoring of cut points may take on this machine "
            "(its measured throughput); above it, a stride that fits, every step boundary kept",
        )
        samples = s3.number_input(
            "Samples",
            1,
            MAX_SAMPLES,
            1,
            key="runs_new_samples",
            help="K sampled trajectories of the question (as `raml run --samples K`), each a run, grouped under "
            "the question in the Dataset page's Samples view; temperature 0 samples at 0.7",
        )
        submitted = st.form_submit_button("Estimate cost")
    if submitted and (refusal := max_new_refusal(int(max_new))):
        st.session_state.pop(PENDING, None)
        st.error(refusal)
        return
    if submitted:
        params = {  # the ``run`` kind's params: RunRequest fields (docs/jobs.md)
            "question": question,
            "answer": answer.strip() or None,
            "trajectory": trajectory if trajectory.strip() else None,
            "model": model.strip() or DEFAULT_MODEL,
            "segmentation": segmentation,
            "cuts": cuts,
            "cut_budget_s": float(budget) if cuts == "auto" else None,
            "generation": {
                "max_new_tokens": int(max_new),
                "temperature": float(temperature),
                "top_p": float(top_p),
                "seed": int(seed),
            },
        }
        kind = "run"
        try:
            if int(samples) > 1:
                kind, params = "batch", samples_batch(store, params, int(samples))
            prepared = _prepare(kind, params)
        except RamlError as exc:
            st.session_state.pop(PENDING, None)
            st.error(f"Cannot start: {ui.md(exc)}")
            return
        # what runs is what was estimated: the params with the cuts the policy chose
        st.session_state[PENDING] = (kind, prepared.params, prepared.estimate_s, prepared.plan)
    pending = st.session_state.get(PENDING)
    if pending is None:
        return
    kind, params, estimate_s, plan = pending
    run_params = params["template"] | {"trajectory": None, "answer": None} if kind == "batch" else params
    k = params["samples"] if kind == "batch" else 1
    gen = run_params["generation"]
    cost = estimate_cost(run_params["trajectory"], run_params["answer"], gen["max_new_tokens"], run_params["cuts"])
    source = "imported trajectory" if run_params["trajectory"] else f"up to {gen['max_new_tokens']} generated tokens"
    seconds = k * cost["seconds"] if estimate_s is None else estimate_s
    each = f"{k} samples, each " if k > 1 else ""
    described, notes = _plan_text(plan, seconds)
    st.info(
        f"**Estimated cost:** {ui.md(described)}: {each}≈ {cost['probe_tokens']:,} tokens of forward compute "
        f"(≈ {cost['n_tokens']} trajectory tokens from the {source}, "
        f"{ui.md(CUTS.get(run_params['cuts'], run_params['cuts']))}). A cached identical run opens at once."
    )
    for note in notes:  # the cut-point policy's one line
        st.caption(ui.md(note))
    if seconds > WARN_ABOVE_S:
        st.warning(f"This run should take more than a minute (≈ {_fmt_seconds(seconds)}).")
    b1, b2, _ = st.columns([1.2, 1, 6])
    start = b1.button("Start run", type="primary", key="runs_new_start")
    if b2.button("Cancel", key="runs_new_cancel"):
        st.session_state.pop(PENDING, None)
        st.rerun()
    if start:
        from app import jobs_view

        job_id = jobs_view.submit(kind, params, **({"title": f"{k} samples of a question"} if k > 1 else {}))
        if job_id is None:
            return
        st.session_state[LAST_JOB] = job_id
        st.session_state.pop(PENDING, None)
        st.rerun()


def default_budget_s() -> float:
    from backend.pipeline.cut_policy import default_budget_s as budget

    return budget()


def _plan_text(plan: dict | None, seconds: float) -> tuple[str, list[str]]:
    """The estimate stage by stage with its range (``backend.jobs.estimates``) and its notes."""
    from backend.jobs.estimates import Estimate

    est = Estimate.from_json(plan)
    if est is None or not est.stages:
        return f"≈ {_fmt_seconds(seconds)}", []
    return est.describe(), list(est.notes)


def samples_batch(store, params: dict, samples: int) -> dict:
    """The ``batch`` kind's params for K samples of the form's question: the question saved as a
    one-line JSONL under the cache (content-addressed), the form's settings as the template."""
    import json

    if params["trajectory"] is not None:
        raise RamlError("an imported trajectory is one run: leave the trajectory empty to sample K of them")
    line = {"id": "sample", "question": params["question"]} | ({"answer": params["answer"]} if params["answer"] else {})
    path = save_upload(store, (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"), "question.jsonl")
    st.session_state[LAST_SAMPLES] = params["question"].strip()
    template = {k: v for k, v in params.items() if k not in ("question", "answer", "trajectory")}
    return {"source": str(path), "samples": samples, "template": template}


def _fmt_seconds(seconds: float | None) -> str:
    from app.jobs_panel import fmt_seconds

    return fmt_seconds(seconds)


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
        st.markdown(f"**Job #{job.id}** · {ui.md(job.title)}")
        st.caption(ui.md(jobs_panel.job_line(job)))
        if job.state in ("queued", "waiting", "running"):
            st.caption("It runs in the server: open other pages meanwhile; the Jobs panel in the sidebar follows it.")
        question = st.session_state.get(LAST_SAMPLES)
        if question and len(job.results) > 1:
            if st.button(
                f"Open the {len(job.results)} samples in Dataset", type="primary", key="runs_last_job_samples"
            ):
                st.switch_page(DATASET_PAGE, query_params={"samples": question})
            return
        for key in job.results[:1]:
            if st.button("Open the run in Explore", type="primary", key="runs_last_job_open"):
                st.switch_page(EXPLORE_PAGE, query_params={"run": key})


# ----------------------------------------------------------------------------- JSONL import
def _import_jsonl(store) -> None:
    from backend.io.fields import PRESETS, FieldMap
    from backend.io.readers import UPLOAD_SUFFIXES, read_questions, read_questions_bytes
    from backend.io.records import MAX_FILE_BYTES
    from backend.io.roots import confine, data_roots

    st.markdown(
        'JSONL (one question per line: `{"id"?: ..., "question": "...", "answer"?: "...", "trajectory"?: "..."}`), '
        "Parquet (a file or a folder of shards), Arrow, CSV, a Hugging Face `save_to_disk` folder, Thought Anchors "
        "problem folders (their rollouts become branches), Inspect AI logs (`.eval`, `.json`), lm-eval `--log_samples` "
        "files and OpenAI-compatible chat output. Rows without a trace are generated by the model; a list of traces "
        "gives one run per element."
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
        payload = upload.getvalue()
        records, errors = read_questions_bytes(payload, name, fields, limit=limit)
        source = None  # saved under the cache only when queued
    else:
        roots = data_roots(store.root)
        where = ", ".join(f"`{r}`" for r in roots) if roots else "none (server paths are off)"
        name = st.text_input(
            "File or folder on the server's disk",
            key="runs_import_path",
            help="Only below the server's data folders (RAML_DATA_ROOTS); a relative path is taken below the first",
        ).strip()
        st.caption(f"Data folders of this server: {where}")
        if not name:
            return
        try:
            source = confine(name, roots)
        except RamlError as exc:
            st.error(ui.md(exc))
            return
        records, errors = read_questions(source, fields, limit=limit, reveal=False)
    if not records and len(errors) == 1 and errors[0].line == 0:  # the whole file or folder: one message
        st.error(ui.md(errors[0]))
        return
    if errors:
        st.error(
            f"{len(errors)} line{'s' if len(errors) > 1 else ''} of {ui.md(name)} cannot be used "
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
                    "branch of": (r.branch or {}).get("of", ""),
                }
                for r in records
            ]
        ),
        hide_index=True,
        key="runs_import_records",
    )
    c1, c2, c3 = st.columns(3)
    model = c1.text_input("Model", value=DEFAULT_MODEL, key="runs_import_model").strip() or DEFAULT_MODEL
    max_new = int(
        c2.number_input(
            "Max new tokens (generated lines)",
            min_value=1,
            value=256,
            step=1,
            key="runs_import_max_tokens",
            help=MAX_NEW_HELP,
        )
    )
    if refusal := max_new_refusal(max_new):
        st.error(refusal)
        return
    samples = int(
        c3.number_input(
            "Samples per question",
            1,
            MAX_SAMPLES,
            1,
            key="runs_import_samples",
            help="K sampled trajectories of each question without a trace (as `raml batch --samples K`)",
        )
    )
    template = {"model": model, "generation": {"max_new_tokens": max_new}}
    n = len(records)
    plural = "s" if n > 1 else ""
    estimate = _batch_estimate(records, template, samples)
    runs = f"{n} question{plural}" + (f" × {samples} samples" if samples > 1 else "")
    st.info(f"**Estimated cost of {runs}:** {ui.md(estimate)}. Cached runs are reused.")
    confirm_id = f"{name}:{n}:{model}:{max_new}:{samples}"
    if st.button(f"Run {n} question{plural}…", type="primary", key="runs_import_start"):
        st.session_state[IMPORT_CONFIRM] = confirm_id
    if st.session_state.get(IMPORT_CONFIRM) != confirm_id:
        return
    st.warning(f"Queue {runs} from {ui.md(name)} ({ui.md(estimate)})?")
    c1, c2, _ = st.columns([1.4, 1, 6])
    if c2.button("Cancel", key="runs_import_cancel"):
        st.session_state.pop(IMPORT_CONFIRM, None)
        st.rerun()
    if not c1.button("Yes, queue them", type="primary", key="runs_import_confirm"):
        return
    st.session_state.pop(IMPORT_CONFIRM, None)
    try:
        path = save_upload(store, payload, name) if source is None else source
    except OSError as exc:
        st.error(ui.md(f"Cannot save {name} under the cache: {exc.strerror or exc}"))
        return
    params = {  # the ``batch`` kind (docs/jobs.md): the one batch implementation reads the file
        "source": str(path),
        "samples": samples,
        "limit": limit,
        "preset": None if preset == "none" else preset,
        "question_field": named[0].strip() or None,
        "answer_field": named[1].strip() or None,
        "trajectory_field": named[2].strip() or None,
        "template": template,
    }
    from app import jobs_view

    job_id = jobs_view.submit("batch", params, title=f"Import {name} ({runs})")
    if job_id is None:
        return
    st.session_state[LAST_JOB] = job_id
    st.success(
        f"Queued as job #{job_id}: it runs in the server, so you can leave this page; "
        "the Jobs panel in the sidebar shows its progress and links the runs."
    )


def save_upload(store, payload: bytes, name: str) -> Path:
    """An uploaded file saved as ``<cache>/uploads/<sha256>.<ext>`` (content-addressed: the same
    upload twice is one file), written atomically, for a ``batch`` job to read by path. Refused on a
    read-only server (``backend.readonly``), before anything is written."""
    import hashlib
    import os
    import tempfile

    from backend import readonly

    readonly.check("saving uploads")

    suffix = "".join(Path(name).suffixes[-2:]).lower() or ".jsonl"  # .jsonl, .parquet, .csv.gz, ...
    folder = Path(store.root) / UPLOADS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(payload).hexdigest()}{suffix}"
    if path.is_file() and path.stat().st_size == len(payload):
        return path
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _batch_estimate(records, template: dict, samples: int) -> str:
    """This machine's estimate for the batch (one model load, then every question × sample), as
    ``backend.jobs.estimates`` words it; the requests are built by the ``run`` kind's own parser."""
    from app import jobs_panel
    from backend.jobs.estimates import estimate_batch
    from backend.jobs.kinds.models import model_state_for
    from backend.jobs.queue import default_device

    queue = jobs_panel.get_queue()
    try:
        requests = [
            queue.registry.parse(
                "run", {**template, "question": r.question, "answer": r.answer, "trajectory": r.trajectory}
            ).request
            for r in records
            for _ in range(samples if r.trajectory is None else 1)
        ]
        state = model_state_for(template["model"])
        return estimate_batch(requests, queue, default_device(), model_state_=state).describe()
    except RamlError as exc:
        return f"no estimate ({exc})"


if __name__ == "__main__":  # executed as a page script by st.navigation
    render()
