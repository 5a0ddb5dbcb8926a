"""A figure's ``layout.datarevision``: a digest of its traces, so a browser redraws only new data.

Streamlit's chart element hands plotly.js a fresh deep copy of the same figure two or three times
as it mounts (it re-themes the spec, then echoes plotly's own figure back). Without a
``datarevision`` plotly.js must treat every array of a new identity as new data and recompute and
redraw each trace; with one it compares the revision and skips the data it already has. The
revision is a digest of the traces' JSON, never a constant: a figure whose data differ (another
run, layer, lens value or a server-drawn cursor) gets another revision, so it is redrawn.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.io.json import to_json_plotly

from backend.store.hashing import text_sha256


def data_revision(fig: go.Figure) -> str:
    """The digest of ``fig``'s traces (16 hex digits of SHA-256 over their plotly JSON)."""
    return text_sha256(to_json_plotly(fig.to_plotly_json()["data"]))[:16]


def stamp(fig: go.Figure) -> go.Figure:
    """Set ``fig.layout.datarevision`` to its traces' digest (in place; call it when the traces are final)."""
    fig.layout.datarevision = data_revision(fig)
    return fig
