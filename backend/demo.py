"""The demo runs that ``make run`` prepares; the Explore page opens the one labelled ``demo``.

- Worked reasoning traces written for this project (``assets/demo/worked_traces.jsonl``,
  each marked ``"source": "written for RaML Explorer"``), imported and scored by the default
  model. Their answers appear only in the last part of the text, so the loss of the answer
  can be watched falling while the reasoning builds it up. The first one is labelled ``demo``.
- One run the default model generates itself for the same demo question (label
  ``demo-generated``): what a 135M model does on its own, shown as it is.
"""

from __future__ import annotations

import json
from pathlib import Path

from backend.engine.trajectory import GenerationSettings
from backend.pipeline.run import RunRequest, run_question
from backend.store.runs import RunStore

ASSETS = Path(__file__).resolve().parent.parent / "assets"
QUESTIONS_FILE = ASSETS / "questions" / "math_logic.jsonl"
WORKED_TRACES_FILE = ASSETS / "demo" / "worked_traces.jsonl"
DEMO_MAX_NEW_TOKENS = 256
GENERATED_LABEL = "demo-generated"


def worked_traces() -> list[dict]:
    """The bundled worked traces (id, question, answer, trajectory, source), first = the demo."""
    with open(WORKED_TRACES_FILE, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def demo_request() -> RunRequest:
    """The main demo: the first worked trace, imported (label ``demo``)."""
    first = worked_traces()[0]
    return RunRequest(question=first["question"], answer=first["answer"], trajectory=first["trajectory"], label="demo")


def demo_requests() -> list[RunRequest]:
    """Every demo run: the worked traces (imported) and the model's own run of the demo question."""
    traces = worked_traces()
    imported = [
        RunRequest(question=t["question"], answer=t["answer"], trajectory=t["trajectory"], label=t["id"])
        for t in traces
    ]
    generated = RunRequest(
        question=traces[0]["question"],
        answer=traces[0]["answer"],
        label=GENERATED_LABEL,
        generation=GenerationSettings(max_new_tokens=DEMO_MAX_NEW_TOKENS),
    )
    return [*imported, generated]


def demo_key(store: RunStore) -> str | None:
    """Key of the cached demo run, found without loading the model (None if not cached)."""
    from backend.engine.models import resolve
    from backend.pipeline.run import request_key

    try:
        req = demo_request()
        return store.run_for_request(request_key(req, resolve(req.model).fingerprint()))
    except Exception:
        return None


def ensure_demo(store: RunStore, progress=None) -> str:
    """Compute every demo run that is not cached (one model load); returns the main demo's key."""
    keys = [run_question(req, store, progress=progress).key for req in demo_requests()]
    return keys[0]
