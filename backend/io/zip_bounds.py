"""Bounded reading of zip members (Inspect ``.eval`` logs), until the project's one bounded zip
reader lands: ``open_zip`` refuses an archive with more than ``MAX_MEMBERS`` members and
``read_member`` a member larger than ``MAX_MEMBER_BYTES`` (declared, or found while inflating: a
lying header costs at most the bound). A refusal is one ``ZipMemberError`` line naming the archive
and the member. Same names as the planned shared reader, so it can replace this module.

Members may be deflated or stored (older Inspect logs) or Zstandard-compressed (method 93: Inspect
writes ``.eval`` logs so since 2025; Python's ``zipfile`` reads it only from 3.14): those are
inflated with ``zstandard`` (multi-frame, bounded, CRC checked).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

from backend.errors import InputError

MAX_MEMBERS = 200_000  # an .eval log holds one member per sample and epoch, plus a few
MAX_MEMBER_BYTES = 64 << 20  # 64 MiB: one sample (its messages, events and output) read whole
CHUNK = 1 << 20
ZIP_ZSTANDARD = 93
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # signature, version, flags, method, time, date, crc, sizes, name, extra


class ZipMemberError(InputError):
    """An archive or member that cannot be read within the bounds."""


def open_zip(path: str | Path, max_members: int = MAX_MEMBERS) -> zipfile.ZipFile:
    """The archive at ``path``, or one line saying why not."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise ZipMemberError(f"{path}: not a readable zip archive ({type(exc).__name__})") from None
    if len(archive.infolist()) > max_members:
        archive.close()
        raise ZipMemberError(f"{path}: has more than {max_members:,} members")
    return archive


def read_member(archive: zipfile.ZipFile, name: str, max_bytes: int = MAX_MEMBER_BYTES) -> bytes:
    """The inflated bytes of member ``name``, at most ``max_bytes``."""
    where = f"{archive.filename}: member {name!r}"
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ZipMemberError(f"{where}: not in the archive") from None
    if info.file_size > max_bytes or info.compress_size > max_bytes + (1 << 16):
        raise ZipMemberError(f"{where}: is {info.file_size >> 20} MiB inflated, more than {max_bytes >> 20} MiB")
    parts: list[bytes] = []
    total = 0
    try:
        with _open_member(archive, info) as stream:
            while chunk := stream.read(min(CHUNK, max_bytes + 1 - total)):
                total += len(chunk)
                if total > max_bytes:
                    raise ZipMemberError(f"{where}: inflates to more than {max_bytes >> 20} MiB")
                parts.append(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
        raise ZipMemberError(f"{where}: unreadable ({type(exc).__name__}: {str(exc)[:80]})") from None
    data = b"".join(parts)
    if info.compress_type == ZIP_ZSTANDARD and zlib.crc32(data) != info.CRC:
        raise ZipMemberError(f"{where}: unreadable (CRC check failed)")
    return data


def _open_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo):
    """A stream of the member's inflated bytes (zipfile's own, or zstandard's for method 93)."""
    if info.compress_type != ZIP_ZSTANDARD:
        return archive.open(info)
    import zstandard

    if archive.fp is None:
        raise zipfile.BadZipFile("archive is closed")
    archive.fp.seek(info.header_offset)
    header = archive.fp.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile("bad local file header")
    name_len, extra_len = _LOCAL_HEADER.unpack(header)[-2:]
    archive.fp.seek(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)
    compressed = archive.fp.read(info.compress_size)
    if len(compressed) != info.compress_size:
        raise EOFError("member is truncated")
    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(compressed), read_across_frames=True)
