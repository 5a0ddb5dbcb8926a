"""The demo run that ``make run`` prepares and the Explore page opens by default."""

from __future__ import annotations

import json
from pathlib import Path

from backend.engine.trajectory import GenerationSettings
from backend.jobs import RunRequest, run_question
from backend.store.runs import RunStore

QUESTIONS_FILE = Path(__file__).resolve().parent.parent / "assets" / "questions" / "math_logic.jsonl"
DEMO_MAX_NEW_TOKENS = 256


def demo_request() -> RunRequest:
    """The first line of the bundled question set (id "demo"), greedy, 256 new tokens."""
    with open(QUESTIONS_FILE, encoding="utf-8") as f:
        first = json.loads(f.readline())
    return RunRequest(
        question=first["question"],
        answer=first["answer"],
        label=first.get("id", "demo"),
        generation=GenerationSettings(max_new_tokens=DEMO_MAX_NEW_TOKENS),
    )


def demo_key(store: RunStore) -> str | None:
    """Key of the cached demo run, found without loading the model (None if not cached)."""
    from backend.engine.models import resolve
    from backend.jobs import request_key

    try:
        return store.run_for_request(request_key(demo_request(), resolve(demo_request().model).fingerprint()))
    except Exception:
        return None


def ensure_demo(store: RunStore, progress=None) -> str:
    """Compute the demo run unless it is cached; returns its key."""
    return run_question(demo_request(), store, progress=progress).key
