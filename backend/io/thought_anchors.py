"""Thought Anchors problem folders (Bogdan, Macar et al. 2025; their published ``math_rollouts``):

    <model>/temperature_0.6_top_p_0.95/correct_base_solution/problem_330/
        problem.json         {"problem", "level", "type", "gt_solution", "gt_answer"}
        base_solution.json   {"prompt", "solution", "full_cot", "answer", "is_correct"}
        chunks.json          {"source_text", "solution_text", "chunks": [...]}
        chunk_<k>/solutions.json  [{"chunk_removed", "prefix_without_chunk", "chunk_resampled",
                                    "rollout", "full_cot", "answer", "is_correct"}, ...]

``solution`` is the model's text after the prompt (thinking, ``</think>``, final answer);
``full_cot`` is prompt + solution. Any folder above problem folders may be given: every
``problem_*`` folder below it with both files becomes one row (natural order: 2 before 10), its
id the folder's path relative to the given one. A row is the two JSON objects merged
(``problem.json`` wins on a clash), so ``--question-field`` etc. name their keys.

Rollouts (``generate_rollouts.py`` of interp-reasoning/thought-anchors): a problem folder with
``chunk_<k>/solutions.json`` files is a base run whose steps are the chunks of ``chunks.json``
(segmentation ``thought-anchors``, their splitter; the batch checks the run's steps against
``chunks.json``) and one rollout per element of each ``solutions.json``: a branch of the base run
at step k (``kind: resample``), its trace ``prefix_without_chunk + rollout`` (exactly what their
model was given and wrote), so counterfactual importance comes from their rollouts with no
resampling. Rollouts that hold a generation ``error`` are left out, as their analysis does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from backend.io.records import LineError, QuestionRecord
from backend.io.tables import Row, Table
from backend.io.traces import SampleError, make_record
from backend.io.walk import files_below

PROBLEM_FILE, SOLUTION_FILE, CHUNKS_FILE, ROLLOUTS_FILE = (
    "problem.json",
    "base_solution.json",
    "chunks.json",
    "solutions.json",
)
SEGMENTATION = "thought-anchors"  # backend.engine.specs: their split_solution_into_chunks
ROLLOUT_FIELDS = ("prefix_without_chunk", "rollout")


def _natural(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.as_posix())]


def problem_folders(root: Path) -> list[Path]:
    """Folders at or below ``root`` holding a ``problem.json`` (natural order)."""
    found = [p.parent for p in files_below(root, lambda name: name == PROBLEM_FILE)] if root.is_dir() else []
    return sorted(found, key=_natural)


def is_thought_anchors(path: Path) -> bool:
    return path.is_dir() and (path / PROBLEM_FILE).is_file() or bool(problem_folders(path))


class FolderError(LineError):
    """A bad problem folder: printed as ``FOLDER: ...``."""

    def __str__(self) -> str:
        return f"{self.source}: {f'field {self.field!r}: ' if self.field else ''}{self.message}"


def _load(folder: Path) -> dict | FolderError:
    row: dict = {}
    for name in (SOLUTION_FILE, PROBLEM_FILE):
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return FolderError(str(folder), 0, None, f"has no {name}")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            return FolderError(str(folder), 0, None, f"{name} is not readable JSON ({str(exc)[:120]})")
        if not isinstance(data, dict):
            return FolderError(str(folder), 0, None, f"{name} is not a JSON object")
        row.update(data)
    return row


def thought_anchors_table(root: Path) -> Table | LineError:
    folders = problem_folders(root)
    if not folders:
        return LineError(str(root), 0, None, f"has no Thought Anchors problem folders ({PROBLEM_FILE})")
    first = _load(folders[0])
    columns = sorted(first) if isinstance(first, dict) else ["problem", "gt_answer", "solution", "full_cot"]

    def read(wanted: list[str]) -> Iterator[Row]:
        for row_no, folder in enumerate(folders, start=1):
            row = _load(folder)
            if isinstance(row, dict):
                rel = folder.relative_to(root).as_posix() if folder != root else folder.name
                row = {k: row.get(k) for k in wanted if k != "id"} | {"id": rel}
            yield str(folder), row_no, row

    return Table(str(root), columns, read)


# ----------------------------------------------------------------------------- rollouts
def chunk_folders(folder: Path) -> list[tuple[int, Path]]:
    """``(k, chunk_<k>/solutions.json)`` of a problem folder, by k."""
    found = []
    for child in folder.glob("chunk_*"):
        tail = child.name.removeprefix("chunk_")
        if tail.isdigit() and (child / ROLLOUTS_FILE).is_file():
            found.append((int(tail), child / ROLLOUTS_FILE))
    return sorted(found)


def normalized_chunks_sha(chunks: list[str]) -> str:
    """One hash of a list of chunks with whitespace runs made single spaces: the base run's steps
    (which keep the text's own whitespace) are compared with ``chunks.json`` through it."""
    import hashlib

    return hashlib.sha256("\n".join(" ".join(c.split()) for c in chunks).encode("utf-8")).hexdigest()


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return FolderError(str(path), 0, None, f"{what} is not readable JSON ({str(exc)[:120]})")


def _thinking(text: str) -> str:
    """A rollout cut off before ``</think>`` (max tokens) is still all thinking, as its base run's is."""
    return text if "</think>" in text else "<think>" + text


def mark_base(record: QuestionRecord, folder: Path) -> LineError | None:
    """Make the base record of a problem folder with rollouts a run with their chunks as steps."""
    chunks = _read_json(folder / CHUNKS_FILE, CHUNKS_FILE) if (folder / CHUNKS_FILE).is_file() else None
    if chunks is None:
        return FolderError(str(folder), 0, None, f"has chunk_<k>/{ROLLOUTS_FILE} rollouts but no {CHUNKS_FILE}")
    if isinstance(chunks, LineError):
        return chunks
    listed = chunks.get("chunks") if isinstance(chunks, dict) else None
    if not isinstance(listed, list) or not all(isinstance(c, str) for c in listed):
        return FolderError(str(folder / CHUNKS_FILE), 0, "chunks", "missing or not a list of strings")
    record.segmentation = SEGMENTATION
    record.source = {
        "format": "thought-anchors",
        "problem": record.id,
        "n_chunks": len(listed),
        "chunks_sha": normalized_chunks_sha(listed),
    }
    return None


def rollout_records(folder: Path, base: QuestionRecord) -> Iterator[QuestionRecord | LineError]:
    """The rollouts of a problem folder as branches of ``base`` (chunk by chunk, in file order)."""
    for k, path in chunk_folders(folder):
        solutions = _read_json(path, ROLLOUTS_FILE)
        if isinstance(solutions, LineError):
            yield solutions
            continue
        if not isinstance(solutions, list):
            yield FolderError(str(path), 0, None, "is not a JSON list of rollouts")
            continue
        for j, rollout in enumerate(solutions):
            name = f"rollout {j}"
            if not isinstance(rollout, dict):
                yield SampleError(str(path), j + 1, None, "is not a JSON object", record=name)
                continue
            if "error" in rollout:
                continue  # a failed generation (their analysis skips these too)
            missing = next((f for f in ROLLOUT_FIELDS if not isinstance(rollout.get(f), str)), None)
            if missing:
                state = "missing" if rollout.get(missing) is None else "must be a string"
                yield SampleError(str(path), j + 1, missing, state, record=name)
                continue
            record = make_record(
                {
                    "id": f"{base.id}/chunk_{k}#{j}",
                    "question": base.question,
                    "answer": base.answer,
                    "trajectory": _thinking(rollout["prefix_without_chunk"] + rollout["rollout"]),
                },
                source=str(path),
                line=j + 1,
                where=f"{path}, {name}",
                fields={"trajectory": "rollout"},
                origin={
                    "format": "thought-anchors-rollout",
                    "problem": base.id,
                    "chunk": k,
                    "rollout": j,
                    "answer": rollout.get("answer"),
                    "is_correct": rollout.get("is_correct"),
                },
                error=lambda s, ln, f, m, name=name: SampleError(s, ln, f, m, record=name),
            )
            if isinstance(record, QuestionRecord):
                record.segmentation = SEGMENTATION
                # their chunk k (0-based) is step k + 1 here (steps count from 1, docs/architecture.md)
                record.branch = {
                    "of": base.id,
                    "branch_at": k + 1,
                    "step_base": 1,
                    "kind": "resample",
                    "source": "thought-anchors",
                }
            yield record
