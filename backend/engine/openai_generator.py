"""Traces from any OpenAI-compatible server (vLLM, llama.cpp server, TGI, OpenAI itself):
``POST {base_url}/chat/completions`` with the question as the user turn. Only the standard
library is used (``urllib``). The analysis still runs on the local scorer model.

A reasoning server that returns the chain of thought separately (``reasoning_content`` or
``reasoning``, as vLLM's reasoning parsers do) gets it wrapped in ``<think>...</think>`` in
front of the answer, so ``split_thinking`` sees the same shape as a local think-format model.
The API key, if any, comes from ``OPENAI_API_KEY`` and is never stored or printed.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import ssl
import threading
import time
from urllib.parse import urlparse

from backend.engine.trajectory import GenerationSettings
from backend.errors import InputError, RamlError

GENERATORS = ("local", "openai")
DEFAULT_DEADLINE_S = 600.0  # --generator-deadline: the whole request, connect to last byte
DEFAULT_MAX_RESPONSE_MB = 16.0  # --generator-max-mb: the reply's bytes, counted while they arrive
_CHUNK = 64 * 1024
DEFAULT_TIMEOUT_S = DEFAULT_DEADLINE_S  # the old name


class GenerationError(RamlError):
    """The remote generator failed (unreachable, HTTP error, redirect, too slow, too large, malformed reply)."""


def check_base_url(base_url: str | None) -> str:
    """``http(s)://host[:port]/prefix`` without a trailing slash, e.g. ``http://127.0.0.1:8000/v1``.
    No ``user:pass@`` (the key comes from ``OPENAI_API_KEY``), no query or fragment."""
    parsed = urlparse(base_url or "")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InputError(f"--base-url {base_url!r} is not an http(s) URL such as http://127.0.0.1:8000/v1")
    if "@" in parsed.netloc:
        raise InputError(
            "--base-url must not carry a user name or password (user:pass@host); "
            "put the API key in OPENAI_API_KEY instead"
        )
    if parsed.query or parsed.fragment:
        raise InputError(f"--base-url {base_url!r} must not have a query or fragment (?...#...)")
    try:
        parsed.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        raise InputError(f"--base-url {base_url!r} has an invalid port") from None
    return str(base_url).rstrip("/")


def check_transport_limits(deadline_s: float, max_response_mb: float) -> None:
    """Both limits finite and positive (one line naming the flag)."""
    if not isinstance(deadline_s, (int, float)) or not math.isfinite(deadline_s) or deadline_s <= 0:
        raise InputError(f"--generator-deadline {deadline_s} must be a number of seconds > 0")
    if not isinstance(max_response_mb, (int, float)) or not math.isfinite(max_response_mb) or max_response_mb <= 0:
        raise InputError(f"--generator-max-mb {max_response_mb} must be a number of megabytes > 0")


def chat_payload(model: str, question: str, settings: GenerationSettings) -> dict:
    payload: dict = {
        "model": model,
        "messages": [{"role": "user", "content": question.strip()}],
        "max_tokens": settings.max_new_tokens,
        "temperature": max(settings.temperature, 0.0),
        "seed": settings.seed,
    }
    if not settings.greedy:
        payload["top_p"] = settings.top_p
    return payload


def response_text(reply: dict) -> str:
    """The assistant text of a chat-completions reply, with separate reasoning put in ``<think>``."""
    try:
        message = reply["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        raise GenerationError("the generator's reply has no choices[0].message") from None
    content = message.get("content") or ""
    reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
    if reasoning and "<think>" not in content:
        return f"<think>{reasoning}</think>{content}"
    return content


def generate_openai(
    base_url: str,
    model: str,
    question: str,
    settings: GenerationSettings,
    *,
    timeout_s: float = DEFAULT_DEADLINE_S,
    max_response_mb: float = DEFAULT_MAX_RESPONSE_MB,
) -> str:
    """One response from the server at ``base_url`` (chat completions, non-streaming).

    ``timeout_s`` is a total deadline (connect, headers and body together: a server that
    trickles one byte a second is cut off at it); the reply is refused as soon as it passes
    ``max_response_mb`` (its Content-Length first, then the bytes counted as they arrive).
    Redirects are never followed (the key would go to another host): a 3xx is one line naming
    the status and the host of its Location.
    """
    url = check_base_url(base_url) + "/chat/completions"
    check_transport_limits(timeout_s, max_response_mb)
    if not model:
        raise InputError("--generator openai needs --generator-model NAME (the model the server serves)")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    api_key = os.environ.get("OPENAI_API_KEY")
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    body = json.dumps(chat_payload(model, question, settings)).encode("utf-8")
    raw = _post(url, body, headers, float(timeout_s), int(max_response_mb * 1024 * 1024))
    try:
        reply = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GenerationError(f"generator {url} did not answer with JSON") from None
    text = response_text(reply)
    if not text.strip():
        raise GenerationError(f"generator {url} returned an empty response for model {model!r}")
    return text


def _post(url: str, body: bytes, headers: dict, deadline_s: float, max_bytes: int) -> bytes:
    """POST ``body`` and return the 200 reply's bytes, within ``deadline_s`` and ``max_bytes``.

    ``http.client`` directly: nothing follows redirects, and a watchdog closes the socket at the
    deadline, so neither slow headers nor a slow body can outlive it.
    """
    parsed = urlparse(url)
    path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    start = time.monotonic()
    conn: http.client.HTTPConnection
    if parsed.scheme == "https":
        conn = http.client.HTTPSConnection(
            parsed.hostname or "", parsed.port, timeout=deadline_s, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(parsed.hostname or "", parsed.port, timeout=deadline_s)
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(2)  # wakes a blocked recv at once
            except OSError:
                pass

    watchdog = threading.Timer(deadline_s, stop)
    watchdog.daemon = True
    watchdog.start()
    too_slow = f"generator {url} did not answer within {deadline_s:g} s (--generator-deadline)"
    try:
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            if expired.is_set():
                raise GenerationError(too_slow) from None
            raise GenerationError(f"cannot reach generator {url}: {getattr(exc, 'strerror', None) or exc}") from None
        if 300 <= resp.status < 400:
            location = resp.getheader("Location") or ""
            host = urlparse(location).netloc.rpartition("@")[2] or "this server"
            raise GenerationError(
                f"generator {url} answered HTTP {resp.status}, a redirect to {host}; not followed "
                "(the API key stays with --base-url): point --base-url at the server itself"
            )
        limit_mb = f"{max_bytes / (1024 * 1024):g} MB"
        declared = resp.getheader("Content-Length")
        if declared and declared.strip().isdigit() and int(declared) > max_bytes:
            raise GenerationError(
                f"generator {url} announced a reply of {int(declared) / (1024 * 1024):.1f} MB, over the "
                f"limit of {limit_mb} (--generator-max-mb)"
            )
        chunks, size = [], 0
        while True:
            try:
                chunk = resp.read1(_CHUNK) if resp.status == 200 else resp.read(300)
            except (OSError, http.client.HTTPException) as exc:
                if expired.is_set():
                    raise GenerationError(too_slow) from None
                raise GenerationError(f"generator {url}: the reply broke off ({exc})") from None
            if expired.is_set() or time.monotonic() - start > deadline_s:
                raise GenerationError(too_slow)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise GenerationError(
                    f"generator {url} sent more than {limit_mb} (--generator-max-mb); refused while it arrived"
                )
            chunks.append(chunk)
            if resp.status != 200:
                break
        raw = b"".join(chunks)
        if resp.status != 200:
            detail = raw[:300].decode("utf-8", "replace").strip().replace("\n", " ")
            raise GenerationError(f"generator {url} answered HTTP {resp.status}: {detail or resp.reason}")
        return raw
    finally:
        watchdog.cancel()
        conn.close()
