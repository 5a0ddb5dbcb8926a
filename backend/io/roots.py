"""Where a "path on the server" may point (SECURITY.md): the data roots. A browser user can
name files only below them; everything else on the server's disk is refused before it is
looked at (the same line whether it exists or not), after resolving symlinks and ``..``.

- Default: one folder ``data/`` beside the cache (``<cache>/../data``).
- ``RAML_DATA_ROOTS`` (``os.pathsep``-separated folders) adds more.
- ``RAML_DATA_ROOTS`` set but empty: no server path at all (uploads only).
- A read-only server (``raml serve --read-only``, ``backend.readonly``): no server path at all,
  whatever ``RAML_DATA_ROOTS`` says; ``confine`` refuses with ``ReadOnlyError``.

``/proc``, ``/sys`` and ``/dev`` are refused even below a root. The CLI is not confined: its user
already has a shell.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from backend import readonly
from backend.errors import InputError
from backend.io.walk import is_system

ENV = "RAML_DATA_ROOTS"
DEFAULT_FOLDER = "data"


class OutsideRootsError(InputError):
    """A server path outside the data roots (or server paths are off)."""


def data_roots(cache_root: str | Path, environ: Mapping[str, str] = os.environ) -> list[Path]:
    """The folders server paths may point into, resolved (see the module doc); none on a read-only server."""
    if readonly.is_read_only(environ):
        return []
    raw = environ.get(ENV)
    if raw is not None and not raw.strip():
        return []
    roots = [Path(cache_root).expanduser().resolve().parent / DEFAULT_FOLDER]
    for part in (raw or "").split(os.pathsep):
        if part.strip():
            roots.append(Path(part.strip()).expanduser().resolve())
    unique: list[Path] = []
    for r in roots:
        if r not in unique:
            unique.append(r)
    return unique


def confine(text: str, roots: list[Path]) -> Path:
    """The resolved path ``text`` names, if it lies in one of ``roots``; else ``OutsideRootsError``
    (one line that names neither the resolved target nor whether it exists). A relative path is
    taken below the first root. A read-only server refuses every path (``ReadOnlyError``)."""
    readonly.check("reading files on the server")
    if not roots:
        raise OutsideRootsError(f"server paths are off on this server ({ENV} is empty): upload the file instead")
    given = Path(text).expanduser()
    if not given.is_absolute():
        given = roots[0] / given
    real = os.path.realpath(given)  # symlinks and ".." resolved before the check
    for root in roots:
        top = os.path.realpath(root)
        if (real == top or real.startswith(top.rstrip(os.sep) + os.sep)) and not is_system(real):
            return Path(real)
    allowed = ", ".join(str(r) for r in roots)
    raise OutsideRootsError(
        f"{text!r} is not inside a data folder of this server ({allowed}); put the file there or add a folder to {ENV}"
    )
