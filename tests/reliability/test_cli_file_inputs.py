"""Unbounded file inputs (issue 27 item 8): every file a command reads is a regular file of
bounded size, checked before it is opened and before any weights load. /dev/zero, a FIFO and a
10 MB edit are one line each with exit code 2; no message suggests a flag the command lacks."""

from __future__ import annotations

import os

import pytest
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY

from backend import cli
from backend.engine import provider
from backend.errors import ContextTooLongError
from backend.pipeline import branches
from backend.pipeline.run import RunRequest, run_question
from backend.store.runs import RunStore


@pytest.fixture()
def parent(tmp_path, tiny_model_dir):
    store = RunStore(tmp_path / "cache")
    req = RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, model=tiny_model_dir)
    return store, run_question(req, store).key


@pytest.fixture()
def no_weights(monkeypatch):
    """Any weight load fails the test: the refusals must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the input was refused")

    monkeypatch.setattr(provider, "provide", refuse)
    monkeypatch.setattr(provider, "provide_for_run", refuse)


@pytest.fixture()
def hostile_files(tmp_path):
    fifo = tmp_path / "edit.fifo"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes: never opened
    big = tmp_path / "big.txt"
    big.write_bytes(b"She has 10 apples. " * (10 * 1024 * 1024 // 19 + 1))  # 10 MB of text
    return {
        "/dev/zero": ("/dev/zero", "not a regular file (a device)"),
        "fifo": (str(fifo), "(a pipe)"),
        "10 MB": (str(big), "over the 1 MB limit (--max-edit-mb to raise it)"),
    }


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("case", ["/dev/zero", "fifo", "10 MB"])
def test_branch_edit_file_is_checked_first(parent, hostile_files, no_weights, capsys, case):
    store, key = parent
    path, fragment = hostile_files[case]
    argv = ["--cache-dir", str(store.root), "branch", key, "--step", "1", "--edit-file", path]
    assert cli.main(argv) == cli.EXIT_INPUT
    err = one_line(capsys)
    assert fragment in err and "--truncate" not in err
    assert store.children(key) == []


def test_an_edit_over_the_context_is_refused_before_the_weights(parent, tmp_path, no_weights, capsys):
    store, key = parent
    edit = tmp_path / "long.txt"
    edit.write_text("She has 10 apples, and then some more apples. " * 8000)  # ~370 KB: under the byte cap
    argv = ["--cache-dir", str(store.root), "branch", key, "--step", "1", "--edit-file", str(edit)]
    assert cli.main(argv) == cli.EXIT_INPUT
    err = one_line(capsys)
    assert "edited trajectory" in err and "shorten the edited step" in err and "--truncate" not in err
    with pytest.raises(ContextTooLongError, match="shorten the edited step"):  # the job's path (and the app's)
        branches.edit(store, key, 1, edit.read_text())


@pytest.mark.parametrize("case", ["/dev/zero", "fifo"])
def test_other_file_inputs_refuse_devices_and_pipes(tmp_path, hostile_files, capsys, case):
    path, _ = hostile_files[case]
    cache = str(tmp_path / "cache")
    for argv, fragment in (
        (["run", "--question", "q", "--trajectory-file", path], "trajectory file"),
        (["batch", path], "dataset"),
        (["stats", path], "question file"),
    ):
        assert cli.main(["--cache-dir", cache, *argv]) == cli.EXIT_INPUT, argv
        err = one_line(capsys)
        assert fragment in err and "not a regular file" in err, err
