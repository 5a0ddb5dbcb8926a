"""One bounded reader of zip members (zip-based formats: Inspect ``.eval`` logs, ...).

A zip's directory says how large each member is, but it can lie, and a small member may
inflate to gigabytes (a zip bomb). ``open_zip`` refuses archives with more than ``MAX_MEMBERS``
members; ``read_member`` refuses a member whose declared size is over the bound before reading
and stops reading as soon as the inflated bytes pass it (so a lying header costs at most the
bound); ``iter_member_lines`` yields a member's lines, each bounded while it is read. Every
refusal is one ``ZipMemberError`` line naming the archive and the member.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

from backend.errors import InputError

MAX_MEMBERS = 100_000
MAX_MEMBER_BYTES = 64 << 20  # 64 MiB: one member read whole
CHUNK = 1 << 20


class ZipMemberError(InputError):
    """An archive or member that is not readable within the bounds."""


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


def open_zip(path: str | Path, max_members: int = MAX_MEMBERS) -> zipfile.ZipFile:
    """The archive at ``path``; one line if it is not a zip or has too many members."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise ZipMemberError(f"{path}: not a readable zip archive ({type(exc).__name__})") from None
    if len(archive.infolist()) > max_members:
        archive.close()
        raise ZipMemberError(f"{path}: has more than {max_members:,} members")
    return archive


def read_member(archive: zipfile.ZipFile, name: str, max_bytes: int = MAX_MEMBER_BYTES) -> bytes:
    """The inflated bytes of member ``name``, at most ``max_bytes`` (declared or real)."""
    where = f"{archive.filename}: member {name!r}"
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ZipMemberError(f"{where}: not in the archive") from None
    if info.file_size > max_bytes:
        raise ZipMemberError(f"{where}: is {_mib(info.file_size)} inflated, more than {_mib(max_bytes)}")
    parts: list[bytes] = []
    total = 0
    try:
        with archive.open(info) as stream:
            while True:
                chunk = stream.read(min(CHUNK, max_bytes + 1 - total))
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise ZipMemberError(f"{where}: inflates to more than {_mib(max_bytes)}")
                parts.append(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise ZipMemberError(f"{where}: unreadable ({type(exc).__name__})") from None
    return b"".join(parts)


def iter_member_lines(archive: zipfile.ZipFile, name: str, max_line_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without its line break) of member ``name``; a line longer
    than ``max_line_bytes`` raises ``ZipMemberError`` as soon as that many bytes were read."""
    where = f"{archive.filename}: member {name!r}"
    try:
        stream = archive.open(name)
    except KeyError:
        raise ZipMemberError(f"{where}: not in the archive") from None
    with stream:
        line_no = 0
        while True:
            raw = stream.readline(max_line_bytes + 1)
            if not raw:
                return
            line_no += 1
            if len(raw.rstrip(b"\r\n")) > max_line_bytes:
                raise ZipMemberError(f"{where}: line {line_no} is longer than {_mib(max_line_bytes)}")
            yield line_no, raw.rstrip(b"\n").rstrip(b"\r")
