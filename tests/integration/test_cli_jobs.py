"""The CLI submits the same job kinds as the app: by default it runs its job here and waits
(today's output and exit codes), with ``--detach`` it only queues it and ``raml jobs worker
--once`` runs it. Start-up stays light: ``--version``, ``ls`` and ``show`` import no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY

from backend import cli
from backend.jobs import open_queue
from backend.store.runs import RunStore

ROOT = Path(__file__).resolve().parents[2]


def _trajectory_file(tmp_path) -> str:
    path = tmp_path / "trace.txt"
    path.write_text(SAMPLE_TRAJECTORY)
    return str(path)


def test_run_waits_for_its_job_and_prints_the_key_last(tmp_path, provided, capsys):
    cache = tmp_path / "cache"
    argv = ["--cache-dir", str(cache), "run", "--question", SAMPLE_QUESTION, "--answer", "6"]
    argv += ["--trajectory-file", _trajectory_file(tmp_path), "--model", provided.name, "--quiet"]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    key = out.strip().splitlines()[-1]
    assert RunStore(cache).has(key) and "computed in" in err
    (job,) = open_queue(RunStore(cache)).list()
    assert job.kind == "run" and job.state == "finished" and job.results == [key]
    assert cli.main(argv) == 0 and "cache hit" in capsys.readouterr().err


def test_a_bad_option_is_refused_at_submit_with_exit_2_and_nothing_queued(tmp_path, provided, capsys):
    cache = tmp_path / "cache"
    argv = ["--cache-dir", str(cache), "run", "--question", "q", "--model", provided.name, "--segmentation", "tokens:0"]
    assert cli.main(argv) == cli.EXIT_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "tokens:0" in err[0]
    assert open_queue(RunStore(cache)).list() == []


def test_detach_only_queues_and_the_worker_runs_it(run_copy, provided, capsys):
    from backend.analysis.importance.run import load_importance

    store, key = run_copy
    assert cli.main(["--cache-dir", str(store.root), "importance", key, "--detach"]) == 0
    job_id = int(capsys.readouterr().out.strip().splitlines()[-1])
    queue = open_queue(store)
    assert queue.get(job_id).state == "queued" and queue.get(job_id).kind == "importance"
    assert load_importance(store.open(key), store) is None, "nothing ran yet"
    assert cli.main(["--cache-dir", str(store.root), "jobs", "worker", "--once"]) == 0
    assert f"job {job_id} finished" in capsys.readouterr().out
    assert queue.get(job_id).results == [key] and load_importance(store.open(key), store) is not None


def test_run_detach_prints_the_job_id_and_the_worker_stores_the_run(tmp_path, provided, capsys):
    cache = tmp_path / "cache"
    argv = ["--cache-dir", str(cache), "run", "--question", SAMPLE_QUESTION, "--answer", "6", "--detach"]
    argv += ["--trajectory-file", _trajectory_file(tmp_path), "--model", provided.name]
    assert cli.main(argv) == 0
    job_id = int(capsys.readouterr().out.strip().splitlines()[-1])
    store = RunStore(cache)
    assert store.list_runs().empty
    assert cli.main(["--cache-dir", str(cache), "jobs", "worker", "--once"]) == 0
    (key,) = open_queue(store).get(job_id).results
    assert store.has(key)


def test_importance_waits_and_prints_the_same_table(run_copy, provided, capsys):
    import json

    from backend.analysis.importance.run import compute_run_importance

    store, key = run_copy
    assert cli.main(["--cache-dir", str(store.root), "importance", key, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    direct = compute_run_importance(store.open(key), provided, store=store)
    assert printed["ablation"] == direct["ablation"] and printed["final_loss"] == direct["final_loss"]


def test_a_missing_run_is_the_stores_one_line_error(tmp_path, capsys):
    assert cli.main(["--cache-dir", str(tmp_path / "c"), "importance", "0" * 32, "--detach"]) == cli.EXIT_INPUT
    assert "no run 00000000000000000000000000000000" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["--version"], ["ls"], ["show", "KEY"]])
def test_light_commands_import_no_torch(run_copy, command):
    store, key = run_copy
    argv = ["--cache-dir", str(store.root), *[key if a == "KEY" else a for a in command]]
    code = (
        "import sys\nfrom backend.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'LIGHT')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "LIGHT", out.stderr[-1000:]
