"""Thought Anchors' rollout layout (issue 21 item 1): a problem folder with chunk_<k>/solutions.json
imports as a base run whose steps are the chunks of chunks.json, and its rollouts as branches of
it at step k, so counterfactual importance comes from their rollouts with no resampling."""

from __future__ import annotations

import json

from dataset_layouts import write_thought_anchors_rollouts

from backend.io.fields import FieldMap
from backend.io.readers import read_questions

THINKING = (
    "Okay, so I need the coefficient of a^2b^2 in (a+b)^4. The binomial theorem gives the term C(4,2) a^2 b^2. "
    "Wait, let me compute that: 4!/(2!2!) = 24/4 = 6.\n\nSo the coefficient is 6."
)
ROLLOUTS = {
    0: [
        " Let me expand (a+b)^4 fully. The middle term is 6a^2b^2.\n</think>\n\nThe answer is $\\boxed{6}$.",
        " Hmm, maybe it is 4. Yes, 4.\n</think>\n\n$\\boxed{4}$",
    ],
    1: [
        " The term is C(4,2) = 6. Done.\n</think>\n\n$\\boxed{6}$",
        " C(4,2) is 4 choose 2, which is 6.\n</think>\n\n$\\boxed{6}$",
    ],
    2: [" So it is 6 indeed.\n</think>\n\n$\\boxed{6}$", " So it is 6.\n</think>\n\n$\\boxed{6}$"],
}


def _problem(tmp_path):
    root = write_thought_anchors_rollouts(tmp_path / "math_rollouts", THINKING, "6", ROLLOUTS)
    return root, next(root.rglob("problem_2238"))


def test_rollouts_are_records_that_branch_the_base(tmp_path):
    root, folder = _problem(tmp_path)
    records, errors = read_questions(root, FieldMap.build("thought-anchors"))
    assert errors == []
    base, *rollouts = records
    assert base.segmentation == "thought-anchors" and base.source["n_chunks"] == 4
    assert [(r.branch["branch_at"], r.id.rsplit("/", 1)[-1]) for r in rollouts] == [
        (1, "chunk_0#0"), (1, "chunk_0#1"), (2, "chunk_1#0"), (2, "chunk_1#1"), (3, "chunk_2#0"), (3, "chunk_2#1"),
    ]  # fmt: skip
    assert all(r.branch["of"] == base.id and r.branch["kind"] == "resample" for r in rollouts)
    chunks = json.loads((folder / "chunks.json").read_text())["chunks"]
    entry = json.loads((folder / "chunk_2" / "solutions.json").read_text())[0]
    assert rollouts[4].trajectory == entry["prefix_without_chunk"] + entry["rollout"]  # what their model saw and wrote
    assert entry["prefix_without_chunk"] == " ".join(chunks[:2])
    assert rollouts[1].source == {
        "format": "thought-anchors-rollout", "problem": base.id, "chunk": 0, "rollout": 1, "answer": "4",
        "is_correct": False,
    }  # fmt: skip


def test_a_rollout_missing_a_field_is_one_line_and_errors_are_skipped(tmp_path):
    root, folder = _problem(tmp_path)
    path = folder / "chunk_1" / "solutions.json"
    entries = json.loads(path.read_text())
    del entries[0]["rollout"]
    entries.append({"error": "API error: 429"})  # a failed generation: left out, as their analysis does
    path.write_text(json.dumps(entries))
    records, errors = read_questions(root)
    assert len(records) == 1 + 5
    assert [str(e) for e in errors] == [f"{path}, rollout 0: field 'rollout': missing"]
    (folder / "chunks.json").unlink()
    records, errors = read_questions(root)
    assert records == [] and [str(e) for e in errors] == [
        f"{folder}: has chunk_<k>/solutions.json rollouts but no chunks.json"
    ]


