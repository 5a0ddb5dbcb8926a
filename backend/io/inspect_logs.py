"""Inspect AI evaluation logs (docs/datasets.md): the ``.eval`` archive (a zip: ``header.json``,
``samples/<id>_epoch_<n>.json``, ``summaries.json``, ``_journal/``) and the ``.json`` log (one
``EvalLog`` object with a ``samples`` list).

The documented layout is read directly, one zip member at a time, each bounded
(``backend.io.zipped``). With the optional ``inspect`` extra installed (``inspect-ai``) and
``RAML_INSPECT_READER=inspect_ai``, samples are read by Inspect's own reader instead
(``inspect_ai.log.read_eval_log_samples``, one sample at a time, turned into the files' JSON by
``model_dump``): the same records (tests/unit/test_eval_log_readers.py holds both to the logs
Inspect wrote), but about 14x slower per sample here (42 ms against ~3 ms, plus ~30 s to
import inspect_ai), so it is opt-in. Either way one sample (of one epoch) is one record:

- question: ``input`` (a string, or the last user message of a message list);
- reference answer: ``target`` (the first of a list; none when empty);
- trace: the final assistant message of ``output.choices[0]``: its reasoning blocks
  (``ContentReasoning``, ``{"type": "reasoning", "reasoning": ...}``) inside ``<think>…</think>``,
  then its text; content moved to ``attachments`` (``attachment://<hash>``) is resolved;
- id: the sample id (``<id>#<epoch>`` when the log has several epochs); the sample id, epoch,
  scores (value and answer of each scorer), task and model go to the run's meta.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path

from backend.io.records import MAX_FILE_BYTES, LineError, QuestionRecord
from backend.io.traces import SampleError, join_reasoning, make_record, plain_json, reference_answer
from backend.io.zipped import ZipMemberError, open_zip, read_member

FORMAT = "inspect"
READER_ENV = "RAML_INSPECT_READER"  # "inspect_ai": Inspect's own reader (the extra); else the built-in one
SUFFIXES = (".eval",)
ATTACHMENT = "attachment://"
HEADER, SAMPLES_DIR = "header.json", "samples/"


def has_package() -> bool:
    return importlib.util.find_spec("inspect_ai") is not None


def looks_like_json_log(head: bytes) -> bool:
    """Is this the start of an Inspect ``.json`` log (an EvalLog object: version, status, eval)?"""
    text = head.lstrip()[:4096].decode("utf-8", "ignore")
    return text.startswith("{") and '"eval"' in text and ('"version"' in text or '"status"' in text)


# ----------------------------------------------------------------------------- one sample
def _resolve(value, attachments: dict):
    if isinstance(value, str) and value.startswith(ATTACHMENT):
        return attachments.get(value[len(ATTACHMENT) :], value)
    return value


def _blocks(content, attachments: dict) -> tuple[str | None, str | None, bool]:
    """(reasoning, text, redacted) of a message's content (a string or a list of blocks)."""
    content = _resolve(content, attachments)
    if isinstance(content, str):
        return None, content, False
    if not isinstance(content, list):
        return None, None, False
    reasoning, text, redacted = [], [], False
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "reasoning":
            if block.get("redacted"):
                redacted = True
                summary = _resolve(block.get("summary"), attachments)
                if isinstance(summary, str):
                    reasoning.append(summary)
                continue
            piece = _resolve(block.get("reasoning"), attachments)
            if isinstance(piece, str):
                reasoning.append(piece)
        elif block.get("type") == "text":
            piece = _resolve(block.get("text"), attachments)
            if isinstance(piece, str):
                text.append(piece)
    return ("\n\n".join(reasoning) or None), "".join(text), redacted


def _question(sample: dict, attachments: dict) -> str | None:
    value = _resolve(sample.get("input"), attachments)
    if isinstance(value, list):
        users = [m for m in value if isinstance(m, dict) and m.get("role") == "user"]
        if not users:
            return None
        return _blocks(users[-1].get("content"), attachments)[1]
    return value


