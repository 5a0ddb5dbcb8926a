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
