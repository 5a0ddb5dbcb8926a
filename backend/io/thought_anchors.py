"""Thought Anchors problem folders (Bogdan, Macar et al. 2025; their published ``math_rollouts``):

    <model>/temperature_0.6_top_p_0.95/correct_base_solution/problem_330/
        problem.json         {"problem", "level", "type", "gt_solution", "gt_answer"}
        base_solution.json   {"prompt", "solution", "full_cot", "answer", "is_correct"}
        chunks.json, chunk_<k>/solutions.json  (resamples; not read here)

``solution`` is the model's text after the prompt (thinking, ``</think>``, final answer);
``full_cot`` is prompt + solution. Any folder above problem folders may be given: every
``problem_*`` folder below it with both files becomes one row (natural order: 2 before 10), its
id the folder's path relative to the given one. A row is the two JSON objects merged
(``problem.json`` wins on a clash), so ``--question-field`` etc. name their keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from backend.io.records import LineError
from backend.io.tables import Row, Table
from backend.io.walk import files_below

PROBLEM_FILE, SOLUTION_FILE = "problem.json", "base_solution.json"


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
