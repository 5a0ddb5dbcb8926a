"""lm-evaluation-harness ``--log_samples`` files (``samples_<task>_<date>.jsonl``, one line per
document), as ``EvaluationTracker.save_results_samples`` writes them::

    {"doc_id": 0, "doc": {...the task's row...}, "target": "72",
     "arguments": {"gen_args_0": {"arg_0": "<prompt>", "arg_1": {...generation kwargs...}}},
     "resps": [["<response 1>", ...]], "filtered_resps": ["72"], "filter": "strict-match",
     "metrics": ["exact_match"], "doc_hash": "...", "prompt_hash": "...", "target_hash": "...",
     "exact_match": 1.0}

The question is the document's question column (``--question-field``, else the first of
``question``, ``problem``, ...; else the prompt itself, the last user turn of a chat prompt); the
reference answer is ``target`` (GSM8K's ``#### N`` and a worked solution's last ``\\boxed{}``
keep the answer only); the trace is the raw response in ``resps`` (``filtered_resps`` holds only
the extracted answer). A reasoning model's response carries ``<think>…</think>``; with lm-eval's
``think_end_token`` the harness has already cut the thinking off, so the trace is the final
answer alone (``think_tags: false`` in the run's meta says so). Several repeats of a document give one record each
(``<task>/<doc_id>#k``); doc id, filter and metric values go to the run's meta.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from backend.io.fields import FieldMap
from backend.io.records import LineError, QuestionRecord
from backend.io.traces import QUESTION_KEYS, THINK_CLOSE, make_record, plain_json, reference_answer

FORMAT = "lm-eval"
_TASK_FROM_NAME = re.compile(r"^samples_(.+)_\d{4}-\d{2}-\d{2}T[\d\-.]+$")


def looks_like(obj) -> bool:
    return isinstance(obj, dict) and "doc" in obj and ("resps" in obj or "filtered_resps" in obj)


def task_name(path: str) -> str | None:
    """``samples_gsm8k_2025-01-01T00-00-00.123.jsonl`` -> ``gsm8k``."""
    match = _TASK_FROM_NAME.match(Path(path).name.removesuffix(".jsonl"))
    return match.group(1) if match else None


def _prompt(arguments) -> str | None:
    """The first request's prompt; a chat prompt (JSON list of messages) gives its last user turn."""
    first = None
    if isinstance(arguments, dict):
        first = (arguments.get("gen_args_0") or {}).get("arg_0")
    elif isinstance(arguments, list) and arguments and isinstance(arguments[0], list):  # in-memory shape
        first = arguments[0][0] if arguments[0] else None
    if isinstance(first, str) and first.lstrip().startswith("[{"):
        try:
            messages = json.loads(first)
            users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
            return users[-1] if users else first
        except ValueError:
            return first
    return first if isinstance(first, str) else None


def _question(doc: dict, fields: FieldMap, arguments) -> tuple[str | None, str]:
    if "question" in fields.required:
        return doc.get(fields.question), f"doc.{fields.question}"
    for key in QUESTION_KEYS:
        if isinstance(doc.get(key), str) and doc[key].strip():
            return doc[key], f"doc.{key}"
    return _prompt(arguments), "arguments.gen_args_0.arg_0"


def map_sample(obj, line: int, source: str, fields: FieldMap, task: str | None) -> list[QuestionRecord | LineError]:
    """One line of a samples file -> one record per generated response (or one error)."""
    if not isinstance(obj, dict):
        return [LineError(source, line, None, f"expected a JSON object, got {type(obj).__name__}")]
    doc = obj.get("doc")
    if not isinstance(doc, dict):
        return [LineError(source, line, "doc", "missing" if doc is None else "must be an object (the task's row)")]
    question, question_field = _question(doc, fields, obj.get("arguments"))
    if "answer" in fields.required:
        answer, answer_field = reference_answer(doc.get(str(fields.answer))), f"doc.{fields.answer}"
    else:
        answer, answer_field = reference_answer(obj.get("target")), "target"
    resps = obj.get("resps")
    if resps is None:
        return [LineError(source, line, "resps", "missing (lm-eval writes it with --log_samples)")]
    first = resps[0] if isinstance(resps, list) and resps else None
    if not isinstance(first, list) or not first:
        return [LineError(source, line, "resps", "must be a list of the responses of each request")]
    if not all(isinstance(r, str) for r in first):
        return [LineError(source, line, "resps", "holds log-likelihoods (a multiple-choice task), not generated text")]
    doc_id = obj.get("doc_id", line - 1)
    base_id = f"{task}/{doc_id}" if task else str(doc_id)
    metric_names = obj.get("metrics") if isinstance(obj.get("metrics"), list) else []
    origin = {
        "format": FORMAT,
        "task": task,
        "doc_id": doc_id,
        "filter": obj.get("filter"),
        "metrics": plain_json({m: obj.get(m) for m in metric_names if isinstance(m, str)}),
        "doc_hash": obj.get("doc_hash"),
    }
    names = {"question": question_field, "answer": answer_field, "trajectory": "resps", "id": "doc_id"}
    out: list[QuestionRecord | LineError] = []
    for k, response in enumerate(first):
        record_id = f"{base_id}#{k}" if len(first) > 1 else base_id
        mapped = {"id": record_id, "question": question, "answer": answer, "trajectory": response or None}
        record_meta = origin | {"think_tags": THINK_CLOSE in response} | ({"repeat": k} if len(first) > 1 else {})
        record = make_record(
            mapped, source=source, line=line, where=f"{source}:{line}", fields=names, origin=record_meta
        )
        if isinstance(record, QuestionRecord) and len(first) > 1:
            record.trace_index = k
        out.append(record)
    return out


def iter_samples(
    rows: Iterator[tuple[int, object]], source: str, fields: FieldMap
) -> Iterator[QuestionRecord | LineError]:
    """Records of the decoded lines ``rows`` of one samples file (``backend.io.jsonl``)."""
    task = task_name(source)
    for line, obj in rows:
        if isinstance(obj, LineError):
            yield obj
        else:
            yield from map_sample(obj, line, source, fields, task)
