"""Every built-in job kind end to end on the tiny model through ``submit`` + run, its result
equal to the direct backend call; bad params refused at submit in one line naming the field;
the queue importable without any kind; cancel of running importance/landscape jobs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY, build_wide_tiny

from backend.errors import InputError
from backend.jobs import open_queue, request_params, run_here, submit

ROOT = Path(__file__).resolve().parents[2]


def _finish(store, job_id):
    job = run_here(store, job_id)
    assert job.state == "finished", job.error
    return job


def test_run_kind_gives_the_run_of_run_question(store, provided):
    from backend.pipeline.run import RunRequest, run_question

    req = RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, model=provided.name)
    job = _finish(store, submit(store, "run", request_params(req)))
    direct = run_question(req, store, loaded=provided)
    assert direct.cached and job.results == [direct.key] and job.value.key == direct.key
    assert job.title.startswith("Import: Maya")
    stored = open_queue(store).get(job.id).params
    assert stored["generation"]["max_new_tokens"] == 256 and stored["force"] is False, "defaults are stored"


def test_batch_kind_with_samples_is_run_batch(store, provided, tmp_path):
    from backend.engine.trajectory import GenerationSettings
    from backend.io.fields import FieldMap
    from backend.pipeline.run import RunRequest
    from backend.scale.batch import BatchSpec, run_batch

    src = tmp_path / "q.jsonl"
    lines = [
        {"id": "a", "question": "What is 2 + 3?", "answer": "5", "trajectory": "2 plus 3. Wait, that is 5."},
        {"id": "b", "question": "What is 7 - 4?", "answer": "3"},
        {"id": "c", "question": ""},
    ]
    src.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    params = {
        "source": str(src),
        "samples": 2,
        "template": {"model": provided.name, "generation": {"max_new_tokens": 8}},
    }
    job = _finish(store, submit(store, "batch", params))
    template = RunRequest(question="", model=provided.name, generation=GenerationSettings(max_new_tokens=8))
    direct = run_batch(BatchSpec(src, FieldMap(), samples=2, show_progress=False), template, store)
    assert direct.cached == 3 and direct.computed == 0, "the job stored every run the direct call gives"
    assert sorted(job.results) == sorted(r.key for r in direct.results if r.key)
    assert len(job.results) == 3, "the imported trace runs once, the generated question twice"
    assert job.messages == direct.error_lines() and len(job.messages) == 1
    assert job.value.summary() == "3 computed, 0 cached, 1 failed"


def test_importance_kind_payload_is_compute_run_importance(run_copy, provided):
    from backend.analysis.importance.run import compute_run_importance, load_importance

    store, key = run_copy
    job = _finish(store, submit(store, "importance", {"key": key[:10], "attention": True}))
    assert job.results == [key], "a key prefix is resolved at submit"
    direct = compute_run_importance(store.open(key), provided, store=store, attention=True)
    for part in ("ablation", "ablated_final_loss", "final_loss", "boundary_cuts"):
        assert job.value[part] == direct[part]
    assert job.value["attention"]["head_mean"] == direct["attention"]["head_mean"]
    assert load_importance(store.open(key), store) is not None


def test_branch_kind_resample_and_edit_are_the_branch_functions(run_copy, provided):
    from backend.engine.trajectory import GenerationSettings
    from backend.pipeline import branches

    store, key = run_copy
    job = _finish(store, submit(store, "branch", {"key": key, "step": 1, "samples": 2, "max_new_tokens": 6}))
    direct = branches.resample(store, key, 1, 2, settings=GenerationSettings(6, 0.7, 0.95, 0), loaded=provided)
    assert job.results == [o.key for o in direct] and all(o.cached for o in direct)
    edit = {"key": key, "step": 1, "mode": "edit", "text": "Maya has five apples. "}
    job = _finish(store, submit(store, "branch", edit))
    direct_edit = branches.edit(
        store, key, 1, "Maya has five apples. ", settings=GenerationSettings(64, 0.7, 0.95, 0), loaded=provided
    )
    assert job.results == [direct_edit.key] and direct_edit.cached
    assert store.open(direct_edit.key).parent == key


def test_surface_and_landscape_kinds_are_the_surface_functions(run_copy, provided, learn_every_stage):
    from backend.analysis.landscapes.surfaces import loss_surface, random_landscape

    store, key = run_copy
    layer = store.open(key).proxy_layers[-1]
    s_job = _finish(store, submit(store, "surface", {"key": key, "layer": layer, "grid": 3, "span": 1.0}))
    l_job = _finish(store, submit(store, "landscape", {"key": key, "grid": 3, "span": 0.5, "seed": 1}))
    run = store.open(key)
    s = loss_surface(run, layer, loaded=provided, grid=3, span=1.0, store=store)
    r = random_landscape(run, loaded=provided, grid=3, span=0.5, seed=1, store=store)
    assert s.cached and r.cached, "the jobs stored what the direct calls read back"
    np.testing.assert_allclose(s_job.value.loss, s.loss)
    np.testing.assert_allclose(l_job.value.loss, r.loss)
    assert s_job.results == l_job.results == [key]
    assert open_queue(store).measured(run.model_fingerprint, s_job.device, "surface_point") > 0


@pytest.fixture(scope="module")
def wide_tiny(smol_tokenizer):
    """A tiny Llama wide enough (H = 128) for the exact update's constraints (P + m ≤ H)."""
    from backend.engine import provider
    from backend.engine.models import LoadedModel

    model = build_wide_tiny(smol_tokenizer)
    loaded = LoadedModel.from_objects("tiny-wide-jobs", model, smol_tokenizer)
    provider.register(loaded)
    yield loaded
    provider.unregister(loaded.name)


