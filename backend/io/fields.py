"""Which column of a file holds the question, the reference answer and the trace, and how one
row of a file becomes records (docs/datasets.md).

- ``FieldMap``: the columns, from ``--question-field/--answer-field/--trajectory-field`` or a
  preset by name (``PRESETS``: the real column names of OpenR1-Math-220k, s1K / s1K-1.1, LIMO,
  GSM8K, MATH-500 and Thought Anchors' problem folders). Flags given by the user override the preset.
- ``map_row``: one row -> records. A list-valued trace column (OpenR1's ``generations``, s1K's
  ``thinking_trajectories``) gives one record per element, with ``trace_index`` k and id
  ``"<id>#k"``; a chat-message column (``[{role, content}]``) gives its last assistant turn
  (and, as a question, its first user turn); GSM8K's ``#### N`` answers keep N; a preset may
  take the last ``\\boxed{}`` of a worked solution as the answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from backend.errors import InputError
from backend.io.records import MAX_CELL_BYTES, LineError, QuestionRecord, RowError, parse_line

GSM8K_MARKER = "####"
ID_FIELDS = ("id", "unique_id", "uuid", "ID", "idx")  # tried in order when no id field is named
SHORT_ANSWER_CHARS = 120  # "boxed" rule: a solution without \boxed{} this short is the answer itself


@dataclass(frozen=True)
class FieldMap:
    """The file's column for each part of a record. ``trajectory`` lists candidates: the first
    column the file has is used (s1K names it ``thinking_trajectories``, s1K-1.1
    ``deepseek_thinking_trajectory``). A column in ``required`` must exist (the user named it)."""

    question: str = "question"
    answer: str | None = "answer"
    trajectory: tuple[str, ...] = ("trajectory",)
    id: str | None = None  # None: the first of ID_FIELDS present, else "line<N>" / "row<N>"
    answer_rule: str = "plain"  # "plain" | "boxed" (last \boxed{} of a worked solution)
    required: frozenset[str] = field(default_factory=frozenset)
    preset: str | None = None
    # OpenAI-compatible batch output: the batch input file (JSONL of requests) that holds each
    # output line's question, joined by custom_id (``backend.io.openai_chat``); a path or None
    batch_input: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.trajectory, str):
            object.__setattr__(self, "trajectory", (self.trajectory,))

    @classmethod
    def build(
        cls,
        preset: str | None = None,
        question: str | None = None,
        answer: str | None = None,
        trajectory: str | None = None,
        id: str | None = None,
        batch_input: str | None = None,
    ) -> FieldMap:
        """A preset (or the defaults) with the user's named columns on top (and, for OpenAI-style
        batch output, the batch input file its lines are joined to)."""
        if preset is not None and preset not in PRESETS:
            raise InputError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)} (--preset)")
        base = PRESETS[preset] if preset else cls()
        named = {k: v for k, v in (("question", question), ("answer", answer), ("trajectory", trajectory)) if v}
        changes: dict = dict(named)
        if trajectory:
            changes["trajectory"] = (trajectory,)
        if id:
            changes["id"] = id
        if batch_input:
            changes["batch_input"] = str(batch_input)
        return replace(base, **changes, required=base.required | frozenset(named))

    @classmethod
    def from_args(cls, args) -> FieldMap:
        return cls.build(
            getattr(args, "preset", None),
            getattr(args, "question_field", None),
            getattr(args, "answer_field", None),
            getattr(args, "trajectory_field", None),
            batch_input=getattr(args, "batch_input", None),
        )

    def columns(self) -> dict[str, str]:
        """record field -> the file's column, to name the file's own field in errors."""
        return {"question": self.question, "answer": self.answer or "answer", "trajectory": self.trajectory[0]}


PRESETS: dict[str, FieldMap] = {
    # open-r1/OpenR1-Math-220k: problem, answer, uuid, generations (list), correctness_math_verify (list), messages
    "openr1": FieldMap("problem", "answer", ("generations",), id="uuid", preset="openr1"),
    # simplescaling/s1K: question, solution, thinking_trajectories (list), attempt;
    # s1K-1.1: deepseek_thinking_trajectory / gemini_thinking_trajectory (strings)
    "s1k": FieldMap(
        "question",
        "solution",
        ("thinking_trajectories", "deepseek_thinking_trajectory", "gemini_thinking_trajectory"),
        answer_rule="boxed",
        preset="s1k",
    ),
    # GAIR/LIMO: question, solution (the long reasoning trace), answer
    "limo": FieldMap("question", "answer", ("solution",), preset="limo"),
    # openai/gsm8k: question, answer ("... #### 72"); no trace: the model generates one
    "gsm8k": FieldMap("question", "answer", (), preset="gsm8k"),
    # HuggingFaceH4/MATH-500: problem, solution, answer, subject, level, unique_id
    "math500": FieldMap("problem", "answer", (), id="unique_id", preset="math500"),
    # Thought Anchors problem folders: problem.json (problem, gt_answer) + base_solution.json (solution)
    "thought-anchors": FieldMap("problem", "gt_answer", ("solution", "full_cot"), preset="thought-anchors"),
    # eval-pipeline logs (backend.io.readers.LOG_LAYOUTS): the preset forces the layout; each reader
    # knows its format's fields (--question-field / --answer-field name a key of lm-eval's ``doc``)
    "inspect": FieldMap(preset="inspect"),
    "lm-eval": FieldMap(preset="lm-eval"),
    "openai-chat": FieldMap(preset="openai-chat"),
}


@dataclass(frozen=True)
class Columns:
    """The columns of one file that a FieldMap resolves to (None: the file has no such column)."""

    question: str
    answer: str | None
    trajectory: str | None
    id: str | None

    def names(self) -> list[str]:
        return [c for c in (self.question, self.answer, self.trajectory, self.id) if c]


def resolve_columns(fields: FieldMap, present: list[str] | None, reveal: bool = True) -> Columns | str:
    """The columns to read from a file with columns ``present`` (None: unknown, as for JSONL),
    or why the file cannot be read with this mapping (one line; it lists the file's columns
    only with ``reveal``: a server path read for a browser user does not show its header)."""
    if present is None:
        trajectory = fields.trajectory[0] if fields.trajectory else None
        return Columns(fields.question, fields.answer, trajectory, fields.id)
    shown = ", ".join(present[:20]) + (", ..." if len(present) > 20 else "")

    def missing(name: str, option: str) -> str:
        hint = f" (preset {fields.preset})" if fields.preset else ""
        listed = f" (columns: {shown})" if reveal else ""
        return f"field {name!r}{hint} is not a column of this file{listed}; choose one with {option}"

    if fields.question not in present:
        return missing(fields.question, "--question-field")
    answer = fields.answer if fields.answer in present else None
    if answer is None and "answer" in fields.required:
        return missing(str(fields.answer), "--answer-field")
    trajectory = next((c for c in fields.trajectory if c in present), None)
    if trajectory is None and ("trajectory" in fields.required or (fields.preset and fields.trajectory)):
        return missing(" / ".join(fields.trajectory), "--trajectory-field")
    id_column = fields.id if fields.id in present else next((c for c in ID_FIELDS if c in present), None)
    return Columns(fields.question, answer, trajectory, id_column)


def plain(value, table: bool):
    """numpy/arrow scalars -> Python values; in a table a missing cell (None, NaN) -> None and an
    integral float (Parquet stores integer columns with gaps as floats: 204.0) -> int."""
    if value is None:
        return None
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if table and isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return int(value)
    return value


def _is_chat(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


def _turn(messages: list[dict], roles: tuple[str, ...], last: bool):
    turns = [m.get("content") for m in messages if m.get("role") in roles]
    return (turns[-1] if last else turns[0]) if turns else None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (braces balanced), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j].strip() or None
    return None


def _answer(value, rule: str):
    if isinstance(value, str) and GSM8K_MARKER in value:
        value = value.rsplit(GSM8K_MARKER, 1)[1].strip() or value
    if rule == "boxed" and isinstance(value, str):
        boxed = last_boxed(value)
        if boxed is not None:
            return boxed
        return value.strip() if len(value.strip()) <= SHORT_ANSWER_CHARS else None  # a proof: the model's own answer
    return value


def _too_big(value) -> bool:
    return isinstance(value, str) and len(value) > MAX_CELL_BYTES


def map_row(
    obj, columns: Columns, fields: FieldMap, source: str, row_no: int, table: bool
) -> list[QuestionRecord | LineError]:
    """One row of a file -> its records (several for a list-valued trace) or errors naming the
    file, the row and the file's own column."""
    make_error = RowError if table else LineError
    if not isinstance(obj, dict):
        parsed = parse_line(obj, row_no, source)
        return [parsed]
    own = {"question": columns.question, "answer": columns.answer, "trajectory": columns.trajectory}
    question = plain(obj.get(columns.question), table)
    if _is_chat(question):
        question = _turn(question, ("user",), last=False)
    mapped: dict = {"question": question}
    if columns.answer:
        answer = _answer(plain(obj.get(columns.answer), table), fields.answer_rule)
        if answer is not None:
            mapped["answer"] = answer
    for name in (columns.id,) if columns.id else ID_FIELDS:
        rid = plain(obj.get(name), table)
        if rid is not None:
            mapped["id"] = rid
            break
    if table and "id" not in mapped:
        mapped["id"] = f"row{row_no}"
    traces: list = [None]
    expanded = False  # a list of traces: one record per element
    if columns.trajectory:
        trace = plain(obj.get(columns.trajectory), table)
        if _is_chat(trace):
            trace = _turn(trace, ("assistant",), last=True)
        expanded = isinstance(trace, (list, tuple))
        if expanded and not trace:
            return [make_error(source, row_no, columns.trajectory, "is an empty list (no trace to import)")]
        traces = list(trace) if expanded else [trace]
    out: list[QuestionRecord | LineError] = []
    for k, trace in enumerate(traces):
        row = dict(mapped, trajectory=trace) if trace is not None else dict(mapped)
        oversized = next((name for name in ("question", "trajectory") if _too_big(row.get(name))), None)
        if oversized:
            out.append(make_error(source, row_no, own[oversized], f"is longer than {MAX_CELL_BYTES >> 20} MiB"))
            continue
        parsed = parse_line(row, row_no, source)
        if isinstance(parsed, LineError):
            column = own.get(parsed.field or "") or parsed.field
            out.append(make_error(source, row_no, column, (f"element {k}: " if expanded else "") + parsed.message))
            continue
        if expanded:
            parsed.id, parsed.trace_index = f"{parsed.id}#{k}", k
        parsed.where = f"{source}, row {row_no}" if table else f"{source}:{row_no}"
        out.append(parsed)
    return out
