"""What every panel shares: the view it draws from, its heading with a "how to read this" link."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import streamlit as st

from app import data
from app.help import FIGURES, HOW_TO_READ
from app.state import ExploreLayout, ExploreSettings
from backend.plots import figures

ROOT = Path(__file__).resolve().parents[2]  # the repository: FIGURES are paths under it


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
                st.image(str(figure))


def esc(value) -> str:
    return html.escape(str(value))


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))
