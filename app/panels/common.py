"""What every panel shares: the view it draws from, its heading with a "how to read this" link."""

from __future__ import annotations

import functools
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import streamlit as st

from app import data
from app.help import FIGURES, HOW_TO_READ
from app.state import ExploreLayout, ExploreSettings
from backend.plots import figures

ROOT = Path(__file__).resolve().parents[2]  # the repository: FIGURES are paths under it
FIGURE_MAX_W = 1460  # st.image re-encodes a wider PNG on every run (its MAXIMUM_CONTENT_WIDTH)


@dataclass
class View:
    """One run as Explore shows it (fixed until the next full rerun) plus the page's slots."""

    store: object
    run: object
    key: str
    n_steps: int
    layer: int | None
    space: str
    settings: ExploreSettings
    layout: ExploreLayout
    present: bool
    proxy_ok: bool
    cursor: int = 0  # the server's cursor (the browser moves its own copy)
    redraw: bool = False  # fallback: cursor marks drawn into the figures on the server
    slots: dict = field(default_factory=dict)  # name -> st container

    @property
    def root(self) -> str:
        return str(self.store.root)

    @property
    def stamp(self) -> float:
        return data.run_stamp(self.store, self.key)

    @property
    def scale(self) -> float:
        return self.layout.scale

    def boundary_losses(self):
        """L̂ at every boundary, [B]."""
        return figures.boundary_losses(self.run.tokens, self.run.steps)


def heading(text: str, topic: str) -> None:
    """A view's heading with its "how to read this" popover."""
    title, body = HOW_TO_READ[topic]
    with st.container(
        horizontal=True,
        horizontal_alignment="distribute",
        vertical_alignment="center",
        gap="small",
        key=f"explore_h_{topic}",
    ):
        st.html(f'<div class="raml-h">{html.escape(text)}</div>')
        with st.popover("How to read", type="tertiary", key=f"explore_help_{topic}"):
            st.markdown(f"**{title}**\n\n{body}")
            figure = ROOT / FIGURES[topic] if topic in FIGURES else None
            if figure is not None and figure.is_file():
                st.image(_figure_png(str(figure), figure.stat().st_mtime))


@functools.lru_cache(maxsize=8)
def _figure_png(path: str, mtime: float) -> bytes:
    """A help figure's PNG at most ``FIGURE_MAX_W`` wide, encoded once per server (issue 23: the
    re-encode of the lens figure was about 70 ms of every Explore open)."""
    from PIL import Image

    with Image.open(path) as image:
        if image.width <= FIGURE_MAX_W:
            return Path(path).read_bytes()
        height = round(image.height * FIGURE_MAX_W / image.width)
        small = image.resize((FIGURE_MAX_W, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return out.getvalue()


def esc(value) -> str:
    return html.escape(str(value))


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))
