"""Limits checked before work (issue 15 items 1 and 3): before a model's weights load, before a
trajectory is tokenized in full, before anything is generated.

Each check raises ``InputError`` (or ``ContextTooLongError``) with one line naming the limit and
the option that changes it. What needs a model uses only its tokenizer and its config
(``backend.engine.models.load_tokenizer`` / ``read_shape``), never the weights.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from backend.errors import ContextTooLongError, InputError

DEFAULT_MAX_ANSWER_TOKENS = 64  # --max-answer-tokens; memory of the readout grows with it
DEFAULT_MAX_QUESTION_TOKENS = 4096  # --max-question-tokens
DEFAULT_MAX_TRAJECTORY_MB = 8.0  # --max-trajectory-mb: file size, checked before reading
_PIECE_CHARS = 16_384  # characters tokenized at a time by the streaming count


@dataclass(frozen=True)
class Limits:
    max_answer_tokens: int = DEFAULT_MAX_ANSWER_TOKENS
    max_question_tokens: int = DEFAULT_MAX_QUESTION_TOKENS


def check_sampling(temperature: float, top_p: float, max_new_tokens: int) -> None:
    """Temperature finite and >= 0 (0 = greedy), top-p in (0, 1], at least one new token."""
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise InputError(f"--temperature {temperature} must be a finite number >= 0 (0 = greedy)")
    if not isinstance(top_p, (int, float)) or not math.isfinite(top_p) or not 0 < top_p <= 1:
        raise InputError(f"--top-p {top_p} must lie in (0, 1] (1 = no nucleus cut)")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise InputError(f"--max-new-tokens {max_new_tokens} must be at least 1")


def check_limit_values(limits: Limits) -> None:
    if limits.max_answer_tokens < 1:
        raise InputError(f"--max-answer-tokens {limits.max_answer_tokens} must be at least 1")
    if limits.max_question_tokens < 1:
        raise InputError(f"--max-question-tokens {limits.max_question_tokens} must be at least 1")


def check_proxy_layers(layers: Sequence[int] | None, n_layers: int | None) -> None:
    """Layer indices in 0..L-1 (L from the model's config, without weights). Without L (a
    request checked before its model is known) only the types are checked, so that the check
    with L names every bad index at once (``999,-1``, not only ``-1``)."""
    if layers is None:
        return
    if n_layers is None:
        bad = [i for i in layers if not isinstance(i, int) or isinstance(i, bool)]
        if bad:
            raise InputError(f"--proxy-layers {','.join(map(str, bad))}: layers are whole numbers")
        return
    outside = [i for i in layers if not isinstance(i, int) or i < 0 or i >= n_layers]
    if outside:
        where = f"0..{n_layers - 1} (the model has {n_layers} layers)"
        raise InputError(f"--proxy-layers {','.join(map(str, outside))} outside {where}")


def check_input_path(path: str | os.PathLike, what: str) -> Path:
    """A dataset path that readers may open: a regular file or a folder, never a FIFO (which
    hangs an open), a device such as /dev/zero (endless) or a socket. One-line ``InputError``."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = "a pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise InputError(f"{what} {path} is not a regular file or folder ({kind})")
    return p


