"""OpenAI-compatible chat output, one JSON object a line: the OpenAI Batch API's output (and
vLLM's ``run_batch``, SGLang's batch), ``{"custom_id", "response": {"status_code", "body":
<chat.completion>}, "error"}``, or plain ``chat.completion`` objects (``{"choices": [...]}``).

Each choice's ``message.content`` is the final text; the reasoning is the separate
``message.reasoning_content`` (DeepSeek, SGLang, vLLM before 0.10) or ``message.reasoning``
(vLLM 0.10+, OpenRouter); the trace is ``<think>reasoning</think>content``. A completion carries
no question: the line must also hold the request (``messages``, ``request.messages``,
``body.messages`` or a ``question`` / ``prompt`` string: the last user turn is the question); the
reference answer is an ``answer`` / ``target`` (or ``metadata.answer``) field when there is one,
else the model's own. Several choices (``n > 1``) give one record each (``<custom_id>#k``); the
custom id, model, finish reason and usage go to the run's meta.

The OpenAI Batch API (and vLLM's ``run_batch``) writes outputs without their requests: given the
batch input file (``--batch-input FILE``: one request a line, ``{"custom_id", "method", "url",
"body": {"model", "messages"}}``), each output line takes the question (and an ``answer`` /
``target`` / ``metadata.answer`` field, if the request line has one) from the request of the same
``custom_id``. An output whose custom_id is missing, or has no request, is one error naming the
output file, its line and the custom_id; a request line without a custom_id, or with one used
twice, is one error naming the input file and line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from backend.io.jsonl import iter_jsonl_rows
from backend.io.records import LineError, QuestionRecord
from backend.io.traces import join_reasoning, make_record, plain_json, reference_answer

FORMAT = "openai-chat"
REASONING_KEYS = ("reasoning_content", "reasoning")


def _completion(obj: dict) -> tuple[dict | None, str]:
    """The chat.completion object of a line and its path in the line."""
    response = obj.get("response")
    if isinstance(response, dict) and isinstance(response.get("body"), dict):
        return response["body"], "response.body."
    if "choices" in obj:
        return obj, ""
    return None, ""


def looks_like(obj) -> bool:
    if not isinstance(obj, dict):
        return False
    body, _ = _completion(obj)
    return body is not None or ("custom_id" in obj and "response" in obj)


def _text(content) -> str | None:
    """Message content: a string, or a list of parts (``{"type": "text", "text": ...}``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return None


def _question(obj: dict) -> tuple[str | None, str]:
    for path in (("messages",), ("request", "messages"), ("request", "body", "messages"), ("body", "messages")):
        node = obj
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, list):
            users = [_text(m.get("content")) for m in node if isinstance(m, dict) and m.get("role") == "user"]
            return (users[-1] if users else None), ".".join(path)
    for key in ("question", "prompt"):
        if isinstance(obj.get(key), str):
            return obj[key], key
    return None, "messages"


def _answer(obj: dict):
    for value in (obj.get("answer"), obj.get("target"), (obj.get("metadata") or {}).get("answer")):
        if value not in (None, ""):
            return reference_answer(value)
    return None


@dataclass(frozen=True)
class BatchRequest:
    """One line of a batch input file: its question (last user turn), where it is, and an answer
    field when the line has one."""

    line: int
    question: str | None
    question_field: str
    answer: str | int | float | None


def read_batch_input(path: str | Path) -> tuple[dict[str, BatchRequest], list[LineError]]:
    """The requests of a batch input file by ``custom_id`` (only what a record needs is kept, so
    10,000 requests cost a few MB), and the errors of its bad lines."""
    source = str(path)
    requests: dict[str, BatchRequest] = {}
    errors: list[LineError] = []
    try:
        stream = Path(path).open("rb")
    except OSError as exc:
        return {}, [LineError(source, 0, None, f"cannot read the batch input file: {exc.strerror}")]
    with stream:
        for line, obj in iter_jsonl_rows(stream, source):
            if isinstance(obj, LineError):
                errors.append(obj)
                continue
            if not isinstance(obj, dict):
                errors.append(LineError(source, line, None, f"expected a JSON object, got {type(obj).__name__}"))
                continue
            custom_id = obj.get("custom_id")
            if not isinstance(custom_id, str | int) or isinstance(custom_id, bool) or custom_id == "":
                errors.append(LineError(source, line, "custom_id", "missing: every request of a batch needs one"))
                continue
            custom_id = str(custom_id)
            if custom_id in requests:
                first = requests[custom_id].line
                errors.append(
                    LineError(source, line, "custom_id", f"{custom_id!r} is used twice (first on line {first})")
                )
                continue
            question, field = _question(obj)
            requests[custom_id] = BatchRequest(line, question, field, _answer(obj))
    if not requests and not errors:
        errors.append(LineError(source, 0, None, "the batch input file has no requests"))
    return requests, errors


