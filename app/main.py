"""RaML Explorer entry point: ``streamlit run app/main.py``.

Puts the repository root on ``sys.path`` (so ``backend`` and ``app`` import from any working
directory) and registers the pages; Compare and Dataset appear once their files exist.
"""
from __future__ import annotations

import sys
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
ROOT = APP_DIR.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

present = str(st.query_params.get("present", "")).strip().lower() in ("1", "true", "yes", "on")
st.set_page_config(page_title="RaML Explorer", page_icon=":material/trending_down:", layout="wide",
                   initial_sidebar_state="collapsed" if present else "auto")

pages = [
    st.Page("pages/explore.py", title="Explore", icon=":material/timeline:", default=True),
    st.Page("pages/runs.py", title="Runs", icon=":material/folder_open:"),
]
for name, title, icon in (("compare", "Compare", ":material/compare_arrows:"), ("dataset", "Dataset", ":material/bar_chart:")):
    if (APP_DIR / "pages" / f"{name}.py").exists():
        pages.append(st.Page(f"pages/{name}.py", title=title, icon=icon))

st.navigation(pages, position="hidden" if present else "sidebar").run()
