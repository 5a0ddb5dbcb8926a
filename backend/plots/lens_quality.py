"""The tuned lens's held-out quality as one figure (docs/lens.md): per layer, KL(p_final ‖ p_lens)
and the answer's lens loss, logit lens vs tuned lens. Pure plotly (no torch, no streamlit)."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from backend.plots import layout

LOGIT_COLOUR, TUNED_COLOUR = "#8c8c8c", "#1f77b4"


def lens_quality_figure(quality: dict, *, title: str | None = None, height: int = 320) -> go.Figure:
    """``quality``: ``kl_logit``, ``kl_tuned``, ``answer_nll_logit``, ``answer_nll_tuned`` (``[L]`` each, nats)."""
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("KL to the final distribution (held-out text)", "answer's lens loss (held-out questions)"),
        horizontal_spacing=0.12,
    )
    layers = list(range(len(quality["kl_logit"])))
    for col, (name, unit) in enumerate((("kl", "KL"), ("answer_nll", "answer NLL")), start=1):
        for kind, colour in (("logit", LOGIT_COLOUR), ("tuned", TUNED_COLOUR)):
            fig.add_trace(
                go.Scatter(
                    x=layers,
                    y=quality[f"{name}_{kind}"],
                    mode="lines+markers",
                    name=f"{kind} lens",
                    legendgroup=kind,
                    showlegend=col == 1,
                    line=dict(color=colour, dash="dot" if kind == "logit" else "solid"),
                    marker=dict(size=5),
                    hovertemplate=f"layer %{{x}}<br>{unit} %{{y:.3f}} nats<extra>{kind}</extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="layer", row=1, col=col)
        fig.update_yaxes(title_text="nats", rangemode="tozero", row=1, col=col)
    return layout.fit(fig, height=height, title=title, legend="bottom")