def test_exact_and_exact_landscape_kinds_are_the_exact_functions(store, wide_tiny):
    from backend.analysis.exact import landscape
    from backend.analysis.exact import run as exact_run
    from backend.pipeline.run import RunRequest

    req = RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, model=wide_tiny.name)
    (key,) = _finish(store, submit(store, "run", request_params(req))).results
    job = _finish(store, submit(store, "exact", {"key": key}))
    run = store.open(key)
    cached = exact_run.load(run, store)
    assert cached is not None and job.results == [key]
    np.testing.assert_allclose(job.value.edited_loss, cached.edited_loss)
    assert job.value.meta["max_abs_error"] == cached.meta["max_abs_error"]
    job = _finish(store, submit(store, "exact_landscape", {"key": key, "grid": 3, "span": 1.0}))
    direct = landscape.surface(run, cached, wide_tiny, grid=3, span=1.0, store=store)
    np.testing.assert_allclose(job.value.loss, direct.loss)
    assert landscape.load_surface(run, 3, 1.0, store) is not None


def test_export_images_kind_writes_the_figures_into_the_runs_exports(run_copy):
    from backend.jobs.kinds.export import exports_dir

    pytest.importorskip("kaleido")
    store, key = run_copy
    job_id = submit(store, "export_images", {"key": key, "formats": ["svg"]})
    assert open_queue(store).get(job_id).device == "cpu", "no model: the cpu lock"
    job = run_here(store, job_id)
    if job.state == "failed" and "Chrom" in (job.error or ""):
        pytest.skip(job.error)
    assert job.state == "finished", job.error
    out = exports_dir(store.open(key), store)
    assert sorted(p.name for p in job.value) == sorted(p.name for p in out.iterdir())
    assert {"loss.svg", "lens.svg"} <= {p.name for p in out.iterdir()}


# ---------------------------------------------------------------------------- refused at submit
BAD = [
    ("run", {"question": "q", "colour": 1}, "colour"),
    ("run", {"answer": "6"}, "question"),
    ("run", {"question": "q", "truncate": "yes"}, "truncate"),
    ("run", {"question": "q", "generation": {"seed": "x"}}, "generation.seed"),
    ("run", {"question": "q", "segmentation": "tokens:0"}, "tokens:0"),
    ("batch", {"source": ""}, "source"),
    ("batch", {"source": "SRC", "samples": 0}, "samples"),
    ("batch", {"source": "SRC", "samples": 65}, "samples"),
    ("batch", {"source": "SRC", "template": {"question": "x"}}, "template.question"),
    ("batch", {"source": "SRC", "preset": "nope"}, "preset"),
    ("importance", {"key": "KEY", "attention": "yes"}, "attention"),
    ("importance", {}, "key"),
    ("importance", {"key": "../etc"}, "key"),
    ("importance", {"key": "ffff0000"}, "key"),
    ("branch", {"key": "KEY", "step": 99}, "step"),
    ("branch", {"key": "KEY", "step": 0}, "step"),  # steps are numbered 1..S
    ("branch", {"key": "KEY", "step": 1, "samples": 65}, "samples"),
    ("branch", {"key": "KEY", "step": 1, "mode": "swap"}, "mode"),
    ("branch", {"key": "KEY", "step": 1, "mode": "edit"}, "text"),
    ("branch", {"key": "KEY", "step": 1, "regenerate": True}, "regenerate"),
    ("surface", {"key": "KEY", "layer": 0, "grid": 2}, "grid"),
    ("surface", {"key": "KEY", "layer": 99}, "layer"),
    ("surface", {"key": "KEY", "layer": 0, "span": -1.0}, "span"),
    ("landscape", {"key": "KEY", "grid": 42}, "grid"),
    ("landscape", {"key": "KEY", "seed": 1.5}, "seed"),
    ("exact", {"key": "KEY", "layer": 1}, "layer"),
    ("exact_landscape", {"key": "KEY", "grid": 1}, "grid"),
    ("export_images", {"key": "KEY", "formats": ["gif"]}, "formats"),
    ("export_images", {"key": "KEY", "formats": []}, "formats"),
    ("export_images", {"key": "KEY", "scale": 0}, "scale"),
    ("nope", {}, "nope"),
]


