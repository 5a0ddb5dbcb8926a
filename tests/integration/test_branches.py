"""Branches are runs (issue 13): linked both ways in meta and index, surviving a restart (and an
index rebuilt from the run folders), resampled with recorded seeds, edited teacher-forced, and
`rm` of a parent asks before orphaning its children."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY

from backend.cli import main
from backend.engine.trajectory import GenerationSettings
from backend.pipeline import branches as branching
from backend.pipeline.run import RunRequest, run_question
from backend.store.runs import RunStore


@pytest.fixture()
def parent(tmp_path, tiny_model_dir):
    store = RunStore(tmp_path / "cache")
    req = RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, model=tiny_model_dir)
    return store, run_question(req, store).key


def test_branches_are_linked_both_ways_and_survive_a_restart(parent, capsys):
    store, key = parent
    run = store.open(key)
    settings = GenerationSettings(max_new_tokens=6, temperature=1.0, top_p=0.9, seed=5)
    resampled = branching.resample(store, key, 2, 2, settings=settings)
    edited = branching.edit(store, key, 3, "So she has 9 apples. ")
    children = [o.key for o in resampled] + [edited.key]
    assert len(set(children)) == 3 and key not in children

    for i, outcome in enumerate(resampled):
        meta = store.open(outcome.key).meta
        assert (meta["parent"], meta["branch_at"]) == (key, 2)
        assert meta["branch"]["generation"] == {"max_new_tokens": 6, "temperature": 1.0, "top_p": 0.9, "seed": 5 + i}
        assert meta["trajectory"].startswith(branching.prefix_text(run, 2))  # steps before k are kept
    edited_run = store.open(edited.key)
    later = "".join(run.steps["text"].iloc[4:])
    assert edited_run.meta["trajectory"] == branching.prefix_text(run, 3) + "So she has 9 apples. " + later
    assert edited_run.meta["branch"]["kind"] == "edit"

    reopened = RunStore(store.root)  # a restart: a new store object over the same folder
    assert sorted(reopened.children(key)) == sorted(children)
    store.index_path.unlink()  # even an index rebuilt from the run folders keeps the links
    rebuilt = RunStore(store.root)
    rebuilt.list_runs()
    assert sorted(rebuilt.children(key)) == sorted(children)
    assert {n["key"]: n["branch_at"] for n in branching.tree(rebuilt, key)} == dict.fromkeys(children[:2], 2) | {
        edited.key: 3
    }

    assert main(["--cache-dir", str(store.root), "show", key, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert sorted(n["key"] for n in shown["branches"]["children"]) == sorted(children)
    assert [r["step"] for r in shown["branches"]["counterfactual"]] == [2]
    assert shown["importance"] is None  # not computed yet
    assert main(["--cache-dir", str(store.root), "show", edited.key, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["branches"]["parent"] == key


def test_rm_of_a_parent_asks_before_orphaning(parent, tmp_path, capsys, monkeypatch):
    store, key = parent
    edit_file = tmp_path / "step.txt"
    edit_file.write_text("She has 10 apples. ")
    assert main(["--cache-dir", str(store.root), "branch", key, "--step", "1", "--edit-file", str(edit_file)]) == 0
    child = capsys.readouterr().out.strip().splitlines()[-1]
    assert store.open(child).meta["parent"] == key

    # no terminal (pytest's stdin): refuse with one line, delete nothing
    assert main(["--cache-dir", str(store.root), "rm", key]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--yes" in err and "orphaned" in err
    assert store.has(key)

    # at a terminal: asked, and "n" keeps it
    monkeypatch.setattr(sys, "stdin", type("Tty", (), {"isatty": staticmethod(lambda: True)})())
    asked = []
    with pytest.raises(branching.OrphanError):
        branching.confirm_orphaning(store, [key], yes=False, ask=lambda q: asked.append(q) or "n")
    assert asked and "1 branch run(s)" in asked[0]
    branching.confirm_orphaning(store, [key, child], yes=False, ask=lambda q: "n")  # deleting both: no orphan

    assert main(["--cache-dir", str(store.root), "rm", "--yes", key]) == 0
    assert not store.has(key) and store.has(child)


def test_branch_limits_are_checked_before_any_model_work(parent, capsys):
    store, key = parent
    for args, fragment in [
        (["--step", "99", "--samples", "1"], "--step 99"),
        (["--step", "1", "--samples", "0"], "--samples 0"),
        (["--step", "1", "--samples", "2", "--temperature", "0"], "greedy"),
        (["--step", "1", "--samples", "1", "--top-p", "0"], "--top-p"),
    ]:
        assert main(["--cache-dir", str(store.root), "branch", key, *args]) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and len(err.splitlines()) == 1
    assert store.children(key) == []
