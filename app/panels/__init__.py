"""Explore's panels: one module per view, each with ``draw(view)`` and ``marks(view)``.

``draw`` writes the view into its slot of the page; ``marks`` returns the view's part of the
browser stepper's payload (``app/stepper.py``): where its cursor goes at every boundary. The page
draws ``CURSOR_PANELS`` at the server's cursor (they follow server-side stepping without the
browser component) and ``CHART_PANELS`` once per full rerun. A new panel is a new module added to
one of these lists.
"""

from __future__ import annotations

from app.panels import fidelity, lens, loss, path, step_card, text

CURSOR_PANELS = (text, step_card)
CHART_PANELS = (loss, fidelity, path, lens)
