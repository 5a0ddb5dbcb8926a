"""``batch --engine ray`` on a local Ray instance (2 CPUs) with the tiny model saved as a folder:
one task per (question, sample), a failing line reported without stopping the others, every
other run in the shared cache, and a rerun that answers everything from the cache."""

from __future__ import annotations

import json

import pytest

from backend.cli import main
from backend.scale import ray_engine as batch_ray
from backend.store.runs import RunStore

QUESTIONS = [
    "What is 12 + 30?",
    "A box holds 6 eggs. How many eggs are in 4 boxes?",
    "What is half of 90?",
    "Tom has 9 cards and gives away 4. How many are left?",
    "What is 7 times 8?",
    "What is 100 divided by 4?",
]
ANSWERS = ["42", "24", "45", "5", "56", "25"]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (the engine reuses a running one)."""
    ray = pytest.importorskip("ray")
    batch_ray.start_local(2, include_dashboard=False, log_to_driver=False)  # our own, never a cluster found here
    yield ray
    ray.shutdown()


def _keys(stdout: str) -> list[tuple[str, int, str]]:
    rows = [line.split("\t") for line in stdout.splitlines() if line.count("\t") == 2]
    return [(rid, int(sample), key) for rid, sample, key in rows]


@pytest.mark.ray
def test_ray_batch_6x2_with_a_failing_line_then_all_cached(tmp_path, tiny_model_dir, local_ray, capsys, monkeypatch):
    rows = [{"id": f"q{i}", "question": q, "answer": a} for i, (q, a) in enumerate(zip(QUESTIONS, ANSWERS))]
    rows.insert(3, {"id": "bad", "question": "What is 0 + 0?", "answer": "0", "trajectory": "<think> </think>"})
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cache = tmp_path / "shared-cache"
    argv = [
        "--cache-dir",
        str(cache),
        "batch",
        str(qfile),
        "--engine",
        "ray",
        "--samples",
        "2",
        "--model",
        tiny_model_dir,
        "--max-new-tokens",
        "10",
        "--quiet",
    ]

    # Set after Ray started, so only the workers' runtime environment can carry it (docs/threads.md).
    monkeypatch.setenv("RAML_TORCH_THREADS", "2")
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: {qfile}:4 (sample 0): the trajectory has no thinking text to analyze"
    ]
    assert "12 computed, 0 cached, 1 failed" in err
    keys = _keys(out)
    assert sorted((rid, s) for rid, s, _ in keys) == sorted((f"q{i}", s) for i in range(6) for s in range(2))
    store = RunStore(cache)
    assert set(store.list_runs()["key"]) == {key for _, _, key in keys}  # written by the workers
    for rid, sample, key in keys:
        meta = store.open(key).meta
        assert meta["label"] == rid and meta["generation"]["seed"] == sample
        assert meta["answer"] == ANSWERS[int(rid[1:])] and meta["correct"] in (True, False)
        compute = meta["compute"]  # each worker started with the wait policy and the driver's override
        assert compute["omp_wait_policy"] == "PASSIVE" and compute["torch_threads"] == 2
        assert compute["chosen_from"]["override"] == "2" and compute["chosen_from"]["at_most"] == 1

    # Rerun: every good item is answered from the cache on the driver; only the bad line runs again.
    submitted = []
    real_run_on_ray = batch_ray._run_on_ray

    def spy(args, pending, store, bar):
        submitted.extend(request.label for _, request in pending)
        yield from real_run_on_ray(args, pending, store, bar)

    monkeypatch.setattr(batch_ray, "_run_on_ray", spy)
    assert main(argv) == 1
    out2, err2 = capsys.readouterr()
    assert "0 computed, 12 cached, 1 failed" in err2
    assert sorted(_keys(out2)) == sorted(keys)
    assert submitted == ["bad"]


def test_worker_resources_follow_the_cluster(monkeypatch):
    """One GPU per worker when the cluster has GPUs, else one CPU; never more workers than items."""
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 2.0})
    assert batch_ray.worker_options(10) == (2, {"num_gpus": 1, "num_cpus": 1.0})
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert batch_ray.worker_options(10) == (2, {"num_cpus": 1.0})
    assert batch_ray.worker_options(1) == (1, {"num_cpus": 1.0})
    monkeypatch.setenv("RAML_RAY_CPUS_PER_WORKER", "4")
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0})
    assert batch_ray.worker_options(10) == (4, {"num_cpus": 4.0})


def test_a_local_start_that_timed_out_is_tried_again_and_other_errors_are_not(monkeypatch):
    import ray

    calls, shutdowns = [], []

    def init(**kwargs):
        calls.append(kwargs)
        if len(calls) < batch_ray.STARTUP_TRIES:
            raise Exception("The current node timed out during startup. This could happen because ...")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: shutdowns.append(1))
    batch_ray.start_local(2)
    assert len(calls) == batch_ray.STARTUP_TRIES and len(shutdowns) == batch_ray.STARTUP_TRIES - 1
    assert all(c["address"] == "local" and c["num_cpus"] == 2 for c in calls)  # never someone else's cluster

    def broken(**kwargs):
        calls.append(kwargs)
        raise ValueError("bad num_cpus")

    calls.clear()
    monkeypatch.setattr(ray, "init", broken)
    with pytest.raises(ValueError, match="bad num_cpus"):
        batch_ray.start_local(2)
    assert len(calls) == 1
    assert "cannot start or reach a local Ray instance: bad num_cpus" in str(_refused(monkeypatch))


def _refused(monkeypatch):
    import ray

    from backend.errors import RamlError

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # the module's instance may still be up
    monkeypatch.setattr(batch_ray, "usable_cpus", lambda: 2)
    try:
        batch_ray.connect(None)
    except RamlError as exc:
        return exc
    raise AssertionError("connect() did not refuse")
