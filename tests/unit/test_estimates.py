"""The estimator as pure functions (backend.jobs.estimates): every stage summed, the load only
when the model is not in memory, a range from the spread of past rates, learning from a
finished job's stages (robust to an outlier), and the time left while a job runs, which says
"longer than estimated" with the stage instead of "~0 s left"."""

from __future__ import annotations

import pytest

from backend.jobs import estimates as E
from backend.pipeline.request import RunRequest


class FakeRates:
    """The queue's rate table, in memory (``record`` / ``samples``)."""

    def __init__(self):
        self.table: dict[tuple, list[float]] = {}

    def record(self, model, device, metric, value):
        self.table.setdefault((model, device, metric), []).append(float(value))
        self.table[(model, device, metric)] = self.table[(model, device, metric)][-E.WINDOW :]

    def samples(self, model, device, metric):
        return list(self.table.get((model, device, metric), []))


FP = "f" * 16


def test_stages_are_summed_and_the_load_counts_only_when_not_in_memory():
    stages = [("ablate", "ablate", 3000, "tokens"), ("attention", "attention", 600, "tokens")]
    cold = E.estimate_stages(None, FP, "cpu", stages, in_memory=False, needs_conversion=True)
    warm = E.estimate_stages(None, FP, "cpu", stages, in_memory=True)
    assert [s.name for s in cold.stages] == ["load", "ablate", "attention"]
    assert [s.name for s in warm.stages] == ["ablate", "attention"]
    assert cold.parts["load"] == E.DEFAULTS["load_convert"] and warm.parts["load"] == 0.0
    assert cold.seconds == pytest.approx(sum(s.seconds for s in cold.stages))
    assert warm.seconds == pytest.approx(3000 * E.DEFAULTS["ablate"] + 600 * E.DEFAULTS["attention"])
    assert cold.low < cold.seconds < cold.high  # a first guess is a wide range, and says so
    assert not cold.measured and "first guess" in cold.describe() and "–" in cold.describe()


def test_a_new_run_counts_load_generation_scoring_and_write():
    req = RunRequest(question="q", answer="6", trajectory=None)
    est = E.estimate_run(req, None, "cpu", model_state_=(FP, False, False))
    assert [s.name for s in est.stages] == ["load", "generate", "analyze", "write"]
    gen = est.stages[1]
    assert gen.work == req.generation.max_new_tokens and gen.seconds == pytest.approx(gen.work * E.DEFAULTS["generate"])
    imported = E.estimate_run(
        RunRequest(question="q", answer="6", trajectory="word " * 400), None, "cpu", model_state_=(FP, True, False)
    )
    assert [s.name for s in imported.stages] == ["analyze", "write"]  # no load (in memory), no generation
    assert imported.cut_policy["chosen"] == "all" and imported.notes and imported.notes[0].startswith("cuts:")
    longer = E.estimate_run(
        RunRequest(question="q", answer="6", trajectory="word " * 1600), None, "cpu", model_state_=(FP, True, False)
    )
    assert longer.parts["analyze"] > 4 * imported.parts["analyze"]  # n + C·m, and a longer context per token


def test_learning_moves_the_rate_and_an_outlier_barely_moves_it():
    rates = FakeRates()
    plan = E.estimate_stages(rates, FP, "cpu", [("analyze", "analyze", 1000, "tokens")], in_memory=False).to_json()
    first = E.Estimate.from_json(plan).seconds
    # the job took 2 s to load and 10 s for its 1,000 planned (1,250 actual) tokens
    learned = E.learn(rates, plan, {"load": 2.0, "analyze": 10.0, "start": 0.01}, {"analyze": 1250})
    assert dict(learned) == {"load": 2.0, "analyze": pytest.approx(10.0 / 1250)}
    again = E.estimate_stages(rates, FP, "cpu", [("analyze", "analyze", 1000, "tokens")], in_memory=False)
    assert again.measured and again.seconds == pytest.approx(2.0 + 1000 * 10.0 / 1250)
    assert again.seconds != pytest.approx(first)
    for _ in range(4):
        E.learn(rates, plan, {"load": 2.0, "analyze": 10.0}, {"analyze": 1000})
    E.learn(rates, plan, {"load": 2.0, "analyze": 500.0}, {"analyze": 1000})  # one job on a busy machine
    after = E.Rates(rates, FP, "cpu").rate("analyze")
    assert after.seconds == pytest.approx(0.01)  # the median of the last samples
    assert after.high <= 3 * after.seconds  # the outlier widens the range, clipped


def test_stages_that_did_not_run_or_are_too_short_teach_nothing():
    plan = E.estimate_stages(None, FP, "cpu", [("surface", "surface_point", 9, "points")], in_memory=False).to_json()
    assert E.learned_samples(plan, {}, {}) == []  # a cache hit: no stage ran
    assert E.learned_samples(plan, {"load": 0.01, "surface": 0.001}, {}) == []  # a model already in memory
    assert E.learned_samples(plan, {"surface": 4.5}, {}) == [("surface_point", 0.5)]
    assert E.learned_samples(plan, {"surface": 4.5}, {"surface": 0}) == []  # the kind said: no work done