def map_line(
    obj, line: int, source: str, reveal: bool = True, requests: dict[str, BatchRequest] | None = None,
    batch_input: str = "",
) -> list[QuestionRecord | LineError]:  # fmt: skip
    """The records of one output line (one per choice); with ``requests`` (the batch input file
    ``batch_input`` by custom_id) the question comes from the request of the line's custom_id."""
    if not isinstance(obj, dict):
        return [LineError(source, line, None, f"expected a JSON object, got {type(obj).__name__}")]
    if obj.get("error"):
        error = obj["error"]
        message = error.get("message") if isinstance(error, dict) else error
        return [LineError(source, line, "error", "the request failed" + (f": {str(message)[:160]}" if reveal else ""))]
    response = obj.get("response")
    if isinstance(response, dict) and response.get("status_code") not in (None, 200):
        return [LineError(source, line, "response.status_code", f"is {response.get('status_code')}, not 200")]
    body, prefix = _completion(obj)
    if body is None:
        return [LineError(source, line, "response.body", "missing (no chat completion on this line)")]
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return [LineError(source, line, f"{prefix}choices", "missing or empty")]
    answer = _answer(obj)
    if requests is not None:
        custom_id = obj.get("custom_id")
        if custom_id in (None, ""):
            return [
                LineError(source, line, "custom_id", f"missing: cannot find this output's request in {batch_input}")
            ]
        request = requests.get(str(custom_id))
        if request is None:
            return [
                LineError(
                    source, line, "custom_id", f"{str(custom_id)!r} has no request in the batch input {batch_input}"
                )
            ]
        if request.question is None:
            return [
                LineError(
                    batch_input,
                    request.line,
                    request.question_field,
                    f"missing: the request of custom_id {str(custom_id)!r} has no user message",
                )
            ]
        question, question_field = request.question, f"{batch_input}:{request.line} {request.question_field}"
        answer = answer if answer is not None else request.answer
    else:
        question, question_field = _question(obj)
    if question is None:
        return [
            LineError(
                source,
                line,
                question_field,
                "missing: a completion carries no question; keep the request's messages on the line "
                "(or a 'question' field), or give the batch input file (--batch-input FILE) to join by custom_id",
            )
        ]
    base_id = obj.get("custom_id") or body.get("id") or f"line{line}"
    origin = {"format": FORMAT, "custom_id": obj.get("custom_id"), "model": body.get("model")}
    if isinstance(body.get("usage"), dict):
        origin["usage"] = plain_json(body["usage"])
    out: list[QuestionRecord | LineError] = []
    for k, choice in enumerate(choices):
        field = f"{prefix}choices[{k}].message"
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            out.append(LineError(source, line, field, "missing"))
            continue
        reasoning_key = next((key for key in REASONING_KEYS if isinstance(message.get(key), str)), None)
        reasoning = message.get(reasoning_key) if reasoning_key else None
        trace = join_reasoning(reasoning, _text(message.get("content")))
        record_id = f"{base_id}#{k}" if len(choices) > 1 else str(base_id)
        names = {"question": question_field, "trajectory": f"{field}.content", "answer": "answer", "id": "custom_id"}
        choice_meta = origin | {"finish_reason": choice.get("finish_reason"), "reasoning_field": reasoning_key}
        record = make_record(
            {"id": record_id, "question": question, "answer": answer, "trajectory": trace},
            source=source,
            line=line,
            where=f"{source}:{line}",
            fields=names,
            origin=choice_meta | ({"choice": k} if len(choices) > 1 else {}),
        )
        if isinstance(record, QuestionRecord) and trace is None:
            record = LineError(source, line, f"{field}.content", "is empty and there is no reasoning field")
        if isinstance(record, QuestionRecord) and len(choices) > 1:
            record.trace_index = k
        out.append(record)
    return out


def iter_lines(
    rows: Iterator[tuple[int, object]], source: str, reveal: bool = True, batch_input: str | None = None
) -> Iterator[QuestionRecord | LineError]:
    """Records of the decoded lines ``rows``; without ``reveal`` no error quotes the file's messages.
    With ``batch_input`` (a batch input file) every line is joined to its request by custom_id;
    the input file's own bad lines come first, as errors naming that file."""
    requests = None
    if batch_input:
        requests, errors = read_batch_input(batch_input)
        yield from errors
        if any(e.line == 0 for e in errors):  # the input file as a whole is unusable: no line can be joined
            return
    for line, obj in rows:
        if isinstance(obj, LineError):
            yield obj
        else:
            yield from map_line(obj, line, source, reveal, requests, batch_input or "")
