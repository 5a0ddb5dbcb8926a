"""A bounded walk of a folder the user named (docs/reliability.md, SECURITY.md): at most
``MAX_DEPTH`` folders deep and ``MAX_ENTRIES`` entries looked at, never into ``/proc``, ``/sys``
or ``/dev``, never out of the folder through a symlink (a symlinked folder is not entered; a
symlinked file counts only when it resolves inside the folder). Going past a bound is one
``WalkError`` line, never a traceback or a walk of the whole disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from backend.errors import InputError

MAX_DEPTH = 8  # folders below the one named (Thought Anchors: model/temp/kind/problem_N is 4)
MAX_ENTRIES = 100_000  # files and folders looked at in one walk
SYSTEM_DIRS = ("/proc", "/sys", "/dev")


class WalkError(InputError):
    """A folder too deep or too large to walk, or a system folder."""


def is_system(path: str | Path) -> bool:
    """True for ``/proc``, ``/sys``, ``/dev`` and anything below them (after resolving)."""
    real = os.path.realpath(path)
    return any(real == d or real.startswith(d + os.sep) for d in SYSTEM_DIRS)


def _inside(real: str, top: str) -> bool:
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def files_below(
    folder: str | Path,
    keep: Callable[[str], bool] = lambda name: True,
    max_depth: int = MAX_DEPTH,
    max_entries: int = MAX_ENTRIES,
) -> list[Path]:
    """Files at or below ``folder`` whose name passes ``keep``, sorted; raises ``WalkError``
    (one line naming the folder and the bound) past ``max_depth`` or ``max_entries``."""
    shown = str(folder)
    top = os.path.realpath(folder)
    if is_system(top):
        raise WalkError(f"{shown}: is a system folder (/proc, /sys, /dev); name a data folder")
    found: list[Path] = []
    seen = 0
    stack: list[tuple[str, int]] = [(top, 0)]
    while stack:
        current, depth = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:  # unreadable folder: skipped, as the rest of a dataset still reads
            continue
        for entry in entries:
            seen += 1
            if seen > max_entries:
                raise WalkError(f"{shown}: holds more than {max_entries:,} files and folders; name a smaller folder")
            try:
                if entry.is_symlink():
                    real = os.path.realpath(entry.path)
                    if not _inside(real, top) or not os.path.isfile(real):
                        continue  # out of the folder, or a symlinked folder (a cycle): not followed
                    if keep(entry.name):
                        found.append(Path(entry.path))
                elif entry.is_dir(follow_symlinks=False):
                    if is_system(entry.path):
                        continue
                    if depth + 1 > max_depth:
                        raise WalkError(
                            f"{shown}: folders nest deeper than {max_depth} levels; name a folder nearer the data"
                        )
                    stack.append((entry.path, depth + 1))
                elif entry.is_file(follow_symlinks=False) and keep(entry.name):
                    found.append(Path(entry.path))
            except OSError:
                continue
    return sorted(found)
