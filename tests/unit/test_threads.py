"""Torch threads from the cores really available (issue 15 item 2)."""

from __future__ import annotations

import os

import pytest
import torch

from backend.engine import threads
from backend.errors import InputError


def cgroup(tmp_path, text):
    (tmp_path / "cpu.max").write_text(text)
    return tmp_path


def test_cores_from_affinity_capped_by_the_cgroup_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.delenv(threads.ENV_THREADS, raising=False)
    assert threads.available_cores(cgroup(tmp_path, "max 100000\n")) == 8  # no quota
    assert threads.available_cores(cgroup(tmp_path, "150000 100000\n")) == 2  # 1.5 cores -> 2
    assert threads.available_cores(cgroup(tmp_path, "50000 100000\n")) == 1
    assert threads.available_cores(cgroup(tmp_path, "garbage\n")) == 8  # unreadable quota: ignored
    assert threads.available_cores(tmp_path / "absent") == 8
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert threads.available_cores(cgroup(tmp_path, "400000 100000\n")) == 1  # affinity wins


def test_cores_split_between_workers_and_env_override(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.delenv(threads.ENV_THREADS, raising=False)
    root = cgroup(tmp_path, "max 100000\n")
    assert threads.threads_for(share=2, cgroup_root=root) == 4
    assert threads.threads_for(share=3, cgroup_root=root) == 2
    assert threads.threads_for(share=16, cgroup_root=root) == 1
    assert threads.threads_for(at_most=1, cgroup_root=root) == 1  # a Ray actor with num_cpus=1
    monkeypatch.setenv(threads.ENV_THREADS, "3")
    assert threads.threads_for(share=8, cgroup_root=root) == 3
    for bad in ("0", "-2", "two"):
        monkeypatch.setenv(threads.ENV_THREADS, bad)
        with pytest.raises(InputError, match="RAML_TORCH_THREADS"):
            threads.threads_for(cgroup_root=root)


def test_configure_sets_torch_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(threads.ENV_THREADS, "1")
        assert threads.configure_torch_threads() == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_cli_entry_configures_threads(tmp_path, monkeypatch):
    """Threads are set just before a job runs here, after every flag was checked: listing and a
    refused flag leave torch alone (its import costs seconds of start-up)."""
    import backend.jobs
    from backend import cli

    calls = []
    monkeypatch.setattr(threads, "configure_torch_threads", lambda *a, **k: calls.append("threads") or 1)
    assert cli.main(["--cache-dir", str(tmp_path), "ls"]) == 0
    assert cli.main(["--cache-dir", str(tmp_path), "run", "--question", "q", "--temperature", "nan"]) == 2
    assert calls == []

    class Finished:
        state, value = "finished", None

    monkeypatch.setattr(backend.jobs, "run_here", lambda *a, **k: calls.append("job") or Finished())
    monkeypatch.setattr(backend.jobs, "submit", lambda *a, **k: 1)
    from backend.commands.common import run_job

    args = type("Args", (), {"cache_dir": str(tmp_path), "detach": False, "verbose": True})()
    run_job(args, "importance", {"key": "0" * 32})
    assert calls == ["threads", "job"]
    run_job(args, "export_images", {"key": "0" * 32}, model=False)  # no model: torch left alone
    assert calls == ["threads", "job", "job"]


# ----------------------------------------------------------------------------- issue 29
@pytest.mark.parametrize(
    "cores, quota, load, running, override, at_most, want",
    [
        (2, None, 0.0, 1, None, None, 2),  # idle machine: every core
        (2, None, 0.3, 1, None, None, 2),  # the load is recorded, never a reason to give threads up:
        (2, None, 0.6, 1, None, None, 2),  # the kernel shares cores per thread (docs/threads.md)
        (2, None, 1.0, 1, None, None, 2),  # a burner on one core
        (2, None, 2.0, 1, None, None, 2),  # a foreign torch on both cores
        (2, None, 4.0, 1, None, None, 2),  # four burners
        (8, None, 3.2, 1, None, None, 8),
        (8, 1.5, 0.0, 1, None, None, 2),  # the cgroup quota caps the affinity (rounded up)
        (8, 1.5, 1.2, 1, None, None, 2),
        (8, None, 0.0, 2, None, None, 4),  # two jobs of the queue split the cores
        (8, None, 0.0, 3, None, None, 2),
        (8, None, 5.0, 2, None, None, 4),  # the share, whatever the load
        (2, None, 0.0, 16, None, None, 1),  # never below one
        (8, None, 0.0, 1, None, 1, 1),  # a Ray actor that reserved one CPU
        (2, None, 2.0, 4, "3", None, 3),  # the override wins over everything
        (8, None, 0.0, 1, " 6 ", None, 6),
    ],
)
def test_thread_choice_is_a_pure_function_of_cores_quota_load_and_jobs(
    cores, quota, load, running, override, at_most, want
):
    assert threads.choose_threads(cores, quota, load, running, override, at_most) == want


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_a_bad_override_is_refused_in_one_line(bad):
    with pytest.raises(InputError, match=r"RAML_TORCH_THREADS=.* is not a whole number >= 1"):
        threads.choose_threads(2, override=bad)


def test_wait_policy_is_set_unless_the_environment_names_one():
    env: dict[str, str] = {}
    assert threads.set_wait_policy(env, modules={}) == "PASSIVE" and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": " "}  # empty: libgomp would spin, so it counts as unset
    assert threads.set_wait_policy(env, modules={}) == "PASSIVE" and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "active"}
    assert threads.set_wait_policy(env, modules={}) == "ACTIVE" and env["OMP_WAIT_POLICY"] == "active"
    env = {}
    late = threads.set_wait_policy(env, modules={"torch": object()})
    assert late.startswith("default") and "torch was imported before backend" in late
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}  # subprocesses still get it


def test_cpu_ticks_read_only_the_cpus_of_the_affinity_mask(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(
        "cpu  300 0 100 500 100 0 0 0 0 0\ncpu0 100 0 50 200 50 0 0 0 0 0\ncpu1 200 0 50 300 50 0 0 0 0 0\nintr 12345\n"
    )
    assert threads._cpu_ticks({0}, stat) == (150, 400)  # busy = user + system; idle + iowait not
    assert threads._cpu_ticks(None, stat) == (400, 1000)
    assert threads._cpu_ticks({0}, tmp_path / "absent") is None


def test_machine_load_is_a_number_of_other_processes_cores():
    load = threads.machine_load(window_s=0.05)
    assert 0.0 <= load <= len(os.sched_getaffinity(0))


def test_the_choice_is_recorded_for_the_run_meta(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(threads.ENV_THREADS, "1")
        threads.configure_torch_threads(measure_load=True, running_jobs=2)
        settings = threads.compute_settings()
        assert settings["torch_threads"] == 1 == torch.get_num_threads()
        assert settings["chosen_from"] == {
            "cores": threads._affinity_cores(),
            "quota": threads._cgroup_quota_cores(),
            "load": 0.0,  # not measured: the override decides
            "running_jobs": 2,
            "override": "1",
        }
        assert settings["omp_wait_policy"] == threads.wait_policy()
    finally:
        torch.set_num_threads(before)