def test_batch_imports_rollouts_as_branches_and_counterfactual_uses_them(tmp_path, tiny_model_dir, capsys):
    from backend.pipeline.branches import counterfactual, tree
    from backend.pipeline.run import RunRequest
    from backend.scale.batch import BatchSpec, run_batch
    from backend.store.runs import RunStore

    root, folder = _problem(tmp_path)
    store = RunStore(tmp_path / "cache")
    template = RunRequest(question="", model=tiny_model_dir, cuts="steps")  # sentences: the rollouts override it
    report = run_batch(BatchSpec(root, FieldMap.build("thought-anchors"), show_progress=False), template, store)
    assert report.error_lines() == [] and report.computed == 7
    base_key = report.results[0].key
    base = store.open(base_key)
    chunks = json.loads((folder / "chunks.json").read_text())["chunks"]
    assert [" ".join(t.split()) for t in base.steps["text"]] == chunks  # their chunking exactly
    assert base.segmentation == "thought-anchors" and base.origin["n_chunks"] == 4
    children = tree(store, base_key)
    assert sorted(c["branch_at"] for c in children) == [1, 1, 2, 2, 3, 3]  # their chunk k is step k + 1
    assert all(c["kind"] == "resample" for c in children)
    branch = store.open(children[0]["key"])
    assert branch.parent == base_key and branch.origin["format"] == "thought-anchors-rollout"
    rows = {r["step"]: r for r in counterfactual(store, base_key)}
    assert sorted(rows) == [1, 2, 3] and rows[1]["n_resampled"] == 2
    assert rows[1]["accuracy_delta"] == 0.5  # kept (the chunk-1 rollouts, both correct) minus resampled (one of two)
    assert rows[1]["answer_kl"] > 0 and rows[2]["answer_kl"] == 0
    assert rows[3]["kept_is_parent"] is True
    again = run_batch(BatchSpec(root, FieldMap.build("thought-anchors"), show_progress=False), template, store)
    assert again.summary() == "0 computed, 7 cached, 0 failed"
    _agreement_of_the_three_methods(store, base_key, capsys)


def _agreement_of_the_three_methods(store, base_key, capsys):
    """Item 3 on real cached data: ablation and receiver-head attention of the base run against the
    counterfactual importance of its imported rollouts; in ``raml stats --json`` too."""
    from scipy.stats import kendalltau, spearmanr

    from backend.analysis.importance.run import compute_run_importance
    from backend.cli import main
    from backend.pipeline.agreement import run_agreement, run_vectors

    base = store.open(base_key)
    compute_run_importance(base, store=store, attention=True)
    rows = {(r["a"], r["b"]): r for r in run_agreement(store, base)}
    assert list(rows) == [("ablation", "attention"), ("ablation", "resampling"), ("attention", "resampling")]
    assert rows[("ablation", "attention")]["n"] == 4 and rows[("ablation", "resampling")]["n"] == 3
    vectors = run_vectors(store, base)
    pair = rows[("ablation", "attention")]
    if pair["spearman"] is not None:
        assert pair["spearman"] == round(spearmanr(vectors["ablation"], vectors["attention"]).statistic, 6)
        assert pair["kendall"] == round(kendalltau(vectors["ablation"], vectors["attention"]).statistic, 6)
    assert main(["--cache-dir", str(store.root), "stats", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["importance_agreement"]
    assert report["runs"] == 1  # the six branches are not questions of the dataset
    assert [(p["a"], p["b"]) for p in report["pooled"]] == list(rows)
    assert report["pooled"][0]["spearman"] == pair["spearman"]


def test_rollouts_fail_in_one_line_when_steps_are_not_the_chunks(tmp_path, tiny_model_dir):
    from backend.pipeline.run import RunRequest
    from backend.scale.batch import BatchSpec, run_batch
    from backend.store.runs import RunStore

    root, folder = _problem(tmp_path)
    listed = json.loads((folder / "chunks.json").read_text())
    listed["chunks"] = listed["chunks"][:2] + [" ".join(listed["chunks"][2:])]  # another split than the run's
    (folder / "chunks.json").write_text(json.dumps(listed))
    store = RunStore(tmp_path / "cache")
    template = RunRequest(question="", model=tiny_model_dir, cuts="steps")
    report = run_batch(BatchSpec(root, FieldMap.build("thought-anchors"), show_progress=False), template, store)
    lines = report.error_lines()
    assert report.computed == 1 and len(lines) == 6
    assert (
        "rollout not imported: the steps of its base run" in lines[0]
        and "are not the 3 chunks of chunks.json" in lines[0]
    )
    assert lines[0].startswith(f"{folder / 'chunk_0' / 'solutions.json'}, rollout 0: ")
