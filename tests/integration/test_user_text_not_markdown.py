"""Issue 27 item 4: user strings (questions, answers, labels, job titles, error messages and URL
values quoting them) are shown as text on every page, never rendered as Markdown: an image link
in a question would make every viewer's browser fetch it. The pages are run with AppTest over a
cache whose run, label and job title carry the payload, and every element that Streamlit
renders as Markdown (bodies, alerts, captions, labels, help) is scanned for it unescaped."""

from __future__ import annotations

import re
from pathlib import Path

from streamlit.testing.v1 import AppTest

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
PAYLOAD = "![p](http://127.0.0.1:9/x.gif) **b** $x$"
# the payload's Markdown, unescaped (an escaped "\[", "\*" or "\$" renders as text)
RAW = re.compile(r"(?<!\\)!(?<!\\)\[p(?<!\\)\]\(|(?<!\\)\*(?<!\\)\*b|(?<!\\)\$x(?<!\\)\$")
PLAIN = {"arrow_data_frame", "dataframe", "text", "code", "json", "html", "plotly_chart", "exception"}
FIELDS = ("body", "label", "help", "placeholder")


def _nodes(node):
    yield node
    children = getattr(node, "children", None) or {}
    for child in children.values():
        yield from _nodes(child)


def _rendered_strings(at: AppTest) -> list[tuple[str, str, str]]:
    """(element type, field, text) of every Markdown-rendered string on the page."""
    out = []
    for node in _nodes(at._tree):
        kind = getattr(node, "type", "")
        proto = getattr(node, "proto", None)
        if proto is None or kind in PLAIN:
            continue
        for field in FIELDS:
            value = getattr(proto, field, None)
            if isinstance(value, str) and value:
                out.append((kind, field, value))
        expandable = getattr(proto, "expandable", None)
        if expandable is not None and getattr(expandable, "label", ""):
            out.append((kind, "label", expandable.label))
    return out


def _unescaped(at: AppTest) -> list[tuple[str, str, str]]:
    return [(k, f, v) for k, f, v in _rendered_strings(at) if RAW.search(v)]


def test_user_text_is_never_rendered_as_markdown_on_any_page(tmp_path, tiny_llama, monkeypatch):
    from conftest import SAMPLE_TRAJECTORY

    from backend.jobs import submit
    from backend.jobs.queue import JobQueue
    from backend.pipeline.run import RunRequest, run_question
    from backend.store.runs import RunStore

    store = RunStore(tmp_path / "cache")
    req = RunRequest(question=PAYLOAD, answer="6", trajectory=SAMPLE_TRAJECTORY, model=tiny_llama.name, label=PAYLOAD)
    key = run_question(req, store, loaded=tiny_llama).key
    job_id = submit(store, "run", {"question": PAYLOAD, "model": "no-such-model-here"}, title=f"Run: {PAYLOAD}")
    JobQueue(store).cancel(job_id)  # listed in the jobs panel, never run by the page's worker
    monkeypatch.setenv("RAML_CACHE_DIR", str(store.root))
    at = AppTest.from_file(MAIN, default_timeout=180).run()
    seen = {}
    pages = [
        ("views/runs.py", {}),
        ("views/explore.py", {"run": key}),
        ("views/compare.py", {"q": PAYLOAD}),
        ("views/dataset.py", {}),
    ]
    for page, params in pages:
        at.switch_page(page)
        at.query_params.clear()
        at.query_params.update(params)
        at.run()
        assert not at.exception, (page, at.exception)
        if page == "views/runs.py":
            at.button(key="runs_delete").click().run()  # the delete confirmation names the question
            at.session_state["runs_last_job"] = job_id
            at.run()
        seen[page] = _rendered_strings(at)
        assert not _unescaped(at), (page, _unescaped(at))
    everything = " ".join(v for strings in seen.values() for _, _, v in strings)
    assert "!\\[p\\](http://127.0.0.1:9/x.gif) \\*\\*b\\*\\* \\$x\\$" in everything  # on the pages, escaped
