"""A run's view with everything cached for it: importance (ablation, attention), counterfactual
importance from resampled branches and the exact update's fidelity, read from the store (never
computed here) and handed to ``backend.plots.run_page.build_run_view``."""

from __future__ import annotations

from backend.plots.run_page import RunView, build_run_view


def cached_extras(run, store=None) -> dict:
    """``importance``, ``counterfactual`` and ``fidelity`` of ``run`` as cached (None when not)."""
    from backend.analysis.exact import data as exact_data
    from backend.analysis.importance.stored import load_importance

    counterfactual = None
    if store is not None:
        from backend.pipeline.lineage import counterfactual as counterfactual_rows

        counterfactual = counterfactual_rows(store, run.key) or None
    meta = exact_data.load_meta(run, store)
    return {
        "importance": load_importance(run, store),
        "counterfactual": counterfactual,
        "fidelity": (meta or {}).get("fidelity"),
    }


def gather_run_view(run, store=None) -> RunView:
    """The view of ``run`` (a ``RunData``) with what ``store`` has cached for it."""
    return build_run_view(run, store=store, **cached_extras(run, store))