def _final_message(sample: dict) -> tuple[dict | None, str]:
    output = sample.get("output")
    choices = output.get("choices") if isinstance(output, dict) else None
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict):
            return message, "output.choices[0].message"
    messages = sample.get("messages")
    if isinstance(messages, list):  # an output without choices: the last assistant turn
        for i in range(len(messages) - 1, -1, -1):
            if isinstance(messages[i], dict) and messages[i].get("role") == "assistant":
                return messages[i], f"messages[{i}]"
    return None, "output.choices"


def _scores(sample: dict) -> dict:
    scores = sample.get("scores")
    if not isinstance(scores, dict):
        return {}
    return {
        str(name): {"value": plain_json(s.get("value")), "answer": s.get("answer")}
        for name, s in scores.items()
        if isinstance(s, dict)
    }


def map_sample(
    sample, position: int, source: str, header: dict, epochs: int, reveal: bool = True
) -> QuestionRecord | LineError:
    """One sample (a dict in the log's own JSON shape) -> a record, or an error naming the sample and field."""
    if not isinstance(sample, dict):
        return SampleError(source, position, None, "is not a JSON object", record=f"sample #{position}")
    sid, epoch = sample.get("id", position), sample.get("epoch", 1)
    name = f"sample {sid} epoch {epoch}"

    def error(field: str | None, message: str) -> SampleError:
        return SampleError(source, position, field, message, record=name)

    attachments = sample.get("attachments") if isinstance(sample.get("attachments"), dict) else {}
    message, message_field = _final_message(sample)
    if message is None:
        problem = sample.get("error")
        errored = isinstance(problem, dict)
        why = f" (the sample errored: {str(problem.get('message', problem))[:120]})" if errored and reveal else ""
        return error("output.choices", f"missing: no assistant message{why}")
    reasoning, text, redacted = _blocks(message.get("content"), attachments)
    eval_spec = header.get("eval") if isinstance(header.get("eval"), dict) else {}
    origin = {
        "format": FORMAT,
        "sample_id": sid,
        "epoch": epoch,
        "scores": _scores(sample),
        "task": eval_spec.get("task"),
        "model": eval_spec.get("model"),
        "reasoning_redacted": redacted,
    }
    if isinstance(sample.get("metadata"), dict) and sample["metadata"]:
        origin["metadata"] = plain_json(sample["metadata"])
    trace = join_reasoning(reasoning, text)
    if trace is None:
        return error(f"{message_field}.content", "is empty (no reasoning and no text)")
    mapped = {
        "id": f"{sid}#{epoch}" if epochs > 1 else sid,
        "question": _question(sample, attachments),
        "answer": reference_answer(_resolve(sample.get("target"), attachments)),
        "trajectory": trace,
    }
    names = {"question": "input", "answer": "target", "trajectory": f"{message_field}.content", "id": "id"}
    record = make_record(
        mapped,
        source=source,
        line=position,
        where=f"{source}, {name}",
        fields=names,
        origin=origin,
        error=lambda s, ln, f, m: SampleError(s, ln, f, m, record=name),
    )
    if isinstance(record, QuestionRecord) and epochs > 1:
        record.trace_index = int(epoch) if isinstance(epoch, int) else None
    return record


# ----------------------------------------------------------------------------- files
def _epochs(header: dict) -> int:
    config = (header.get("eval") or {}).get("config") if isinstance(header.get("eval"), dict) else None
    epochs = config.get("epochs") if isinstance(config, dict) else None
    return epochs if isinstance(epochs, int) and epochs > 0 else 1