@pytest.mark.parametrize(("kind", "params", "field"), BAD, ids=[f"{k}-{f}" for k, _, f in BAD])
def test_bad_params_are_refused_at_submit_in_one_line_naming_the_field(run_copy, tmp_path, kind, params, field):
    store, key = run_copy
    src = tmp_path / "q.jsonl"
    src.write_text('{"question": "q"}\n')
    params = json.loads(json.dumps(params).replace('"KEY"', json.dumps(key)).replace('"SRC"', json.dumps(str(src))))
    if kind == "surface" and params.get("layer") == 0:
        params["layer"] = store.open(key).proxy_layers[0]
    with pytest.raises(InputError) as info:
        submit(store, kind, params)
    message = str(info.value)
    assert "\n" not in message and field in message and (kind in message or kind == "run")
    assert open_queue(store).list() == [], "nothing was queued"


def test_every_kind_is_listed_once_with_typed_frozen_params():
    import dataclasses

    from backend.jobs import BUILTIN_KINDS

    names = [k.name for k in BUILTIN_KINDS]
    assert names == [
        "run", "batch", "importance", "branch", "surface", "landscape", "exact", "exact_landscape", "lens_train",
        "lens_grid", "export_images",
    ]  # fmt: skip
    for kind in BUILTIN_KINDS:
        assert dataclasses.is_dataclass(kind.params) and kind.params.__dataclass_params__.frozen, kind.name


def test_the_queue_imports_no_kind_and_no_torch():
    code = (
        "import sys; import backend.jobs.queue, backend.jobs.params; "
        "bad = [m for m in sys.modules if m.startswith('backend.jobs.kinds') or m in ('torch', 'backend.jobs.registry')]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_a_queue_without_kinds_reads_but_refuses_to_submit(store):
    from backend.jobs.queue import JobQueue

    queue = JobQueue(store)
    assert queue.list() == []
    with pytest.raises(InputError, match="without job kinds"):
        queue.submit("run", {"question": "q"})


# ---------------------------------------------------------------------------- cancel
@pytest.mark.parametrize(
    ("kind", "params", "stage"),
    [("importance", {"attention": False}, "ablate"), ("landscape", {"grid": 3, "span": 0.5}, "landscape")],
)
def test_cancel_of_a_running_job_stops_it_before_anything_is_stored(run_copy, provided, kind, params, stage):
    from backend.analysis.importance.run import load_importance
    from backend.analysis.landscapes.surfaces import load_random_landscape

    store, key = run_copy
    queue = open_queue(store)
    job_id = submit(store, kind, {"key": key, **params})
    seen: list[tuple[int, int]] = []

    def cancel_when_the_stage_starts(st: str, done: int, total: int) -> None:
        """The user presses Cancel once the model is loaded and the work has begun."""
        if st == stage:
            seen.append((done, total))
            queue.cancel(job_id)

    job = run_here(store, job_id, progress=cancel_when_the_stage_starts)
    assert job.state == "cancelled" and job.resumable
    assert seen, f"the {stage} stage reported progress"
    run = store.open(key)
    assert load_importance(run, store) is None and load_random_landscape(run, 3, 0.5, 0, store) is None


def test_a_bug_on_one_batch_line_never_aborts_the_file(store, tmp_path, monkeypatch):
    """Line 2 hits an unexpected exception (a bug), line 4 a user error; lines 1 and 3 still
    run, and each failure is one message naming the file and line (moved from the app tests:
    an import is a batch job)."""
    import backend.pipeline.run

    calls = []

    class Outcome:
        def __init__(self, key):
            self.key, self.cached, self.warnings = key, True, []

    def fake_run_question(req, store, loaded=None, progress=None, force=False):
        calls.append(req.label)
        if req.label == "q2":
            raise KeyError("boom")
        if req.label == "q4":
            raise InputError("question too long")
        return Outcome(req.label)

    monkeypatch.setattr(backend.pipeline.run, "run_question", fake_run_question)
    src = tmp_path / "q.jsonl"
    rows = [
        {"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1), "trajectory": "t"} for i in (1, 2, 3, 4)
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = run_here(store, submit(store, "batch", {"source": str(src), "template": {"model": "m"}}))
    assert job.state == "finished" and calls == ["q1", "q2", "q3", "q4"] and job.results == ["q1", "q3"]
    assert any(m.startswith(f"{src}:2") and "KeyError" in m for m in job.messages), job.messages
    assert any(m.startswith(f"{src}:4") and "question too long" in m for m in job.messages)
