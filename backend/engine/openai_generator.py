"""Traces from any OpenAI-compatible server (vLLM, llama.cpp server, TGI, OpenAI itself):
``POST {base_url}/chat/completions`` with the question as the user turn. Only the standard
library is used (``urllib``). The analysis still runs on the local scorer model.

A reasoning server that returns the chain of thought separately (``reasoning_content`` or
``reasoning``, as vLLM's reasoning parsers do) gets it wrapped in ``<think>...</think>`` in
front of the answer, so ``split_thinking`` sees the same shape as a local think-format model.
The API key, if any, comes from ``OPENAI_API_KEY`` and is never stored or printed.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from urllib.parse import urlparse

from backend.engine.trajectory import GenerationSettings
from backend.errors import InputError, RamlError

GENERATORS = ("local", "openai")
DEFAULT_TIMEOUT_S = 600.0


class GenerationError(RamlError):
    """The remote generator failed (unreachable, HTTP error, malformed reply)."""


def check_base_url(base_url: str | None) -> str:
    """``http(s)://host[:port]/prefix`` without a trailing slash, e.g. ``http://127.0.0.1:8000/v1``."""
    parsed = urlparse(base_url or "")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InputError(f"--base-url {base_url!r} is not an http(s) URL such as http://127.0.0.1:8000/v1")
    return str(base_url).rstrip("/")


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
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> str:
    """One response from the server at ``base_url`` (chat completions, non-streaming)."""
    url = check_base_url(base_url) + "/chat/completions"
    if not model:
        raise InputError("--generator openai needs --generator-model NAME (the model the server serves)")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    api_key = os.environ.get("OPENAI_API_KEY")
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    body = json.dumps(chat_payload(model, question, settings)).encode("utf-8")
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode("utf-8", "replace").strip().replace("\n", " ")
        raise GenerationError(f"generator {url} answered HTTP {exc.code}: {detail or exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise GenerationError(f"cannot reach generator {url}: {reason}") from None
    try:
        reply = json.loads(raw)
    except json.JSONDecodeError:
        raise GenerationError(f"generator {url} did not answer with JSON") from None
    text = response_text(reply)
    if not text.strip():
        raise GenerationError(f"generator {url} returned an empty response for model {model!r}")
    return text