def _eval_archive(path: Path, source: str, reveal: bool = True) -> Iterator[QuestionRecord | LineError]:
    """The documented ``.eval`` layout, one bounded member at a time."""
    try:
        archive = open_zip(path)
    except ZipMemberError as exc:
        yield LineError(source, 0, None, str(exc).removeprefix(f"{path}: "))
        return
    with archive:
        names = [i.filename for i in archive.infolist()]
        header: dict = {}
        if HEADER in names:
            try:
                header = json.loads(read_member(archive, HEADER))
            except (ZipMemberError, ValueError) as exc:
                yield LineError(source, 0, HEADER, f"unreadable ({str(exc)[:160]})")
                return
        elif "_journal/start.json" not in names:
            yield LineError(source, 0, HEADER, "missing: not an Inspect .eval log (no header.json)")
            return
        members = [n for n in names if n.startswith(SAMPLES_DIR) and n.endswith(".json")]
        epochs = _epochs(header) if header else max(1, len({n.rsplit("_epoch_", 1)[-1] for n in members}))
        for position, member in enumerate(members, start=1):
            try:
                sample = json.loads(read_member(archive, member))
            except ZipMemberError as exc:
                why = str(exc).removeprefix(f"{archive.filename}: member {member!r}: ")
                yield SampleError(source, position, None, why, record=f"member {member}")
                continue
            except (ValueError, UnicodeDecodeError) as exc:
                yield SampleError(
                    source, position, None, f"not readable JSON ({str(exc)[:120]})", record=f"member {member}"
                )
                continue
            yield map_sample(sample, position, source, header, epochs, reveal)


def _json_log(path: Path, source: str, reveal: bool = True) -> Iterator[QuestionRecord | LineError]:
    """A ``.json`` log: one object, read whole (bounded; the ``.eval`` format streams)."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            yield LineError(
                source,
                0,
                None,
                f"is a {size >> 20} MiB .json log, over {MAX_FILE_BYTES >> 20} MiB: convert it with "
                "`inspect log convert --to eval` (the .eval format is read one sample at a time)",
            )
            return
        log = json.loads(path.read_bytes())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        yield LineError(source, 0, None, f"not a readable Inspect .json log ({str(exc)[:160]})")
        return
    yield from _log_samples(log, source, reveal)


def _log_samples(log, source: str, reveal: bool = True) -> Iterator[QuestionRecord | LineError]:
    if not isinstance(log, dict) or not isinstance(log.get("eval"), dict):
        yield LineError(source, 0, "eval", "missing: not an Inspect log")
        return
    samples = log.get("samples")
    if not isinstance(samples, list):
        yield LineError(
            source, 0, "samples", "missing: the log holds no samples (was it written with --no-log-samples?)"
        )
        return
    epochs = _epochs(log)
    for position, sample in enumerate(samples, start=1):
        yield map_sample(sample, position, source, log, epochs, reveal)


def _with_package(path: Path, source: str, reveal: bool = True) -> Iterator[QuestionRecord | LineError]:
    """Inspect's own reader: the header, then one sample at a time, as the files' JSON."""
    from inspect_ai.log import read_eval_log, read_eval_log_samples

    try:
        header = read_eval_log(str(path), header_only=True).model_dump(mode="json", exclude={"samples"})
    except Exception as exc:  # inspect raises its own and pydantic's errors for a bad log
        yield LineError(source, 0, None, f"not a readable Inspect log ({str(exc).splitlines()[0][:160]})")
        return
    epochs = _epochs(header)
    position = 0
    try:
        for sample in read_eval_log_samples(str(path), all_samples_required=False):
            position += 1
            yield map_sample(sample.model_dump(mode="json"), position, source, header, epochs, reveal)
    except Exception as exc:
        yield LineError(source, position + 1, None, f"unreadable from here on ({str(exc).splitlines()[0][:160]})")


def iter_log(
    path: str | Path, use_package: bool | None = None, reveal: bool = True
) -> Iterator[QuestionRecord | LineError]:
    """Records of one Inspect log (``.eval`` or ``.json``), in sample order; without ``reveal``
    no error quotes the log's own messages (a server path read for a browser user)."""
    path = Path(path)
    source = str(path)
    if use_package is None:
        use_package = os.environ.get(READER_ENV) == "inspect_ai" and has_package()
    if use_package:
        yield from _with_package(path, source, reveal)
    elif path.suffix.lower() in SUFFIXES:
        yield from _eval_archive(path, source, reveal)
    else:
        yield from _json_log(path, source, reveal)
