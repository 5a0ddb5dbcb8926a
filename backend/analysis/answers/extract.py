"""Final-answer extraction and comparison for math and logic word problems.

The functions here take a model's free-form response, pull out the final
answer (preferring the last ``\\boxed{...}``), bring it and the reference
answer to a canonical form, and compare them.  Only the standard library is
used (``re``, ``fractions``, ``math``).

Typical use::

    >>> is_correct("So she has 6 - 1 = 5 apples. \\\\boxed{5}", "5")
    True
    >>> answers_match("\\\\frac{3}{4}", "0.75")
    True
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

__all__ = [
    "extract_final_answer",
    "normalize_answer",
    "answers_match",
    "is_correct",
]

# Relative tolerance used when two answers both parse as numbers.
REL_TOL = 1e-6
# Absolute tolerance, only so that comparisons with zero are not impossible.
ABS_TOL = 1e-9

# A plain number: optional sign, integer part with or without thousands
# separators, optional decimal part; or a bare decimal such as ".5".
_NUM = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+"

# Things that count as "a number" when scanning prose, most specific first:
# a LaTeX fraction, a slash fraction, then a plain number.  A number must not
# be glued to a preceding letter/digit (so "q1" or "x2" are not numbers).
_NUMBER_IN_TEXT = re.compile(
    r"-?\\[dt]?frac\s*\{\s*-?(?:" + _NUM + r")\s*\}\s*\{\s*-?(?:" + _NUM + r")\s*\}"
    r"|(?<![\w.])-?(?:" + _NUM + r")\s*/\s*(?:" + _NUM + r")(?!\w|\.\d)"
    r"|(?<![\w.])-?(?:" + _NUM + r")"
)

# "The answer is 42", "Final answer: Alice", "**Answer:** 3/4", ...
_ANSWER_MARKER = re.compile(
    r"(?:final\s+answer|answer)\s*(?:is|:|=)\s*:?",
    re.IGNORECASE,
)

# A whole string that is a number (after normalization steps).
_NUMBER_FULL = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")
_FRACTION_FULL = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*/\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))$")

# A number followed by trailing unit words: "12 apples", "5 km", "4.5 cups",
# "72 square centimeters", "60 km/h", "25 percent".
_NUMBER_WITH_UNITS = re.compile(
    r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:\s*/\s*(?:\d+(?:\.\d*)?|\.\d+))?)"
    r"\s*([A-Za-z\u00b0\u00b5][A-Za-z\u00b0\u00b5\u00b2\u00b3\s/.^\d-]*)$"
)


# --------------------------------------------------------------------------
# Brace helpers
# --------------------------------------------------------------------------


def _match_brace(text: str, open_idx: int) -> int | None:
    """Return the index of the ``}`` matching the ``{`` at ``open_idx``.

    Returns None when the braces are not balanced before the end of text.
    """
    depth = 0
    for i in range(open_idx, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def _boxed_contents(text: str) -> list[str]:
    """Return the contents of every balanced ``\\boxed{...}`` / ``\\fbox{...}``.

    Nested braces inside the box are kept, e.g. ``\\boxed{\\frac{1}{2}}``
    yields ``\\frac{1}{2}``.  The short form ``\\boxed 5`` is also accepted.
    Results are in order of appearance.
    """
    found: list[str] = []
    for m in re.finditer(r"\\(?:boxed|fbox)\s*(\{|\s(\S+))", text):
        if m.group(1) == "{":
            open_idx = m.end() - 1
            close_idx = _match_brace(text, open_idx)
            if close_idx is None:
                continue  # truncated box: ignore it
            found.append(text[open_idx + 1 : close_idx].strip())
        else:
            found.append(m.group(2).strip().rstrip(".,;:!$"))
    return found


def _unwrap_command(s: str, names: tuple[str, ...]) -> str:
    """Replace ``\\name{content}`` by ``content`` for each command in names.

    Handles nested braces inside the argument.  Unbalanced occurrences are
    left alone.
    """
    pattern = re.compile(r"\\(?:" + "|".join(names) + r")\s*\{")
    while True:
        m = pattern.search(s)
        if not m:
            return s
        open_idx = m.end() - 1
        close_idx = _match_brace(s, open_idx)
        if close_idx is None:
            return s
        s = s[: m.start()] + s[open_idx + 1 : close_idx] + s[close_idx + 1 :]


def _replace_fracs(s: str) -> str:
    """Rewrite ``\\frac{a}{b}`` (and ``\\dfrac``, ``\\tfrac``, ``\\frac12``) as ``a/b``.

    Arguments that are not plain tokens are wrapped in parentheses, so
    ``\\frac{x+1}{2}`` becomes ``(x+1)/2``.
    """
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    # Shorthand \frac12 -> \frac{1}{2}
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)
    while True:
        m = re.search(r"\\frac\s*\{", s)
        if not m:
            return s
        num_open = m.end() - 1
        num_close = _match_brace(s, num_open)
        if num_close is None:
            return s
        rest = num_close + 1
        while rest < len(s) and s[rest].isspace():
            rest += 1
        if rest >= len(s) or s[rest] != "{":
            return s
        den_close = _match_brace(s, rest)
        if den_close is None:
            return s
        num = s[num_open + 1 : num_close].strip()
        den = s[rest + 1 : den_close].strip()
        if not re.fullmatch(r"[+-]?[\w.]+", num):
            num = f"({num})"
        if not re.fullmatch(r"[\w.]+", den):
            den = f"({den})"
        s = s[: m.start()] + f"{num}/{den}" + s[den_close + 1 :]


# --------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------


def _last_number(line: str) -> str | None:
    """Return the last number-like token in ``line`` (or None)."""
    matches = _NUMBER_IN_TEXT.findall(line)
    return matches[-1].strip() if matches else None


def _first_number(line: str) -> str | None:
    """Return the first number-like token in ``line`` (or None)."""
    m = _NUMBER_IN_TEXT.search(line)
    return m.group(0).strip() if m else None


def _clean_line_answer(s: str) -> str:
    """Strip markdown emphasis, quotes and trailing punctuation from a line answer."""
    s = s.strip().strip("*_`").strip()
    s = s.strip("\"'\u201c\u201d\u2018\u2019").strip()
    s = re.sub(r"[.,;:!?]+$", "", s).strip()
    s = s.strip("*_`\"'").strip()
    return s


def _marker_answer_at(lines: list[str]) -> tuple[int, str] | None:
    """Find the last explicit answer marker ("The answer is ...", "Answer: ...").

    Returns ``(line_index, answer)`` where ``line_index`` is the line holding
    the answer text (the marker's own line, or the next non-empty line when the
    marker ends its line), or None when there is no usable marker.

    The answer is the first number after the marker (after the last ``=`` if
    there is one, so "the answer is 3 + 4 = 7" gives "7"); without a number it
    is the rest of the line with markdown and trailing punctuation removed
    ("Final answer: **Alice**." gives "Alice").
    """
    for i in range(len(lines) - 1, -1, -1):
        plain = lines[i].replace("**", "")
        matches = list(_ANSWER_MARKER.finditer(plain))
        if not matches:
            continue
        rest = plain[matches[-1].end() :].strip()
        j = i
        if not rest:
            j = next((k for k in range(i + 1, len(lines)) if lines[k].strip()), -1)
            if j < 0:
                continue
            rest = lines[j].replace("**", "").strip()
        inline_math = re.search(r"\$([^$]+)\$", rest)
        if inline_math:  # "Final answer is $2\sqrt{3}$": the whole formula, not its first number
            return j, inline_math.group(1).strip()
        tail = rest.rsplit("=", 1)[-1] if "=" in rest else rest
        num = _first_number(tail)
        if num is not None:
            return j, num
        cleaned = _clean_line_answer(tail)
        if cleaned:
            return j, cleaned
    return None


def extract_final_answer(text: str) -> str | None:
    """Extract the final answer from a model response.

    Order of preference:

    1. The content of the LAST balanced ``\\boxed{...}`` (nested braces are
       handled, so ``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``).
    2. An explicit marker such as "The answer is 42." or "Final answer: Alice",
       as long as no line after it contains a number: its first number
       ("The answer is 12 apples." -> "12"), else its words with trailing
       punctuation removed ("Alice").
    3. The last number in the last non-empty line that contains a number,
       searching from the end ("So she has 8 apples." -> "8").
    4. The last non-empty line, stripped of trailing punctuation.

    Returns None for empty or whitespace-only text.
    """
    if text is None:
        return None
    text = str(text)
    if not text.strip():
        return None

    boxes = _boxed_contents(text)
    if boxes:
        return boxes[-1]

    lines = text.splitlines()
    num_idx, num = -1, None
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip():
            num = _last_number(lines[i])
            if num is not None:
                num_idx = i
                break

    marked = _marker_answer_at(lines)
    if marked is not None and marked[0] >= num_idx:
        return marked[1]
    if num is not None:
        return num

    last = next(ln for ln in reversed(lines) if ln.strip())
    return _clean_line_answer(last) or last.strip()


# --------------------------------------------------------------------------
# Normalization and comparison
# --------------------------------------------------------------------------


def _format_decimal(s: str) -> str:
    """Canonical text for a decimal string: "+04.50" -> "4.5", "4.0" -> "4", ".5" -> "0.5"."""
    sign = ""
    if s[0] in "+-":
        sign, s = ("-" if s[0] == "-" else ""), s[1:]
    int_part, _, frac_part = s.partition(".")
    int_part = int_part.lstrip("0") or "0"
    frac_part = frac_part.rstrip("0")
    out = int_part + ("." + frac_part if frac_part else "")
    if out == "0":
        sign = ""
    return sign + out


def _parse_number(s: str) -> Fraction | None:
    """Parse an already-normalized string as an exact number, or return None.

    Accepts integers, decimals and ``a/b`` fractions (with decimal parts).
    """
    s = s.strip()
    if _NUMBER_FULL.match(s):
        return Fraction(s if not s.endswith(".") else s[:-1])
    m = _FRACTION_FULL.match(s)
    if m:
        num = Fraction(m.group(1).rstrip(".") or "0")
        den = Fraction(m.group(2).rstrip(".") or "0")
        if den == 0:
            return None
        return num / den
    return None


def normalize_answer(ans: str) -> str:
    """Bring an answer string to a canonical form for comparison.

    Applied steps:

    * strip whitespace, ``$`` / ``\\(`` / ``\\[`` math delimiters and a
      ``\\boxed{...}`` wrapper;
    * ``\\text{...}``, ``\\textbf{...}``, ``\\mathrm{...}`` and ``\\mbox{...}``
      are replaced by their content;
    * LaTeX spacing (``\\,``, ``\\ ``, ``\\!``, ``\\;``, ``\\quad``, ``~``) and
      ``\\left`` / ``\\right`` are removed;
    * a leading assignment such as ``x =`` is removed;
    * percentages lose the percent sign ("50%" -> "50");
    * thousands separators are removed ("1,000" -> "1000");
    * a number followed by unit words keeps only the number
      ("12 apples" -> "12", "5 km" -> "5");
    * ``\\frac{a}{b}``, ``\\dfrac{a}{b}`` and ``a/b`` become a reduced fraction
      "a/b", or an integer when b divides a ("\\frac{6}{8}" -> "3/4");
    * decimals lose trailing zeros ("2.50" -> "2.5", "4.0" -> "4");
    * anything else is case-folded, with trailing punctuation and a leading
      article ("the", "a", "an") removed ("Alice." -> "alice").
    """
    if ans is None:
        return ""
    s = str(ans).strip()

    # Math delimiters.
    s = s.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")
    s = s.replace("\\$", "$").replace("$", "")

    # Box wrappers and text-like commands -> their content.
    s = _unwrap_command(
        s, ("text", "textbf", "textit", "textrm", "mathrm", "mathbf", "mbox", "operatorname", "boxed", "fbox")
    )

    # Spacing and sizing commands.
    s = re.sub(r"\\(?:left|right)\b", "", s)
    s = re.sub(r"\\q?quad\b", " ", s)
    s = re.sub(r"\\[,;:!>]", "", s)
    s = s.replace("\\ ", " ")
    s = s.replace("~", " ")
    s = s.replace("\\%", "%")
    s = re.sub(r"\^\s*\{?\\circ\}?", "", s)  # degrees: 90^\circ -> 90
    s = s.replace("\\cdot", "*").replace("\\times", "*")

    # Markdown emphasis and surrounding quotes.
    s = s.strip().strip("*_`").strip()
    s = s.strip("\"'\u201c\u201d\u2018\u2019").strip()

    # Leading assignment: "x = 5", "y=3/4", "Answer: 7".
    s = re.sub(r"^(?:final\s+answer|answer)\s*(?:is|:|=)\s*", "", s, flags=re.IGNORECASE)
    s = re.sub(r"^[A-Za-z]\w{0,2}\s*=\s*(?=\S)", "", s)

    # Trailing punctuation.
    s = re.sub(r"[.,;:!?]+$", "", s).strip()

    # LaTeX fractions -> a/b.
    s = _replace_fracs(s)

    # Collapse whitespace.
    s = re.sub(r"\s+", " ", s).strip()

    # Thousands separators between digit groups: "1,000" -> "1000".
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)
    if re.fullmatch(r"[+-]?\d{1,3}(?: \d{3})+(?:\.\d+)?", s):
        s = s.replace(" ", "")  # "1 000" -> "1000"

    # Currency signs and percentages.
    s = re.sub(r"^([+-]?)\s*(?:\\\$|[$\u20ac\u00a3])", r"\1", s)
    s = re.sub(r"\s*%$", "", s)
    s = re.sub(r"\s*(?:percent|per cent)$", "", s, flags=re.IGNORECASE)

    # Strip a parenthesised whole answer like "(5)" only if it is a lone number.
    m = re.fullmatch(r"\(\s*([+-]?[\d./\s]+)\s*\)", s)
    if m:
        s = m.group(1).strip()

    # Number followed by unit words -> the number.
    m = _NUMBER_WITH_UNITS.match(s)
    if m:
        s = m.group(1)
    s = re.sub(r"\s*/\s*", "/", s) if _FRACTION_FULL.match(s) else s

    # Canonical numeric form.
    if _NUMBER_FULL.match(s):
        return _format_decimal(s)
    m = _FRACTION_FULL.match(s)
    if m:
        value = _parse_number(s)
        if value is None:
            return s  # division by zero: leave as written
        if value.denominator == 1:
            return str(value.numerator)
        return f"{value.numerator}/{value.denominator}"

    # Words: case-fold, drop a leading article and trailing punctuation.
    s = s.casefold()
    s = re.sub(r"^(?:the|a|an)\s+", "", s)
    s = re.sub(r"[.,;:!?]+$", "", s).strip()
    return s


def answers_match(predicted: str | None, reference: str) -> bool:
    """Return True when two answers agree.

    They agree when their normalized forms are equal, or when both parse as
    numbers (integers, decimals or fractions) that are equal within a relative
    tolerance of 1e-6.  A ``None`` prediction never matches.
    """
    if predicted is None or reference is None:
        return False
    pred_norm = normalize_answer(predicted)
    ref_norm = normalize_answer(reference)
    if pred_norm == "" and ref_norm == "":
        return False
    if pred_norm == ref_norm:
        return True
    p = _parse_number(pred_norm)
    r = _parse_number(ref_norm)
    if p is None or r is None:
        return False
    if p == r:
        return True
    return math.isclose(float(p), float(r), rel_tol=REL_TOL, abs_tol=ABS_TOL)


def is_correct(response_text: str, reference: str) -> bool | None:
    """Grade a full model response against a reference answer.

    Returns ``answers_match(extract_final_answer(response_text), reference)``,
    or None when the reference is empty (nothing to grade against).
    """
    if reference is None or not str(reference).strip():
        return None
    return answers_match(extract_final_answer(response_text or ""), reference)
