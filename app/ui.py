"""Small shared page helpers: the one error display, presentation-mode CSS, empty state, favicon."""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from backend.errors import RamlError

log = logging.getLogger("raml.app")

EMPTY_STATE = (
    "**No runs in the cache yet.** Create one:\n\n"
    "- `make run` prepares the demo run (SmolLM2, one bundled question) and starts this app, or\n"
    '- `python -m backend run --question "..." --answer "..."` from a terminal, or\n'
    "- the **New run** form on the Runs page."
)


# anywhere in a line: code, emphasis, links and images (an escaped "[" makes neither a link, an
# image nor a ``:color[...]`` directive), raw HTML and autolinks ("<"), KaTeX ("$"), strikethrough
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>$~])")
_LINE_START = re.compile(r"^(\s*)(?:([-+=#|])|(\d+)\.)", re.MULTILINE)  # lists, headings, rules, tables


def md(text) -> str:
    """``text`` from a user (a question, answer, label, job title, file name, URL value, or an
    error quoting one) made literal for anything Streamlit renders as Markdown (``st.markdown``,
    captions, alerts, labels, help): what Markdown, KaTeX (``$``) or Streamlit's
    ``:color[...]`` syntax reads is backslash-escaped, so an image link is not fetched and
    ``**b**`` is not bold; list, heading, rule and table markers only where they start a line, so
    ordinary text (``questions.jsonl:3: field 'answer' is empty``) stays as it is."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))
    return _LINE_START.sub(lambda m: m.group(1) + ("\\" + m.group(2) if m.group(2) else m.group(3) + "\\."), escaped)


READ_ONLY_NOTE = "Read-only server: browse the runs and their views; nothing can be computed, imported or deleted here."


def read_only() -> bool:
    """Whether this server is read-only (``raml serve --read-only``): the pages then hide every
    control that would change the server. The hiding is a convenience: the backend refuses those
    actions by itself (``backend.readonly``), whatever a request asks."""
    from backend import readonly

    return readonly.is_read_only()


def guard(body: Callable[[], None]) -> None:
    """Run a page body (or one panel) through the one error display (:func:`show_error`)."""
    try:
        body()
    except Exception as exc:  # st.rerun / st.stop / st.switch_page raise BaseException subclasses and pass through
        show_error(exc)


def show_error(exc: BaseException, *, where: str | None = None) -> None:
    """The one error display of every page.

    A :class:`RamlError` is the user's to fix: its one-line message, nothing else. Anything else
    is a bug: a one-line message plus the traceback in a closed expander (and the server log).
    """
    prefix = f"{where}: " if where else ""
    if isinstance(exc, RamlError):
        st.error(md(prefix + str(exc)))
        return
    log.error("page failed", exc_info=exc)
    st.error(md(f"{prefix}Something went wrong (a bug, please report it): {type(exc).__name__}: {str(exc)[:300]}"))
    with st.expander("Details (traceback)"):
        st.code("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), language="text")


FAVICON = Path(__file__).resolve().parent / "static" / "favicon.png"  # served locally, never fetched


PRESENT_CSS = """
<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stToolbar"],
[data-testid="stHeader"] { display: none !important; }
html, body, [data-testid="stAppViewContainer"] { font-size: 17px; }
[data-testid="stMainBlockContainer"], .block-container { padding-top: 1.2rem; max-width: 100%; }
h1 { font-size: 2.0rem !important; }
.raml-title { font-size: 1.25rem; }
</style>
"""

BASE_CSS = """
<style>
.block-container, [data-testid="stMainBlockContainer"] { padding-top: 2.2rem; padding-bottom: 1rem; }
[data-testid="stMetricValue"] { font-size: 1.35rem; }
.raml-step-label { font-size: 1.05rem; font-weight: 600; color: #2a3f7a; padding-top: 0.45rem; white-space: nowrap; }
.raml-badge { display: inline-block; padding: 0 0.5em; border-radius: 999px; font-size: 0.85em; font-weight: 600; }
.raml-badge.ok { background: #dcfce7; color: #166534; } .raml-badge.bad { background: #fee2e2; color: #991b1b; }
.raml-badge.na { background: #e2e8f0; color: #334155; }
.raml-h { font-weight: 600; color: #334155; font-size: 0.98rem; }
.raml-title { font-size: 1.12rem; font-weight: 600; color: #111827; line-height: 1.35; white-space: pre-line;
  overflow-wrap: anywhere; display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 3; line-clamp: 3;
  overflow: hidden; }
.raml-title.present { display: block; -webkit-line-clamp: unset; line-clamp: none; max-height: 40vh; overflow-y: auto; }
.raml-meta { color: #475569; font-size: 0.9rem; }
[class*="st-key-explore_h_"] { min-height: 0; }
[class*="st-key-explore_help_"] button { padding: 0 0.3rem; min-height: 1.6rem; font-size: 0.82rem; color: #64748b; }
.st-key-explore_stepper_host { display: none; }
.raml-card { border: 1px solid #e2e8f0; border-radius: 8px; padding: 0.35rem 0.7rem; font-size: 0.9rem; }
.raml-card-head { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.raml-grid { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 0.3rem; margin: 0.15rem 0; }
.raml-k { color: #64748b; font-size: 0.75rem; white-space: nowrap; } .raml-v { font-size: 1.05rem; font-weight: 600; color: #1f2937; }
.raml-tokens { color: #475569; font-size: 0.82rem; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
[data-testid="stMain"] [data-testid="stVerticalBlock"] { gap: 0.5rem; }
.raml-chip { display: inline-block; background: #eef2ff; border-radius: 6px; padding: 0 0.4em; margin-right: 0.3em; }
.raml-chip code { background: transparent; color: #2a3f7a; font-size: 0.92em; padding: 0; }
.raml-refl { background: #fde3c4; color: #9a3412; border-radius: 3px; padding: 0 2px; }
</style>
"""


def correctness_badge(correct) -> str:
    """HTML badge for meta ``correct`` (True, False or None = no reference answer)."""
    if correct is None or (isinstance(correct, float) and correct != correct):
        return '<span class="raml-badge na">no reference</span>'
    return (
        '<span class="raml-badge ok">correct</span>'
        if bool(correct)
        else '<span class="raml-badge bad">incorrect</span>'
    )


def set_query_params(**values) -> None:
    """Write view state into the URL: only what changed, so the browser history stays quiet;
    ``None`` removes a parameter."""
    for name, value in values.items():
        if value is None:
            if name in st.query_params:
                del st.query_params[name]
        elif st.query_params.get(name) != str(value):
            st.query_params[name] = str(value)
