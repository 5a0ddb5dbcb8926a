"""Small shared page helpers: error guard, presentation-mode CSS, empty state."""

from __future__ import annotations

import logging
from collections.abc import Callable

import streamlit as st

from backend.errors import RamlError

log = logging.getLogger("raml.app")

EMPTY_STATE = (
    "**No runs in the cache yet.** Create one:\n\n"
    "- `make run` prepares the demo run (SmolLM2, one bundled question) and starts this app, or\n"
    '- `python -m backend run --question "..." --answer "..."` from a terminal, or\n'
    "- the **New run** form on the Runs page."
)


def guard(body: Callable[[], None]) -> None:
    """Run a page body; any error becomes one ``st.error`` line with its cause, never a traceback."""
    try:
        body()
    except RamlError as exc:
        st.error(str(exc))
    except Exception as exc:  # a bug: say what failed, keep the details in the server log
        # (st.rerun / st.stop / st.switch_page raise BaseException subclasses and pass through)
        log.exception("page failed")
        st.error(f"Something went wrong: {type(exc).__name__}: {str(exc)[:300]}. Details are in the server log.")


PRESENT_CSS = """
<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stToolbar"],
[data-testid="stHeader"] { display: none !important; }
html, body, [data-testid="stAppViewContainer"] { font-size: 19px; }
[data-testid="stMainBlockContainer"], .block-container { padding-top: 1.2rem; max-width: 100%; }
h1 { font-size: 2.0rem !important; }
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
.raml-h { font-weight: 600; color: #334155; font-size: 0.98rem; margin-top: 0.3rem; }
.raml-card { border: 1px solid #e2e8f0; border-radius: 8px; padding: 0.6rem 0.9rem; font-size: 0.95rem; }
.raml-grid { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 0.4rem; margin: 0.5rem 0; }
.raml-k { color: #64748b; font-size: 0.8rem; } .raml-v { font-size: 1.25rem; font-weight: 600; color: #1f2937; }
.raml-tokens { color: #475569; font-size: 0.88rem; line-height: 1.9; }
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