def test_range_is_the_spread_of_past_rates():
    none = E.rate_from_samples([], 2.0)
    assert (none.seconds, none.low, none.high, none.n) == (2.0, 2.0 / 3, 6.0, 0)
    one = E.rate_from_samples([1.0], 2.0)
    assert one.seconds == 1.0 and one.low < 1.0 < one.high and one.n == 1
    many = E.rate_from_samples([1.0, 1.2, 0.8, 1.1, 0.9, 1.0], 2.0)
    assert 0.8 <= many.low < many.seconds < many.high <= 1.2
    est = E.Estimate([E.Stage("analyze", "analyze", 10, "tokens", 10.0, 8.0, 12.0, True)])
    assert est.range_text() == "≈ 10 s (8–12 s)"
    assert E.fmt_range(300, 240, 420) == "≈ 5.0 min (4.0–7.0 min)"
    assert E.fmt_range(60, 30, 180) == "≈ 60 s (30 s–3.0 min)"


def _plan() -> dict:
    stages = [
        E.Stage("load", "load", 1, "load", 10.0, 5.0, 20.0, True),
        E.Stage("generate", "generate", 100, "tokens", 20.0, 10.0, 40.0, True),
        E.Stage("analyze", "analyze", 1000, "tokens", 30.0, 20.0, 45.0, True),
    ]
    return E.Estimate(stages, FP).to_json()


def test_time_left_follows_the_stage_progress_and_the_plan_of_the_rest():
    plan = _plan()
    at_start = E.time_left(plan, "load", 0, 1, 2.0)
    assert at_start.seconds == pytest.approx(8.0 + 20.0 + 30.0) and not at_start.over
    # analysing, half done after 20 s: 20 s left from its own rate, the finished stages not counted
    half = E.time_left(plan, "analyze", 50, 100, 20.0, ["load", "generate"])
    assert half.seconds == pytest.approx(20.0) and not half.over
    assert half.low < half.seconds < half.high and half.text() == "~20 s left (16–25 s)"


def test_a_job_past_its_estimate_says_longer_than_estimated_with_its_stage():
    plan = _plan()
    # generation reports no progress: past its plan it is over, never "~0 s left"
    late = E.time_left(plan, "generate", 0, 100, 95.0, ["load"], stage_label="generating")
    assert late.over and late.stage == "generating"
    assert late.text().startswith("longer than estimated (generating)") and "0 s" not in late.text()
    # analysing much slower than planned: over, and the time its own progress predicts
    slow = E.time_left(plan, "analyze", 10, 100, 60.0, ["load", "generate"])
    assert slow.over and slow.seconds == pytest.approx(540.0) and "longer than estimated" in slow.text()
    # without a plan: the stage's rate, or nothing (never a made-up number)
    assert E.time_left(None, "analyze", 25, 100, 10.0).seconds == pytest.approx(30.0)
    assert E.time_left(None, "generate", 0, 0, 10.0).text() == ""


def test_estimate_round_trips_through_json():
    est = E.estimate_run(
        RunRequest(question="q", answer="6", trajectory="word " * 50), None, "cpu", model_state_=(FP, False, False)
    )
    back = E.Estimate.from_json(est.to_json())
    assert back.seconds == pytest.approx(est.seconds) and back.notes == est.notes
    assert [s.name for s in back.stages] == [s.name for s in est.stages]
    assert back.cut_policy == est.cut_policy and E.Estimate.from_json(None) is None


def test_derived_and_branch_plans_count_their_stages():
    bounds = list(range(0, 401, 20))
    shape = {"n": 400, "steps": 20, "boundaries": 21, "boundary_cuts": bounds, "m": 14, "layers": 4, "d_model": 64}
    assert E.ablation_tokens(400, bounds) == 400 + sum(400 - e for e in bounds[1:])
    (ablate,) = E.importance_stages(shape, attention=False, every_boundary=False)
    both = E.importance_stages(shape, attention=True, every_boundary=False)
    assert [s[0] for s in both] == ["ablate", "attention"] and both[0] == ablate
    every = E.importance_stages(shape, attention=True, every_boundary=True)
    assert every[0][2] > ablate[2] and every[1][2] > both[1][2]  # every boundary's probes cost more
    assert E.exact_stages(shape)[0][2] >= shape["boundaries"]


def test_the_jobs_panel_line_says_longer_than_estimated_never_zero_left():
    from app.jobs_panel import job_line
    from backend.jobs.queue import Job

    now = 1000.0
    running = Job(
        1,
        "run",
        {},
        "running",
        stage="generate",
        done=0,
        total=24,
        started=now - 100,
        plan=_plan(),
        stage_started=now - 90,
        stage_times={"load": 10.0},
        estimate_s=60.0,
    )
    line = job_line(running, now)
    assert "longer than estimated (generating)" in line and "0 s left" not in line
    on_time = Job(
        2,
        "run",
        {},
        "running",
        stage="analyze",
        done=50,
        total=100,
        started=now - 50,
        plan=_plan(),
        stage_started=now - 20,
        stage_times={"load": 10.0, "generate": 20.0},
        estimate_s=60.0,
    )
    assert "~20 s left (16–25 s)" in job_line(on_time, now)
    queued = Job(3, "run", {}, "queued", plan=_plan(), estimate_s=60.0)
    assert job_line(queued, now) == "queued · estimate ≈ 60 s (35 s–1.8 min)"
