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
"""

from __future__ import annotations

from collections.abc import Iterator

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


def map_line(obj, line: int, source: str, reveal: bool = True) -> list[QuestionRecord | LineError]:
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
    question, question_field = _question(obj)
    if question is None:
        return [
            LineError(
                source,
                line,
                question_field,
                "missing: a completion carries no question; keep the request's messages on the line "
                "(or a 'question' field), e.g. join the batch input to its output by custom_id",
            )
        ]
    base_id = obj.get("custom_id") or body.get("id") or f"line{line}"
    answer = _answer(obj)
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
    rows: Iterator[tuple[int, object]], source: str, reveal: bool = True
) -> Iterator[QuestionRecord | LineError]:
    """Records of the decoded lines ``rows``; without ``reveal`` no error quotes the file's messages."""
    for line, obj in rows:
        if isinstance(obj, LineError):
            yield obj
        else:
            yield from map_line(obj, line, source, reveal)
