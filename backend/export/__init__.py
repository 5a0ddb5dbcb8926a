"""Presenting runs without the app: one run as one HTML file (``single``), a static site of runs
(``site``), both from one run view (``view``: the run's derived data read here, drawn by
``backend.plots.run_page``: one template and one script, shared with the notebook widget)."""
