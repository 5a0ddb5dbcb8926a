"""What the CLI prints (issue 26): progress of model commands on stderr (silent with --quiet),
``raml exact``'s figures formatted, ``jobs ls`` with times, stage and result keys."""

from __future__ import annotations

import re
import time

import pandas as pd
import pytest

import backend.jobs
from backend import cli
from backend.commands import jobs as jobs_command
from backend.commands.common import run_job
from backend.commands.exact import format_report
from backend.jobs.queue import Job

RAW_FLOAT = re.compile(r"\d\.\d{6,}")  # what an unformatted float looks like


def test_exact_report_is_formatted():
    meta = {
        "P": 41,
        "m": 13,
        "K": 6,
        "n_layers": 4,
        "max_rank": 13,
        "worst_condition": 1234.56789,
        "max_abs_error": 3.14159e-06,
        "fidelity": {
            "initial_loss": 4.123456789,
            "final_loss": 1.987654321,
            "descent": 2.135802468,
            "exact": {"loss": 1.98765432, "fraction": 0.999999123},
            "exact_top_k": {"1": {"layers": [3], "loss": 3.2, "fraction": 0.4123456}},
            "single_layer_proxy": {"2": {"loss": 4.0, "fraction": 0.0571234}, "3": {"loss": 4.1, "fraction": None}},
        },
    }
    table = pd.DataFrame({"boundary": [0, 1], "cut": [0, 7], "target_loss": [4.123456789, 1.987654321]})
    text = "\n".join(format_report("ab" * 16, meta, table))
    assert not RAW_FLOAT.search(text), text
    assert "{" not in text and "}" not in text  # no dict printed
    for fragment in ("100.0%", "exact, top-1 layers (3)", "41.2%", "5.7%", "n/a (no descent)", "3.14e-06", "4.123"):
        assert fragment in text, fragment


def test_jobs_ls_shows_times_stage_and_result_keys(monkeypatch, capsys, tmp_path):
    now = time.time()
    key = "a7b71cee23ed" + "0" * 20
    listed = [
        Job(
            1,
            "run",
            {},
            "running",
            title="Run: Maya has 5 apples",
            stage="analyze",
            done=120,
            total=301,
            created=now - 200,
            started=now - 185,
        ),
        Job(
            2,
            "branch",
            {},
            "finished",
            title="Branch",
            created=now - 900,
            started=now - 880,
            finished=now - 700,
            results=[key],
        ),
        Job(3, "importance", {}, "queued", title="Importance", created=now - 5),
        Job(4, "exact", {}, "failed", created=now - 100, started=now - 99, finished=now - 98, error="no run x"),
    ]
    monkeypatch.setattr(jobs_command, "_queue", lambda args: type("Q", (), {"list": lambda self: listed})())
    monkeypatch.setattr(time, "time", lambda: now)  # "now" is fixed: elapsed times are exact
    assert cli.main(["--cache-dir", str(tmp_path), "jobs", "ls"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()[:1].isdigit()}
    assert "analyze 120/301" in rows["1"] and "3 min 05 s" in rows["1"]
    assert "-> a7b71cee23ed" in rows["2"] and "3 min 00 s" in rows["2"]
    assert re.search(r"\bqueued\b.*\d\d:\d\d:\d\d\s+-\s+-", rows["3"])  # queued at, not started
    assert "no run x" in rows["4"] and "1.0 s" in rows["4"]
    assert "queued" in out.splitlines()[0] and "elapsed" in out.splitlines()[0]


@pytest.mark.parametrize("quiet", [False, True])
def test_commands_that_run_a_job_show_progress_unless_quiet(monkeypatch, capsys, tmp_path, quiet):
    class Finished:
        state, value = "finished", None

    def fake_run_here(store, job_id, progress=None, reraise=False):
        for done in range(4):
            progress("analyze", done, 3)
        return Finished()

    monkeypatch.setattr(backend.jobs, "submit", lambda *a, **k: 1)
    monkeypatch.setattr(backend.jobs, "run_here", fake_run_here)
    args = type("Args", (), {"cache_dir": str(tmp_path), "detach": False, "verbose": True, "quiet": quiet})()
    run_job(args, "importance", {"key": "0" * 32}, model=False)
    err = capsys.readouterr().err
    assert ("analyze" in err) is (not quiet), err
