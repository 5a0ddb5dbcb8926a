"""RaML Explorer entry point: ``streamlit run app/main.py``.

Registers the pages. ``backend`` and ``app`` import as installed packages (``pip install -e .``,
which ``make`` does) or from the repository root (``python -m streamlit run app/main.py``).
Pages live in ``app/views/``, not ``app/pages/``: Streamlit would auto-run files of a
``pages/`` folder beside the entry script when a page URL is opened directly, bypassing this file.
"""

from __future__ import annotations

import streamlit as st

import backend  # noqa: F401  # first: OpenMP waits sleep in this server's job worker (docs/threads.md)
from app import ui
from app.ui import FAVICON

present = str(st.query_params.get("present", "")).strip().lower() in ("1", "true", "yes", "on")
st.set_page_config(
    page_title="RaML Explorer",
    page_icon=str(FAVICON),  # a local file: the favicon is never fetched from the internet
    layout="wide",
    initial_sidebar_state="collapsed" if present else "auto",
)

pages = [
    st.Page("views/explore.py", title="Explore", icon=":material/timeline:", default=True),
    st.Page("views/runs.py", title="Runs", icon=":material/folder_open:"),
    st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("views/dataset.py", title="Dataset", icon=":material/bar_chart:"),
]

page = st.navigation(pages, position="hidden" if present else "sidebar")
page.run()
if ui.read_only():  # `raml serve --read-only`: no jobs panel (its Cancel / Resume change the queue)
    if not present:
        st.sidebar.caption(ui.READ_ONLY_NOTE)
elif not present:  # below the page's own sidebar controls (Explore's Run / Space / Layer come first)
    from app import jobs_panel

    jobs_panel.render()  # every page: the backend job queue's running/queued/finished jobs
