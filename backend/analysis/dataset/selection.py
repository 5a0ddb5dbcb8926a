"""Picking runs from the library table by what people type (``raml stats``, ``raml export --site``,
``backend.notebook.list_runs``): ``field=value`` on the index's columns (``model=``, ``label=``,
``answer_source=``, ``correct=true|false|none``), ``q=TEXT`` (question or label contains TEXT),
or a question file (JSONL, Parquet, Arrow or a save_to_disk folder: the runs of its questions).
Several items are combined with AND."""

from __future__ import annotations

from pathlib import Path

FILTER_FIELDS = ("model", "label", "answer_source", "correct", "q")


def is_filter(item: str) -> bool:
    """Whether ``item`` is a ``field=value`` filter (not the name of an existing file)."""
    return "=" in item and not Path(item).exists()


def select_keys(runs, selection: list[str], question_field: str = "question") -> list[str]:
    """Keys of the index rows ``runs`` matching every selection item (one-line errors)."""
    from backend.analysis.dataset.model_pairs import question_id
    from backend.errors import InputError

    view = runs
    for item in selection:
        if is_filter(item):
            field, _, value = item.partition("=")
            field = field.strip()
            if field not in FILTER_FIELDS:
                raise InputError(f"unknown filter field '{field}' in '{item}' (use {', '.join(FILTER_FIELDS)})")
            if field == "q":
                text = value.strip().lower()
                hay = view["question"].fillna("").str.lower() + " " + view["label"].fillna("").str.lower()
                view = view[hay.str.contains(text, regex=False)]
            elif field == "correct":
                wanted = {"true": True, "false": False, "none": None}.get(value.strip().lower(), "bad")
                if wanted == "bad":
                    raise InputError(f"correct= takes true, false or none, got '{value}'")
                view = view[[(None if v is None or v != v else bool(v)) is wanted for v in view["correct"]]]
            else:
                view = view[view[field].fillna("").astype(str) == value]
            continue
        path = Path(item)
        if not path.exists():
            raise InputError(f"'{item}' is neither a file nor a field=value filter")
        from backend.engine.limits import check_input_path

        check_input_path(path, "question file")  # no FIFO or device reaches a reader
        from backend.io.fields import FieldMap
        from backend.io.readers import read_questions

        records, _errors = read_questions(path, FieldMap.build(None, question_field))
        wanted_questions = {question_id(r.question) for r in records}
        view = view[view["question"].map(question_id).isin(wanted_questions)]
    return view["key"].tolist()
