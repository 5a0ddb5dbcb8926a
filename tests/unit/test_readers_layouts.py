"""Every dataset layout the readers accept, with real column names and presets: list-valued
trace columns give one record per element, chat-message columns give the assistant turn,
Parquet shard folders name the shard in errors, and a batch over every layout runs end to end
on the tiny model (imported traces, no generation)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_layouts import (
    THINK,
    write_chat_jsonl,
    write_gsm8k_csv,
    write_limo,
    write_openr1_shards,
    write_s1k,
    write_s1k_11_arrow,
    write_thought_anchors,
)

from backend.errors import InputError
from backend.io.fields import FieldMap, last_boxed
from backend.io.readers import detect_layout, read_questions, read_questions_bytes

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_openr1_shard_folder_one_record_per_generation(tmp_path):
    folder = write_openr1_shards(tmp_path / "openr1")
    assert detect_layout(folder) == "parquet"
    records, errors = read_questions(folder, FieldMap.build("openr1"))
    assert errors == []
    assert [(r.id, r.trace_index, r.answer) for r in records] == [
        ("u-1#0", 0, "6"),
        ("u-1#1", 1, "6"),
        ("u-2#0", 0, "9"),
    ]
    assert records[1].trajectory == THINK.replace("six", "6")
    assert records[2].where.endswith("train-00001-of-00002.parquet, row 1")  # the shard, not the folder


def test_openr1_messages_column_takes_the_assistant_turn(tmp_path):
    folder = write_openr1_shards(tmp_path / "openr1")
    records, errors = read_questions(folder, FieldMap.build("openr1", trajectory="messages"))
    assert errors == [] and [r.trajectory for r in records] == [
        THINK,
        "<think>Three times three is nine. Hmm, 3 * 3 = 9 indeed.</think> \\boxed{9}",
    ]
    assert all(r.trace_index is None for r in records)


def test_s1k_list_traces_and_boxed_answers(tmp_path):
    records, errors = read_questions(write_s1k(tmp_path / "s1k.parquet"), FieldMap.build("s1k"))
    assert errors == []
    assert [(r.id, r.answer) for r in records] == [("row1#0", "6"), ("row2#0", "128")]
    assert records[1].trajectory == "Two to the seventh is 128."


def test_s1k_11_arrow_file_uses_the_deepseek_trace(tmp_path):
    records, errors = read_questions(write_s1k_11_arrow(tmp_path / "s1k11.arrow"), FieldMap.build("s1k"))
    assert errors == [] and [(r.answer, r.trace_index) for r in records] == [("5", None)]
    assert records[0].trajectory.startswith("Divide both sides by 2")


def test_limo_gsm8k_csv_math500_presets(tmp_path):
    limo, _ = read_questions(write_limo(tmp_path / "limo.jsonl"), FieldMap.build("limo"))
    assert [(r.answer, r.trajectory[:7]) for r in limo] == [("6", "<think>"), ("9", "<think>")]
    gsm, errors = read_questions(write_gsm8k_csv(tmp_path / "gsm8k.csv"), FieldMap.build("gsm8k"))
    assert errors == [] and [r.answer for r in gsm] == ["7", "060"]  # CSV cells stay text: 060 keeps its zero
    assert all(r.trajectory is None for r in gsm)
    math, errors = read_questions(FIXTURES / "hf_math500", FieldMap.build("math500"))
    assert [r.id for r in math] == ["test/prealgebra/1.json", "test/algebra/2.json"] and len(errors) == 1


def test_thought_anchors_folders_in_natural_order(tmp_path):
    root = write_thought_anchors(tmp_path / "ta")
    assert detect_layout(root) == "thought-anchors"
    records, errors = read_questions(root)  # detected without a preset
    assert errors == []
    assert [r.id.rsplit("/", 1)[-1] for r in records] == ["problem_2", "problem_10"]
    assert [r.answer for r in records] == ["6", "9"] and "</think>" in records[0].trajectory
    one = next(root.rglob("problem_10"))
    (one / "problem.json").write_text("{broken")
    records, errors = read_questions(root, FieldMap.build("thought-anchors"))
    assert len(records) == 1 and str(errors[0]).startswith(f"{one}: problem.json is not readable JSON")


def test_chat_messages_in_jsonl(tmp_path):
    records, errors = read_questions(write_chat_jsonl(tmp_path / "chat.jsonl"), FieldMap(trajectory="messages"))
    assert errors == [] and records[0].trajectory == THINK


def test_named_columns_must_exist_and_presets_are_checked(tmp_path):
    path = write_s1k(tmp_path / "s1k.parquet")
    _, errors = read_questions(path, FieldMap.build(trajectory="generations"))
    assert "field 'generations' is not a column" in str(errors[0]) and "--trajectory-field" in str(errors[0])
    _, errors = read_questions(path, FieldMap.build("openr1"))
    assert "field 'problem' (preset openr1) is not a column" in str(errors[0])
    with pytest.raises(InputError, match="unknown preset 'r1'"):
        FieldMap.build("r1")


def test_empty_list_and_bad_element_name_the_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "g.parquet"
    pq.write_table(pa.table({"question": ["A?", "B?"], "generations": [[], ["ok", "  x\x00"]]}), path)
    records, errors = read_questions(path, FieldMap(trajectory="generations"))
    assert [r.id for r in records] == ["row2#0"]
    assert [str(e) for e in errors] == [
        f"{path}, row 1: field 'generations': is an empty list (no trace to import)",
        f"{path}, row 2: field 'generations': element 1: contains a NUL character (at character 3)",
    ]


def test_decimal_answers_keep_their_digits_and_uploads_read_tables(tmp_path):
    records, _ = read_questions_bytes(
        b'{"question": "q", "answer": 0.10}\n{"question": "r", "answer": 1e-7}\n', "up.jsonl"
    )
    assert [r.answer for r in records] == ["0.10", "1E-7"]
    path = write_s1k(tmp_path / "s1k.parquet")
    records, errors = read_questions_bytes(path.read_bytes(), "mine.parquet", FieldMap.build("s1k"))
    assert errors == [] and len(records) == 2
    _, errors = read_questions_bytes(b"PAR1 broken", "bad.parquet")
    assert str(errors[0]).startswith("bad.parquet: not a readable Parquet file")


def test_last_boxed_balances_braces():
    assert last_boxed("so \\boxed{1} then \\boxed{\\frac{3}{4}} done") == "\\frac{3}{4}"
    assert last_boxed("no box") is None and last_boxed("\\boxed{unclosed") is None


def test_batch_over_every_layout_end_to_end(tmp_path, tiny_model_dir):
    from backend.pipeline.run import RunRequest
    from backend.scale.batch import BatchSpec, run_batch
    from backend.store.runs import RunStore

    layouts = {
        "openr1": write_openr1_shards(tmp_path / "openr1"),
        "s1k": write_s1k(tmp_path / "s1k.parquet"),
        "s1k-1.1": write_s1k_11_arrow(tmp_path / "s1k11.arrow"),
        "limo": write_limo(tmp_path / "limo.jsonl"),
        "thought-anchors": write_thought_anchors(tmp_path / "ta"),
        "chat": write_chat_jsonl(tmp_path / "chat.jsonl"),
    }
    fields = {
        "openr1": FieldMap.build("openr1"),
        "s1k": FieldMap.build("s1k"),
        "s1k-1.1": FieldMap.build("s1k"),
        "limo": FieldMap.build("limo"),
        "thought-anchors": FieldMap.build("thought-anchors"),
        "chat": FieldMap(trajectory="messages"),
    }
    template = RunRequest(question="", model=tiny_model_dir, cuts="steps")
    expected_runs = {"openr1": 3, "s1k": 2, "s1k-1.1": 1, "limo": 2, "thought-anchors": 2, "chat": 1}
    stores = {name: RunStore(tmp_path / f"cache-{name}") for name in layouts}  # same trace twice = one run
    for name, path in layouts.items():
        store = stores[name]
        report = run_batch(BatchSpec(path, fields[name], show_progress=False), template, store)
        assert report.error_lines() == [] and report.computed + report.cached == expected_runs[name], name
        for result in report.results:
            run = store.open(result.key)
            assert run.meta["label"] == result.item.record.id and run.meta["trajectory_source"] == "imported"
            assert run.meta["question"] == result.item.record.question.strip()
    labels = set(stores["openr1"].list_runs()["label"])
    assert labels == {"u-1#0", "u-1#1", "u-2#0"}  # the sample index of a list-valued trace is in the label
    again = run_batch(BatchSpec(layouts["openr1"], fields["openr1"], show_progress=False), template, stores["openr1"])
    assert again.summary() == "0 computed, 3 cached, 0 failed"


def test_cli_batch_preset_and_trajectory_field(tmp_path, tiny_model_dir, capsys):
    from backend.cli import main

    root = write_thought_anchors(tmp_path / "ta")
    argv = ["--cache-dir", str(tmp_path / "cache"), "batch", str(root), "--model", tiny_model_dir, "--quiet"]
    assert main([*argv, "--preset", "thought-anchors", "--cuts", "steps"]) == 0
    out, err = capsys.readouterr()
    ids = [line.split("\t")[0].rsplit("/", 1)[-1] for line in out.splitlines() if line.count("\t") == 2]
    assert ids == ["problem_2", "problem_10"] and "2 computed, 0 cached, 0 failed" in err
    assert main([*argv, "--trajectory-field", "nope"]) == 1
    err = capsys.readouterr().err
    assert f"error: {root}: field 'nope'" in err and "is not a column" in err and "--trajectory-field" in err
