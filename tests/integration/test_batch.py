"""``python -m backend batch`` with the local engine: JSONL and Parquet question sets, field
mappings, K samples, per-line failures that never stop the others, resuming from the cache,
and correctness stored in each run and in the index."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from backend.analysis.answers.extract import answers_match, extract_final_answer
from backend.cli import main
from backend.io.jsonl import QuestionRecord
from backend.scale.items import BatchItem, plan
from backend.store.runs import RunStore

TRAJECTORY = "<think>Two plus four is six. Wait, let me check: 2 + 4 = 6.</think> The answer is \\boxed{6}."


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _batch(cache: Path, file: Path, model: str, *extra: str) -> int:
    return main(
        ["--cache-dir", str(cache), "batch", str(file), "--model", model, "--max-new-tokens", "12", "--quiet", *extra]
    )


def _keys(stdout: str) -> list[tuple[str, int, str]]:
    rows = [line.split("\t") for line in stdout.splitlines() if line.count("\t") == 2]
    return [(rid, int(sample), key) for rid, sample, key in rows]


def test_plan_samples_limit_and_imported_trajectories_run_once():
    generated = QuestionRecord(1, "g", "Q?", "1")
    imported = QuestionRecord(2, "i", "Q2?", "2", trajectory="It is 2.")
    third = QuestionRecord(3, "t", "Q3?")
    items = plan([generated, imported, third], samples=3, limit=2)
    assert [(it.record.id, it.sample) for it in items] == [("g", 0), ("g", 1), ("g", 2), ("i", 0)]
    assert plan([generated], samples=0, limit=None) == [BatchItem(generated, 0)]


def test_local_batch_reports_bad_lines_stores_correctness_and_resumes(tmp_path, tiny_model_dir, capsys):
    qfile = _jsonl(
        tmp_path / "q.jsonl",
        [
            {"id": "right", "question": "What is 2 + 4?", "answer": "6", "trajectory": TRAJECTORY},
            {"id": "wrong", "question": "What is 3 + 4?", "answer": "7", "trajectory": TRAJECTORY},
            {"id": "self", "question": "What is 1 + 5?", "trajectory": TRAJECTORY},
            {"id": "gen", "question": "What is 10 - 5?", "answer": "5"},
            {"id": "bad-field", "question": "What is 1 + 1?", "answer": ""},
            {"id": "bad-run", "question": "What is 0 + 0?", "answer": "0", "trajectory": "<think>   </think> 0"},
        ],
    )
    cache = tmp_path / "cache"
    sampled = ("--temperature", "0.7")  # the tiny random model's greedy output is only newlines
    assert _batch(cache, qfile, tiny_model_dir, *sampled) == 1
    out, err = capsys.readouterr()
    err_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert err_lines == [
        f"error: {qfile}:5: field 'answer': is empty (leave it out to use the model's own answer)",
        f"error: {qfile}:6: the trajectory has no thinking text to analyze",
    ]
    assert "4 computed, 0 cached, 2 failed" in err
    keys = _keys(out)
    assert [rid for rid, _, _ in keys] == ["right", "wrong", "self", "gen"]

    store = RunStore(cache)
    meta = {rid: store.open(key).meta for rid, _, key in keys}
    assert meta["right"]["correct"] is True and meta["right"]["predicted_answer"] == "6"
    assert meta["wrong"]["correct"] is False
    assert meta["self"]["correct"] is None and meta["self"]["answer_source"] == "self" and meta["self"]["answer"] == "6"
    generated = meta["gen"]
    assert generated["trajectory_source"] == "generated"
    assert generated["correct"] == answers_match(extract_final_answer(generated["response"]), "5")
    index = store.list_runs().set_index("key")
    for rid, _, key in keys:  # the library index agrees with each run's meta.json
        expected = meta[rid]["correct"]
        stored = index.loc[key, "correct"]
        assert pd.isna(stored) if expected is None else int(stored) == int(expected), rid
        assert index.loc[key, "label"] == rid

    assert _batch(cache, qfile, tiny_model_dir, *sampled) == 1  # resume: all cached, failures retried
    out2, err2 = capsys.readouterr()
    assert "0 computed, 4 cached, 2 failed" in err2
    assert _keys(out2) == keys


def test_samples_use_sampling_with_distinct_seeds(tmp_path, tiny_model_dir, capsys):
    qfile = _jsonl(
        tmp_path / "q.jsonl",
        [
            {"id": "gen", "question": "Name a prime number.", "answer": "7"},
            {"id": "imp", "question": "What is 2 + 4?", "answer": "6", "trajectory": TRAJECTORY},
        ],
    )
    assert _batch(tmp_path / "cache", qfile, tiny_model_dir, "--samples", "2", "--seed", "10") == 0
    keys = _keys(capsys.readouterr().out)
    assert [(rid, s) for rid, s, _ in keys] == [("gen", 0), ("gen", 1), ("imp", 0)]
    store = RunStore(tmp_path / "cache")
    gens = [store.open(key).meta["generation"] for rid, _, key in keys if rid == "gen"]
    assert [g["seed"] for g in gens] == [10, 11]
    assert all(g["temperature"] == pytest.approx(0.7) for g in gens)
    assert len({key for _, _, key in keys}) == 3


def test_parquet_batch_with_field_mapping_and_row_errors(tmp_path, tiny_model_dir, capsys):
    path = tmp_path / "gsm8k.parquet"
    pd.DataFrame(
        {
            "problem": ["What is 2 + 4?", None, "What is 0 + 0?"],
            "solution": ["2 + 4 = 6.\n#### 6", "#### 1", "#### 0"],
            "trajectory": [TRAJECTORY, TRAJECTORY, "<think></think>"],
        }
    ).to_parquet(path)
    rc = _batch(tmp_path / "cache", path, tiny_model_dir, "--question-field", "problem", "--answer-field", "solution")
    assert rc == 1
    out, err = capsys.readouterr()
    assert f"error: {path}, row 2: field 'problem': missing" in err
    assert f"error: {path}, row 3: the trajectory has no thinking text to analyze" in err
    ((rid, _, key),) = _keys(out)
    run = RunStore(tmp_path / "cache").open(key)
    assert rid == "row1" and run.meta["answer"] == "6" and run.meta["correct"] is True


def test_limit_keeps_the_first_questions_and_their_errors_only(tmp_path, tiny_model_dir, capsys):
    qfile = _jsonl(
        tmp_path / "q.jsonl",
        [
            {"id": "a", "question": "What is 2 + 4?", "answer": "6", "trajectory": TRAJECTORY},
            "{not json",
            {"id": "b", "question": "What is 3 + 3?", "answer": "6", "trajectory": TRAJECTORY},
            {"question": ""},
        ],
    )
    assert _batch(tmp_path / "cache", qfile, tiny_model_dir, "--limit", "1") == 0
    out, err = capsys.readouterr()
    assert [rid for rid, _, _ in _keys(out)] == ["a"] and "error:" not in err
    assert _batch(tmp_path / "cache", qfile, tiny_model_dir, "--limit", "2") == 1
    out, err = capsys.readouterr()
    assert [rid for rid, _, _ in _keys(out)] == ["a", "b"]
    assert f"{qfile}:2: invalid JSON" in err and f"{qfile}:4" not in err
    assert "1 computed, 1 cached, 1 failed" in err


def test_unreadable_question_file_is_one_line(tmp_path, capsys):
    assert (
        main(["--cache-dir", str(tmp_path / "c"), "batch", str(tmp_path / "nope.jsonl"), "--quiet"]) == 2
    )  # bad input
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'nope.jsonl'}: no such file or folder" in err and "Traceback" not in err