def read_text_file(path: str | os.PathLike, what: str, flag: str, max_mb: float) -> str:
    """The text of a user's input file, checked before a byte is read: a regular file (not a
    FIFO, a device such as /dev/zero, or a folder), at most ``max_mb`` (``flag`` raises it),
    UTF-8. At most the limit is ever read, even if the file grows meanwhile. One-line
    ``InputError`` naming the file and what is wrong."""
    p = Path(path)
    try:
        info = p.stat()
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a pipe" if stat.S_ISFIFO(info.st_mode) else "a device"
        raise InputError(f"{what} {path} is not a regular file ({kind})")
    limit = int(max_mb * (1 << 20))
    too_big = f"over the {max_mb:g} MB limit ({flag} to raise it)"
    if info.st_size > limit:
        raise InputError(f"{what} {path} has {info.st_size / (1 << 20):.1f} MB, {too_big}")
    try:
        with open(p, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise InputError(f"{what} {path} grew past {max_mb:g} MB while it was read, {too_big}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")  # newlines as a text-mode read gives them


def read_trajectory_file(path: str | os.PathLike, max_mb: float = DEFAULT_MAX_TRAJECTORY_MB) -> str:
    """A trajectory file's text, refused by its kind and size before a byte is read into memory."""
    return read_text_file(path, "trajectory file", "--max-trajectory-mb", max_mb)


def _pieces(text: str, size: int = _PIECE_CHARS):
    """Split ``text`` into pieces of about ``size`` characters, each cut just before whitespace so
    that a word (and its leading space) stays in one piece."""
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            match = re.compile(r"\s").search(text, end)
            end = match.start() if match and match.start() < end + size else end
        yield text[start:end]
        start = end


def count_tokens_up_to(tokenizer, text: str, stop_after: int) -> tuple[int, bool]:
    """(tokens counted, complete) of ``text``, tokenized piece by piece and stopped as soon as the
    count passes ``stop_after``: a 5 MB trajectory is refused after its first pieces, not after
    tokenizing all of it. Each piece boundary may shift the count by about one token."""
    count = 0
    for piece in _pieces(text):
        count += len(tokenizer(piece, add_special_tokens=False)["input_ids"])
        if count > stop_after:
            return count, False
    return count, True


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def check_before_load(
    tokenizer,
    *,
    question: str,
    answer: str | None,
    trajectory: str | None,
    template: str,
    max_new_tokens: int,
    truncate: bool,
    max_context: int | None,
    limits: Limits,
) -> None:
    """Answer, question, template and trajectory against their limits and the model's context,
    with the tokenizer only (no weights)."""
    check_limit_values(limits)
    if not n_tokens(tokenizer, template):
        raise InputError("the template tokenizes to nothing (--template)")
    n_template = n_tokens(tokenizer, template)
    n_answer = 0
    if answer is not None:
        n_answer = n_tokens(tokenizer, answer.strip())
        if n_answer > limits.max_answer_tokens:
            raise InputError(
                f"answer has {n_answer} tokens, over the limit of {limits.max_answer_tokens} "
                "(--max-answer-tokens to raise it; the readout's memory grows with it)"
            )
    n_question, _ = count_tokens_up_to(tokenizer, question, limits.max_question_tokens)
    if n_question > limits.max_question_tokens:
        raise InputError(
            f"question has more than {limits.max_question_tokens} tokens ({len(question)} characters); "
            "--max-question-tokens to raise the limit"
        )
    if max_context is None:
        return
    room = max_context - n_question - n_template - max(n_answer, 1)
    if room < 1:
        raise ContextTooLongError(
            f"question ({n_question} tokens) + template + answer leave no room in the model's context of "
            f"{max_context} tokens: shorten the question"
        )
    if trajectory is None:
        if max_new_tokens > room:
            raise ContextTooLongError(
                f"--max-new-tokens {max_new_tokens} does not fit: the question, template and answer leave "
                f"{room} of the model's {max_context} context tokens; lower --max-new-tokens"
            )
        return
    if truncate:
        return
    # piece boundaries may add about a token each: refuse only what is over by more than that
    slack = len(trajectory) // _PIECE_CHARS + 1
    counted, complete = count_tokens_up_to(tokenizer, trajectory, room + slack)
    if complete:
        return  # fits (up to piece boundaries); the exact count after the load has the last word
    if len(trajectory) <= 4 * _PIECE_CHARS:  # small enough to count exactly
        counted, how_many = n_tokens(tokenizer, trajectory), ""
    else:
        how_many = f"more than {room} ({len(trajectory)} characters; counting stopped at {counted}) "
    raise ContextTooLongError(
        f"trajectory has {how_many or f'{counted} '}tokens but only {room} fit in the model's context of "
        f"{max_context} (with question, template and answer); use --truncate to keep its last part"
    )
