"""User text made safe for a terminal (issue 15 item 6): control and format characters from
question files (escape sequences, carriage returns, bidi overrides, NUL) are shown escaped,
never sent raw to the terminal."""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}


def printable(text: object) -> str:
    """``text`` with every control/format character escaped (``\\x1b``, ``\\n``, ``\\u202e``)."""
    s = str(text)
    if s.isprintable():
        return s
    out = []
    for ch in s:
        if unicodedata.category(ch) in _UNSAFE_CATEGORIES:
            code = ord(ch)
            out.append(_NAMED.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"))
        else:
            out.append(ch)
    return "".join(out)
