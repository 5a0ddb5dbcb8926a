"""Fixture writers: a few real-shaped rows in each dataset layout the readers accept, with the
column names of the published datasets (OpenR1-Math-220k, s1K, s1K-1.1, LIMO, GSM8K, MATH-500,
Thought Anchors' problem folders). Shared by the reader tests and the end-to-end batch test."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

THINK = "<think>Two plus four is six. Wait, let me check: 2 + 4 = 6.</think> So \\boxed{6}."
THINK_B = "<think>Three times three is nine. Hmm, 3 * 3 = 9 indeed.</think> \\boxed{9}"


def write_openr1_shards(folder: Path) -> Path:
    """Two Parquet shards as the hub stores them (data/train-0000k-of-00002.parquet)."""
    data = folder / "data"
    data.mkdir(parents=True)
    common = {"problem_type": ["Algebra"], "question_type": ["math-word-problem"], "source": ["olympiads"]}
    rows = [
        ("What is 2 + 4?", "6", "u-1", [THINK, THINK.replace("six", "6")], [True, True]),
        ("What is 3 * 3?", "9", "u-2", [THINK_B], [True]),
    ]
    for i, (problem, answer, uuid, generations, correct) in enumerate(rows):
        table = pa.table(
            {
                "problem": [problem],
                "solution": [f"The answer is {answer}."],
                "answer": [answer],
                **common,
                "uuid": [uuid],
                "is_reasoning_complete": [[True] * len(generations)],
                "generations": [generations],
                "correctness_math_verify": [correct],
                "messages": [[{"role": "user", "content": problem}, {"role": "assistant", "content": generations[0]}]],
            }
        )
        pq.write_table(table, data / f"train-0000{i}-of-00002.parquet")
    return folder


def write_s1k(path: Path) -> Path:
    """s1K: thinking_trajectories is a list column; the answer sits in a worked solution."""
    pq.write_table(
        pa.table(
            {
                "solution": ["Adding gives $2+4=\\boxed{6}$.", "128"],
                "question": ["What is 2 + 4?", "What is 2^7?"],
                "cot_type": ["math", "math"],
                "source_type": ["qfq/openaimath/Algebra", "AI-MO/NuminaMath-CoT/aops_forum"],
                "metadata": ["{}", "{}"],
                "cot": pa.array([None, None], pa.null()),
                "thinking_trajectories": [[THINK.split("</think>")[0][7:]], ["Two to the seventh is 128."]],
                "attempt": ["6", "128"],
            }
        ),
        path,
    )
    return path


def write_s1k_11_arrow(path: Path) -> Path:
    """s1K-1.1 as an Arrow IPC file: deepseek_thinking_trajectory is a plain string column."""
    table = pa.table(
        {
            "solution": ["$x = \\boxed{5}$"],
            "question": ["Solve 2x = 10."],
            "cot_type": ["math"],
            "deepseek_thinking_trajectory": ["Divide both sides by 2: x = 5. Wait, 2 * 5 = 10, yes."],
            "deepseek_attempt": ["x = 5"],
        }
    )
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return path


def write_limo(path: Path) -> Path:
    rows = [
        {"question": "What is 2 + 4?", "solution": THINK, "answer": "6"},
        {"question": "What is 3 * 3?", "solution": THINK_B, "answer": 9},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def write_gsm8k_csv(path: Path) -> Path:
    path.write_text(
        'question,answer\n"Ann has 3 pens and buys 4 more. How many pens?","3 + 4 = <<3+4=7>>7\n#### 7"\n'
        '"A box holds 12 eggs. How many in 5 boxes, as a code like 060?","#### 060"\n',
        encoding="utf-8",
    )
    return path


def write_thought_anchors(root: Path) -> Path:
    """<model>/temperature_0.6_top_p_0.95/correct_base_solution/problem_<n>/ folders."""
    base = root / "deepseek-r1-distill-llama-8b" / "temperature_0.6_top_p_0.95" / "correct_base_solution"
    for n, (problem, answer, solution) in {
        10: ("What is 3 * 3?", "9", THINK_B[len("<think>") :]),
        2: ("What is 2 + 4?", "6", THINK[len("<think>") :]),
    }.items():
        folder = base / f"problem_{n}"
        folder.mkdir(parents=True)
        (folder / "problem.json").write_text(
            json.dumps({"problem": problem, "level": "Level 1", "type": "Algebra", "gt_answer": answer})
        )
        prompt = f"Solve this math problem step by step. Problem: {problem} Solution: \n<think>\n"
        (folder / "base_solution.json").write_text(
            json.dumps(
                {
                    "prompt": prompt,
                    "solution": solution,
                    "full_cot": prompt + solution,
                    "answer": answer,
                    "is_correct": True,
                }
            )
        )
        (folder / "chunks.json").write_text(json.dumps({"chunks": solution.split(". ")}))
    return root


def write_chat_jsonl(path: Path) -> Path:
    """A trace column of chat messages: the assistant turn is the trace."""
    messages = [{"role": "user", "content": "What is 2 + 4?"}, {"role": "assistant", "content": THINK}]
    path.write_text(
        json.dumps({"id": "chat", "question": "What is 2 + 4?", "answer": "6", "messages": messages}) + "\n"
    )
    return path


TA_PROMPT = "Solve this math problem step by step. You MUST put your final answer in \\boxed{{}}. Problem: {} Solution: \n<think>\n"


def write_thought_anchors_rollouts(root: Path, thinking: str, answer: str, rollouts: dict[int, list[str]]) -> Path:
    """A problem folder as interp-reasoning/thought-anchors' ``generate_rollouts.py`` writes it:
    problem.json, base_solution.json, chunks.json ({source_text, solution_text, chunks}: their
    ``split_solution_into_chunks``, which ``thought_anchors_chunks`` reproduces exactly) and
    chunk_<k>/solutions.json, one entry per rollout: ``chunk_removed``, ``prefix_without_chunk``
    (the chunks before k joined by spaces, as their cumulative prefix minus chunk k),
    ``chunk_resampled``, ``rollout``, ``full_cot``, ``answer``, ``is_correct``. ``rollouts[k]``
    are the continuations written after chunk k was removed (thinking, ``</think>``, answer)."""
    from backend.engine.trajectory import thought_anchors_chunks

    problem = "What is the coefficient of $a^2b^2$ in $(a+b)^4$?"
    folder = (
        root / "deepseek-r1-distill-qwen-14b" / "temperature_0.6_top_p_0.95" / "correct_base_solution" / "problem_2238"
    )
    folder.mkdir(parents=True)
    (folder / "problem.json").write_text(
        json.dumps(
            {"problem": problem, "level": "Level 3", "type": "Counting & Probability", "gt_answer": answer}, indent=2
        )
    )
    prompt = TA_PROMPT.format(problem)
    solution = f"{thinking}\n</think>\n\nThe coefficient is $\\boxed{{{answer}}}$."
    (folder / "base_solution.json").write_text(
        json.dumps(
            {
                "prompt": prompt,
                "solution": solution,
                "full_cot": prompt + solution,
                "answer": answer,
                "is_correct": True,
            },
            indent=2,
        )
    )
    source_text = prompt + solution
    solution_text = source_text.split("<think>")[1].strip().split("</think>")[0].strip()
    chunks = thought_anchors_chunks(solution_text)
    (folder / "chunks.json").write_text(
        json.dumps({"source_text": source_text, "solution_text": solution_text, "chunks": chunks}, indent=2)
    )
    cumulative, running = [], ""
    for chunk in chunks:
        running += chunk + " "
        cumulative.append(running.strip())
    for k, texts in rollouts.items():
        prefix = cumulative[k].replace(chunks[k], "").strip()
        entries = []
        for text in texts:
            got = text.rsplit("\\boxed{", 1)[-1].split("}", 1)[0] if "\\boxed{" in text else ""
            entries.append(
                {
                    "chunk_removed": chunks[k],
                    "prefix_without_chunk": prefix,
                    "chunk_resampled": thought_anchors_chunks(text.split("</think>")[0])[0],
                    "rollout": text,
                    "full_cot": TA_PROMPT.format(problem) + prefix + text,
                    "answer": got,
                    "is_correct": got == answer,
                }
            )
        (folder / f"chunk_{k}").mkdir()
        (folder / f"chunk_{k}" / "solutions.json").write_text(json.dumps(entries, indent=2))
    return root
