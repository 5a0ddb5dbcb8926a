"""Download buttons for a run's tables (CSV / Parquet / JSON) and figures (PNG / SVG).

The bytes come from ``backend.plots.exports`` and are built only when a button is pressed
(Streamlit calls the ``data`` callable then), so drawing the page costs nothing.
"""

from __future__ import annotations

import streamlit as st

from app import ui
from backend.plots import exports


def _figures_zip(run, fmt: str) -> bytes:
    try:
        return exports.images_zip(run, fmt, scale=2.0 if fmt == "png" else 1.0)
    except Exception as exc:  # no browser / kaleido: the click must not crash the page
        st.error(ui.md(exc))
        return b""


def render_downloads(run, store=None) -> None:
    """Two rows: tables in the chosen format, figures in the chosen format (each a zip)."""
    left, right = st.columns([1, 2])
    table_fmt = left.selectbox("Tables", exports.TABLE_FORMATS, key="explore_dl_table_fmt")
    right.download_button(
        "⬇ tables (zip)",
        data=lambda: exports.tables_zip(run, table_fmt, store),
        file_name=f"raml-{run.key[:12]}-tables-{table_fmt}.zip",
        mime="application/zip",
        key="explore_dl_tables",
        help="tokens, steps and lens tables (and lens_tuned once computed) in one zip.",
        on_click="ignore",  # no rerun: the page stays as it is
    )
    if ui.read_only():
        return  # figures are rendered by a Chromium on the server (kaleido): not on a read-only server;
        # every chart's own camera button still saves a PNG in the browser
    left, right = st.columns([1, 2])
    image_fmt = left.selectbox("Figures", exports.IMAGE_FORMATS, key="explore_dl_image_fmt")
    right.download_button(
        "⬇ figures (zip)",
        data=lambda: _figures_zip(run, image_fmt),
        file_name=f"raml-{run.key[:12]}-figures-{image_fmt}.zip",
        mime="application/zip",
        key="explore_dl_figures",
        on_click="ignore",
        help="Loss, lens and path figures, rendered by kaleido with the system Chromium (a few seconds).",
    )
