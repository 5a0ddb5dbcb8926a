"""Question sets as JSONL, Parquet and Hugging Face ``save_to_disk`` folders, with field
mappings; every bad row is reported with its file, row and field, and the others still load.

The HF folders in tests/fixtures/ were written by the real ``datasets`` library
(tests/fixtures/make_hf_datasets.py); the project reads them with pyarrow alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from backend.io.fields import FieldMap
from backend.io.readers import is_table, read_questions

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_jsonl_default_fields_and_errors_name_line_and_field(tmp_path):
    path = _write_jsonl(
        tmp_path / "q.jsonl",
        [
            {"id": "a", "question": "What is 2+2?", "answer": 4},
            {"question": "No answer here"},
            {"question": 7},
            "{broken",
            {"id": "t", "question": "Q?", "answer": "1", "trajectory": "It is 1."},
        ],
    )
    records, errors = read_questions(path)
    assert [(r.line, r.id, r.answer) for r in records] == [(1, "a", "4"), (2, "line2", None), (5, "t", "1")]
    assert records[2].trajectory == "It is 1."
    assert [str(e) for e in errors] == [
        f"{path}:3: field 'question': must be a string, got int",
        f"{path}:4: invalid JSON: Expecting property name enclosed in double quotes at column 2",
    ]


def test_jsonl_field_mapping_names_the_files_own_field(tmp_path):
    path = _write_jsonl(
        tmp_path / "math.jsonl",
        [
            {"problem": "Solve x+1=3.", "solution": "x = \\boxed{2}", "answer": "2", "unique_id": "test/a.json"},
            {"solution": "missing problem"},
            {"problem": "  ", "answer": "1"},
        ],
    )
    records, errors = read_questions(path, FieldMap(question="problem", answer="answer"))
    assert [(r.id, r.question, r.answer) for r in records] == [("test/a.json", "Solve x+1=3.", "2")]
    assert [str(e) for e in errors] == [f"{path}:2: field 'problem': missing", f"{path}:3: field 'problem': is empty"]


def test_gsm8k_answer_keeps_the_number_after_the_marker(tmp_path):
    path = _write_jsonl(
        tmp_path / "gsm8k.jsonl",
        [
            {"question": "Q1?", "answer": "3 + 4 = <<3+4=7>>7 pens.\n#### 7"},
            {"question": "Q2?", "answer": "#### 1,200"},
            {"question": "Q3?", "answer": "no marker here"},
        ],
    )
    records, errors = read_questions(path)
    assert errors == []
    assert [r.answer for r in records] == ["7", "1,200", "no marker here"]


def test_parquet_rows_mapping_and_types(tmp_path):
    path = tmp_path / "aime.parquet"
    pd.DataFrame(
        {
            "ID": ["2024-I-1", "2024-I-2", "2024-I-3", "2024-I-4"],
            "Problem": ["Find x.", None, "Find y.", "Find z."],
            "Answer": [204.0, 25.0, float("nan"), 7.5],  # a float column, as Parquet stores ints with gaps
        }
    ).to_parquet(path)
    records, errors = read_questions(path, FieldMap(question="Problem", answer="Answer"))
    assert [(r.line, r.id, r.answer) for r in records] == [
        (1, "2024-I-1", "204"),
        (3, "2024-I-3", None),
        (4, "2024-I-4", "7.5"),
    ]
    assert [str(e) for e in errors] == [f"{path}, row 2: field 'Problem': missing"]


def test_parquet_integer_answers_and_row_ids(tmp_path):
    path = tmp_path / "plain.parquet"
    pd.DataFrame({"question": ["A?", "B?"], "answer": pd.Series([3, 12], dtype="int64")}).to_parquet(path)
    records, errors = read_questions(path)
    assert errors == [] and [(r.id, r.answer) for r in records] == [("row1", "3"), ("row2", "12")]


def test_missing_question_column_is_one_error_listing_the_columns(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"problem": ["A?"], "answer": ["1"]}).to_parquet(path)
    records, errors = read_questions(path)
    assert records == []
    assert len(errors) == 1
    assert "field 'question' is not a column of this file (columns: problem, answer)" in str(errors[0])
    assert "--question-field" in str(errors[0])


def test_hf_dataset_folder_gsm8k_split():
    records, errors = read_questions(FIXTURES / "hf_gsm8k" / "train")
    assert errors == []
    assert [(r.id, r.answer) for r in records] == [("row1", "7"), ("row2", "60"), ("row3", "140")]
    assert records[0].question.startswith("Ann has 3 pens")


def test_hf_dataset_dict_with_several_splits_asks_for_one():
    records, errors = read_questions(FIXTURES / "hf_gsm8k")
    assert records == []
    assert len(errors) == 1
    message = str(errors[0])
    assert "several splits (train, test)" in message and str(FIXTURES / "hf_gsm8k" / "test") in message


def test_hf_dataset_dict_with_one_split_is_read(tmp_path):
    root = tmp_path / "dd"
    shutil.copytree(FIXTURES / "hf_gsm8k" / "test", root / "test")
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["test"]}))
    records, errors = read_questions(root)
    assert errors == [] and [r.answer for r in records] == ["7", "60"]


def test_hf_math500_mapping_and_bad_row():
    path = FIXTURES / "hf_math500"
    records, errors = read_questions(path, FieldMap(question="problem", answer="answer"))
    assert [(r.id, r.answer) for r in records] == [
        ("test/prealgebra/1.json", "\\frac{3}{4}"),
        ("test/algebra/2.json", "5"),
    ]
    assert [str(e) for e in errors] == [f"{path}, row 3: field 'problem': missing"]


def test_damaged_and_wrong_inputs_give_one_clear_error(tmp_path):
    not_dataset = tmp_path / "folder"
    not_dataset.mkdir()
    _, errors = read_questions(not_dataset)
    assert "not a Hugging Face dataset saved with save_to_disk" in str(errors[0])

    broken = tmp_path / "broken"
    shutil.copytree(FIXTURES / "hf_math500", broken)
    (broken / "data-00000-of-00001.arrow").write_bytes(b"not arrow at all")
    _, errors = read_questions(broken)
    assert len(errors) == 1 and "data file data-00000-of-00001.arrow is unreadable" in str(errors[0])

    escaping = tmp_path / "escaping"
    shutil.copytree(FIXTURES / "hf_math500", escaping)
    (escaping / "state.json").write_text(json.dumps({"_data_files": [{"filename": "../../etc/passwd"}]}))
    _, errors = read_questions(escaping)
    assert "outside the dataset folder" in str(errors[0])

    bad_parquet = tmp_path / "bad.parquet"
    bad_parquet.write_bytes(b"PAR1 garbage")
    _, errors = read_questions(bad_parquet)
    assert len(errors) == 1 and "not a readable Parquet file" in str(errors[0])

    misnamed = tmp_path / "data.jsonl"
    pd.DataFrame({"question": ["A?"]}).to_parquet(misnamed)
    _, errors = read_questions(misnamed)
    assert "is a Parquet file: give it a .parquet name" in str(errors[0])

    _, errors = read_questions(tmp_path / "missing.jsonl")
    assert str(errors[0]) == f"{tmp_path / 'missing.jsonl'}: no such file or folder"

    empty = tmp_path / "empty.parquet"
    pd.DataFrame({"question": pd.Series([], dtype=str)}).to_parquet(empty)
    _, errors = read_questions(empty)
    assert "table has no rows" in str(errors[0])


def test_is_table():
    assert is_table(FIXTURES / "hf_math500") and is_table("x.parquet") and is_table("x.arrow")
    assert not is_table("x.jsonl")
