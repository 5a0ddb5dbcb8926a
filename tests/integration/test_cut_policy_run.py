"""The cut-point policy end to end on the tiny model (issue 23): a ``run`` job with ``cuts:
auto`` over a budget its scoring cannot fit gets a stride chosen before any work (every step
boundary scored), and the run's meta and ``raml show --json`` record the policy."""

from __future__ import annotations

from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY

from backend.commands.show import show_payload
from backend.jobs import open_queue, request_params
from backend.pipeline.run import RunRequest


def _params(model: str, cuts: str, budget: float | None) -> dict:
    req = RunRequest(
        question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, model=model, cuts=cuts, cut_budget_s=budget
    )
    return request_params(req)


def test_auto_over_budget_scores_a_stride_with_every_boundary_and_meta_records_it(store, provided):
    queue = open_queue(store)
    job_id = queue.submit("run", _params(provided.name, "auto", 0.01))
    queued = queue.get(job_id)
    chosen = queued.params["cuts"]
    assert chosen.startswith("stride:") or chosen == "steps"  # decided at submit, before any work
    assert queued.plan["cut_policy"]["chosen"] == chosen and queued.plan["notes"][0].startswith("cuts:")
    job = queue.run_next()
    assert job.state == "finished", job.error
    run = store.open(job.results[0])
    policy = run.cut_policy
    assert policy["requested"] == "auto" and policy["chosen"] == chosen == run.cuts and policy["budget_s"] == 0.01
    assert policy["estimate_s"] > 0 and policy["estimate_all_s"] >= policy["estimate_s"]
    boundaries = set(run.steps["start"]) | set(run.steps["end"])
    assert boundaries <= set(run.tokens["cut"]) and len(run.tokens) < run.n_tokens + 1
    assert show_payload(run)["cut_policy"] == policy and show_payload(run)["cuts"] == chosen


def test_explicit_all_is_honoured_over_the_budget_and_recorded(store, provided):
    queue = open_queue(store)
    queue.submit("run", _params(provided.name, "all", 0.01))
    job = queue.run_next()
    run = store.open(job.results[0])
    assert run.cuts == "all" and len(run.tokens) == run.n_tokens + 1
    assert run.cut_policy["requested"] == "all" and run.cut_policy["budget_s"] is None


def test_a_batch_decides_auto_on_each_run_s_real_tokens(store, provided, tmp_path, learn_every_stage):
    import json

    source = tmp_path / "q.jsonl"
    line = {"id": "q1", "question": SAMPLE_QUESTION, "answer": "6", "trajectory": SAMPLE_TRAJECTORY}
    source.write_text(json.dumps(line) + "\n")
    queue = open_queue(store)
    template = {"model": provided.name, "cuts": "auto", "cut_budget_s": 0.01}
    queue.submit("batch", {"source": str(source), "template": template})
    job = queue.run_next()
    assert job.state == "finished", job.error
    run = store.open(job.results[0])
    assert run.cut_policy["requested"] == "auto" and run.cut_policy["n_tokens"] == run.n_tokens
    assert run.cuts == run.cut_policy["chosen"] != "all"
    # the batch's computed run taught the scoring rate from its own engine timings
    assert queue.samples(provided.fingerprint, job.device, "analyze")
