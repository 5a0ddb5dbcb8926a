"""The one atomic write (docs/architecture.md §5): a temp file in the target's folder, fsync,
mode 0644, ``os.replace``, fsync of the folder. Readers see the old file or the new one, never
half of one, and a completed write survives a crash.

A read-only server (``raml serve --read-only``, ``backend.readonly``) writes nothing: every write
is refused with ``ReadOnlyError`` before the target is looked at.

Every failure raises ``WriteError`` naming the path and the reason (never a swallowed
``OSError``). The target must be a regular file or absent: a directory, FIFO, device or socket
is never replaced, and a symbolic link is written through only with ``follow_symlinks=True``
(the link stays, its target file is replaced).
"""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from backend import readonly
from backend.errors import WriteError
from backend.store.schema import FILE_MODE


def os_reason(exc: OSError) -> str:
    """A short, user-facing reason for an ``OSError``."""
    if exc.errno == errno.ENOSPC:
        return "disk full (no space left on device)"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"not writable ({exc.strerror})"
    if exc.errno == errno.ENOENT:
        return "its folder does not exist"
    return exc.strerror or str(exc)


def resolve_target(path: str | Path, *, follow_symlinks: bool = False) -> Path:
    """The regular file a write to ``path`` replaces (``path`` itself, or a link's target).

    Raises ``WriteError`` for a directory, any other non-regular file, or a symbolic link
    without ``follow_symlinks``.
    """
    path = Path(path)
    if path.is_symlink():
        if not follow_symlinks:
            raise WriteError(
                f"{path} is a symbolic link; refusing to replace it (pass --follow-symlinks to write its target)"
            )
        path = Path(os.path.realpath(path))
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise WriteError(f"cannot write {path}: its folder does not exist") from None
        return path
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {os_reason(exc)}") from None
    if stat.S_ISDIR(mode):
        raise WriteError(f"{path} is a directory; give a file name")
    if not stat.S_ISREG(mode):
        raise WriteError(f"{path} is not a regular file (a device, pipe or socket); refusing to replace it")
    return path


@contextmanager
def atomic_writer(path: str | Path, *, follow_symlinks: bool = False, mode: int = FILE_MODE) -> Iterator[IO[bytes]]:
    """Yield a binary file handle whose content replaces ``path`` when the block ends without error."""
    readonly.check("writing files")
    target = resolve_target(path, follow_symlinks=follow_symlinks)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise WriteError(f"cannot write {target}: {os_reason(exc)}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        fsync_dir(folder)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise WriteError(f"cannot write {target}: {os_reason(exc)}") from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def write_bytes(path: str | Path, data: bytes, *, follow_symlinks: bool = False) -> Path:
    with atomic_writer(path, follow_symlinks=follow_symlinks) as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | Path, text: str, *, follow_symlinks: bool = False) -> Path:
    return write_bytes(path, text.encode("utf-8"), follow_symlinks=follow_symlinks)


def write_json(path: str | Path, obj, *, indent: int | None = None) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False))


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """``np.savez`` of ``arrays`` (no pickles), atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as its own options
    return write_bytes(path, buffer.getvalue())


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (a rename into it) to the disk; a no-op where the file system
    cannot sync folders (EINVAL, ENOTSUP: some network and virtual file systems)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    """Flush a file written by another library (parquet, safetensors) to the disk."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
