"""Readers of eval-pipeline logs behind the one reader (issue 21 item 1): lm-evaluation-harness
``--log_samples`` files, OpenAI-compatible chat output (OpenAI Batch, vLLM ``run_batch``, SGLang)
and Inspect AI logs (``.eval`` and ``.json``, written by ``inspect_ai``'s own writer:
tests/fixtures/eval_logs/make_eval_logs.py). Every record's question, answer, trace (reasoning
inside ``<think>…</think>``) and meta; every bad record one line naming file, record and field."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from backend.io.fields import FieldMap
from backend.io.readers import detect_layout, read_questions, read_questions_bytes

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "eval_logs"
LM_EVAL = LOGS / "samples_gsm8k_2026-12-03T08-40-12.345678.jsonl"  # written by lm-eval's own logger


# ----------------------------------------------------------------------------- lm-eval
def test_lm_eval_samples_question_target_and_think_trace():
    assert detect_layout(LM_EVAL) == "jsonl"  # the layout is found from the first line
    records, errors = read_questions(LM_EVAL)
    assert errors == []
    first = records[0]
    assert first.id == "gsm8k/0"
    assert first.question.startswith("Natalia sold clips to 48 of her friends")  # doc.question, not the few-shot prompt
    assert first.answer == "72"  # target "... #### 72"
    assert first.trajectory.startswith("<think>") and "</think>" in first.trajectory
    assert first.source["format"] == "lm-eval" and first.source["task"] == "gsm8k"
    assert first.source["doc_id"] == 0 and first.source["metrics"] == {"exact_match": 1.0}
    assert first.source["filter"] == "strict-match" and first.source["think_tags"] is True
    assert first.where == f"{LM_EVAL}:1"
    repeats = [r for r in records if r.id.startswith("gsm8k/1#")]  # repeats=2: one record per response
    assert [r.trace_index for r in repeats] == [0, 1] and repeats[0].trajectory != repeats[1].trajectory
    cut = records[-1]  # think_end_token: the harness kept only the final answer
    assert cut.id == "gsm8k/2" and "<think>" not in cut.trajectory and cut.source["think_tags"] is False


def test_lm_eval_bad_lines_name_line_and_field(tmp_path):
    arc = LOGS / "samples_arc_easy_2026-12-03T08-40-12.345678.jsonl"
    records, errors = read_questions(arc)
    assert records == [] and [str(e) for e in errors] == [
        f"{arc}:1: field 'resps': holds log-likelihoods (a multiple-choice task), not generated text"
    ]
    lines = LM_EVAL.read_text().splitlines()
    broken = json.loads(lines[1])
    del broken["doc"]
    path = tmp_path / LM_EVAL.name
    path.write_text("\n".join([lines[0], json.dumps(broken), lines[2]]) + "\n")
    records, errors = read_questions(path)
    assert [r.id for r in records] == ["gsm8k/0", "gsm8k/2"]
    assert [str(e) for e in errors] == [f"{path}:2: field 'doc': missing"]
    _, errors = read_questions(LM_EVAL, FieldMap.build("lm-eval", question="nope"))
    assert str(errors[0]) == f"{LM_EVAL}:1: field 'doc.nope': missing"


# ----------------------------------------------------------------------------- OpenAI-compatible
def test_openai_batch_output_reasoning_fields_and_failed_lines():
    path = LOGS / "openai_batch_output.jsonl"
    records, errors = read_questions(path)
    assert [r.id for r in records] == ["gsm8k-0", "gsm8k-1#0", "gsm8k-1#1"]
    vllm = records[0]  # vLLM's reasoning parser: message.reasoning_content
    assert vllm.question.startswith("Natalia sold clips") and vllm.answer == "72"
    assert vllm.trajectory == (
        "<think>In April she sold 48. In May half as many: 24. Wait, let me add: 48 + 24 = 72.</think>"
        "Natalia sold 48 + 24 = 72 clips.\n\n\\boxed{72}"
    )
    assert vllm.source["reasoning_field"] == "reasoning_content" and vllm.source["model"] == "Qwen/Qwen3-0.6B"
    o_series = records[1]  # n=2 choices, message.reasoning
    assert (
        o_series.trajectory.startswith("<think>12 dollars an hour")
        and o_series.source["reasoning_field"] == "reasoning"
    )
    assert o_series.source["usage"]["completion_tokens_details"]["reasoning_tokens"] == 256
    assert [str(e) for e in errors] == [
        f"{path}:3: field 'error': the request failed: This request could not be executed before the completion "
        "window expired.",
        f"{path}:4: field 'messages': missing: a completion carries no question; keep the request's messages on "
        "the line (or a 'question' field), or give the batch input file (--batch-input FILE) to join by custom_id",
    ]
    _, hidden = read_questions(path, reveal=False)  # a server path read for a browser user: no quoted messages
    assert str(hidden[0]) == f"{path}:3: field 'error': the request failed"


def test_openai_batch_output_joined_to_its_batch_input_by_custom_id():
    """The OpenAI Batch API writes outputs without their requests, in any order: the batch input
    file gives each output its question; a custom_id without a request, and a bad input line
    (no custom_id, one used twice), are one line each naming the file, the line and the id."""
    output, batch_input = LOGS / "openai_batch_output_bare.jsonl", LOGS / "openai_batch_input.jsonl"
    _, unjoined = read_questions(output)
    assert [e.field for e in unjoined] == ["messages"] * 3  # without the input no line has a question
    records, errors = read_questions(output, FieldMap.build("openai-chat", batch_input=str(batch_input)))
    assert [(r.id, r.line) for r in records] == [("gsm8k-1", 1), ("gsm8k-0", 2)]
    weng, natalia = records
    assert weng.question.startswith("Weng earns $12") and natalia.question.startswith("Natalia sold clips")
    assert natalia.trajectory.startswith("<think>In April 48") and natalia.trajectory.endswith("\\boxed{72}")
    assert natalia.answer is None and natalia.source["custom_id"] == "gsm8k-0"  # no answer field: the model's own
    assert [str(e) for e in errors] == [
        f"{batch_input}:3: field 'custom_id': 'gsm8k-0' is used twice (first on line 1)",
        f"{batch_input}:4: field 'custom_id': missing: every request of a batch needs one",
        f"{output}:3: field 'custom_id': 'gsm8k-7' has no request in the batch input {batch_input}",
    ]


def test_batch_input_answers_and_whole_file_problems(tmp_path):
    output, batch_input = LOGS / "openai_batch_output_bare.jsonl", tmp_path / "in.jsonl"
    lines = [json.loads(x) for x in (LOGS / "openai_batch_input.jsonl").read_text().splitlines()[:2]]
    lines[0]["answer"], lines[1]["body"]["messages"] = "72", [{"role": "system", "content": "only a system turn"}]
    batch_input.write_text("".join(json.dumps(x) + "\n" for x in lines))
    records, errors = read_questions(output, FieldMap.build("openai-chat", batch_input=str(batch_input)))
    assert [(r.id, r.answer) for r in records] == [("gsm8k-0", "72")]  # the request line's answer field
    assert str(errors[0]) == (
        f"{batch_input}:2: field 'body.messages': missing: the request of custom_id 'gsm8k-1' has no user message"
    )
    _, missing = read_questions(output, FieldMap.build("openai-chat", batch_input=str(tmp_path / "nope.jsonl")))
    assert [str(e) for e in missing] == [
        f"{tmp_path / 'nope.jsonl'}: cannot read the batch input file: No such file or directory"
    ]
    plain = tmp_path / "questions.jsonl"
    plain.write_text('{"question": "Q?"}\n')
    _, wrong = read_questions(plain, FieldMap.build(None, batch_input=str(batch_input)))
    assert "joins OpenAI-compatible batch output" in str(wrong[0])


def test_plain_chat_completions_and_upload():
    path = LOGS / "sglang_chat.jsonl"
    records, errors = read_questions_bytes(path.read_bytes(), "mine.jsonl")
    assert errors == [] and records[0].question == "What is 7 * 8?" and records[0].answer is None
    assert records[0].trajectory.startswith("<think>Seven eights.") and records[0].trajectory.endswith("7 * 8 = 56")
    assert records[0].where == "mine.jsonl:1"


# ----------------------------------------------------------------------------- Inspect AI
@pytest.mark.parametrize("name", ["gsm8k_reasoning.eval", "gsm8k_reasoning.json"])
@pytest.mark.parametrize("use_package", [False, True])
def test_inspect_logs_written_by_inspect(name, use_package, monkeypatch):
    from backend.io import inspect_logs

    if use_package and not inspect_logs.has_package():
        pytest.skip("the inspect extra (inspect-ai) is not installed")
    monkeypatch.setattr(inspect_logs, "has_package", lambda: use_package)
    monkeypatch.setenv(inspect_logs.READER_ENV, "inspect_ai" if use_package else "builtin")
    path = LOGS / name
    assert detect_layout(path) == "inspect"
    records, errors = read_questions(path)
    assert errors == []
    assert sorted(r.id for r in records) == ["1#1", "1#2", "2#1", "2#2"]  # two epochs: each epoch a record
    records = sorted(records, key=lambda r: r.id)  # .json lists samples by epoch, .eval by sample
    first = records[0]
    assert first.question.startswith("Natalia sold clips") and first.answer == "72"
    assert first.trajectory.startswith("<think>In April she sold 48.") and "</think>" in first.trajectory
    assert first.trajectory.endswith("ANSWER: 72")
    assert first.source["sample_id"] == 1 and first.source["epoch"] == 1
    assert first.source["scores"] == {"match": {"value": "C", "answer": "72"}}
    assert first.source["task"] == "gsm8k_reasoning" and first.source["model"] == "mockllm/model"
    assert first.where == f"{path}, sample 1 epoch 1"
    assert records[2].trajectory != records[3].trajectory  # the epochs differ


def _rewrite(src: Path, dst: Path, change) -> None:
    """A copy of an .eval archive (deflated) with some members changed: ``change(name, data) -> data``."""
    from backend.io.zipped import open_zip, read_member

    with open_zip(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, change(info.filename, read_member(zin, info.filename)))


def test_inspect_eval_bad_member_and_missing_output_name_the_sample(tmp_path):
    from backend.io import inspect_logs

    def change(name: str, data: bytes) -> bytes:
        if name == "samples/2_epoch_1.json":
            sample = json.loads(data)
            sample["output"] = {"model": "mockllm/model", "choices": []}
            sample["messages"] = [m for m in sample["messages"] if m["role"] != "assistant"]
            return json.dumps(sample).encode()
        return b"{not json" if name == "samples/1_epoch_2.json" else data

    path = tmp_path / "broken.eval"
    _rewrite(LOGS / "gsm8k_reasoning.eval", path, change)
    items = list(inspect_logs.iter_log(path, use_package=False))
    assert [i.id for i in items if hasattr(i, "question")] == ["1#1", "2#2"]
    assert [str(i) for i in items if not hasattr(i, "question")] == [
        f"{path}, member samples/1_epoch_2.json: not readable JSON (Expecting property name enclosed in double "
        "quotes: line 1 column 2 (char 1))",
        f"{path}, sample 2 epoch 1: field 'output.choices': missing: no assistant message",
    ]


def test_zip_members_are_bounded(tmp_path):
    from backend.io import inspect_logs
    from backend.io.zipped import ZipMemberError, open_zip, read_member

    with open_zip(LOGS / "gsm8k_reasoning.eval") as archive:  # zstd members (Inspect's writer)
        assert json.loads(read_member(archive, "header.json"))["eval"]["task"] == "gsm8k_reasoning"
        with pytest.raises(
            ZipMemberError, match=r"member 'header.json': is [\d.e-]+ MiB inflated, more than [\d.e-]+ MiB"
        ):
            read_member(archive, "header.json", max_bytes=100)
    with pytest.raises(ZipMemberError, match="has more than 3 members"):
        open_zip(LOGS / "gsm8k_reasoning.eval", max_members=3)
    bomb = tmp_path / "bomb.eval"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("header.json", b"{}")
        z.writestr("samples/1_epoch_1.json", b" " * (80 << 20))  # 80 MiB of spaces, deflated to ~80 kB
    items = list(inspect_logs.iter_log(bomb, use_package=False))
    assert [str(i) for i in items] == [f"{bomb}, member samples/1_epoch_1.json: is 80 MiB inflated, more than 64 MiB"]
    (error,) = inspect_logs.iter_log(tmp_path / "missing.eval", use_package=False)
    assert str(error) == f"{tmp_path / 'missing.eval'}: not a readable zip archive (FileNotFoundError)"
