"""Cached loaders over ``backend.store.runs`` and ``backend.analysis.spaces.proxy`` for the pages.

Runs are content-addressed, so ``(cache root, key, meta.json mtime)`` identifies a run's data;
``st.cache_resource`` keeps the loaded run (shared, read-only), ``st.cache_data`` the projections,
and moving the cursor never reloads or refits anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from backend.store.runs import RunData, RunStore, default_root


def cache_root() -> str:
    """The cache directory the app reads (``RAML_CACHE_DIR``, default ``./cache``), absolute."""
    return str(Path(default_root()).expanduser().resolve())


@st.cache_resource(show_spinner=False)
def _store_for(root: str) -> RunStore:
    return RunStore(root)


def get_store() -> RunStore:
    return _store_for(cache_root())


def store_at(root: str) -> RunStore:
    """The (cached) store at ``root``: cached figure builders key on the root string."""
    return _store_for(root)


def run_stamp(store: RunStore, key: str) -> float:
    """Changes when a run is recomputed (meta.json rewritten); 0.0 if it is missing."""
    return store.stamp(key)


def derived_stamp(store: RunStore, key: str) -> str:
    """Changes when the run's derived data (exact update, importance, ...) is written; the run's
    stamp does not, so every cached loader of derived data keys on this as well (issue 25)."""
    from backend.store import derived

    return derived.derived_stamp(load_run(store, key), store)


def list_runs(store: RunStore) -> pd.DataFrame:
    """Library table (newest first), straight from the SQLite index (cheap, always fresh)."""
    return store.list_runs()


@st.cache_resource(show_spinner="Loading run…", max_entries=32)
def _load_run(root: str, key: str, stamp: float) -> RunData:
    return _store_for(root).open(key)


def load_run(store: RunStore, key: str) -> RunData:
    """The run's meta and tables (checksums verified on first load), cached per key + mtime.

    One shared object per server (``st.cache_resource``), not a copy per call: pages and figure
    builders only read it (never assign into its tables or meta). ``st.cache_data`` would unpickle
    a copy on every call: 0.6 s of CPU per call for a 30,000-token, 1,500-step run (issue 23)."""
    return _load_run(str(store.root), key, run_stamp(store, key))


@st.cache_data(show_spinner="Fitting the 2-D projection…", max_entries=64)
def _projection(root: str, key: str, stamp: float, layer: int, space: str, method: str, dstamp: str = "") -> dict:
    from backend.analysis.spaces import proxy

    run = _load_run(root, key, stamp)
    proj = proxy.project([run], layer, space, method=method, store=_store_for(root))
    vectors = proxy.space_vectors(run, layer, space)
    geometry = proxy.step_geometry(vectors)
    return {
        "coords": np.asarray(proj.coords[0], dtype=np.float64),
        "explained_variance": None if proj.explained_variance is None else np.asarray(proj.explained_variance),
        "trustworthiness": proj.trustworthiness,
        "geometry": geometry,
    }


def projection(store: RunStore, key: str, layer: int, space: str, method: str = "pca") -> dict:
    """2-D path (``coords`` [B, 2]), explained variance, trustworthiness and step geometry."""
    dstamp = derived_stamp(store, key) if space == "exact" else ""
    return _projection(str(store.root), key, run_stamp(store, key), int(layer), space, method, dstamp)


@st.cache_data(show_spinner=False, max_entries=64)
def _available_layers(root: str, key: str, stamp: float, space: str, dstamp: str) -> list[int]:
    from backend.analysis.spaces import proxy

    return proxy.available_layers(_load_run(root, key, stamp), space, store=_store_for(root))


def available_layers(store: RunStore, key: str, space: str) -> list[int]:
    """Layers ``space`` can show; the exact space's come from derived data, so its stamp is in the key."""
    dstamp = derived_stamp(store, key) if space == "exact" else ""
    return _available_layers(str(store.root), key, run_stamp(store, key), space, dstamp)


def proxy_available() -> bool:
    """Whether ``backend.analysis.spaces.proxy`` (the 2-D path) is importable in this checkout."""
    try:
        import backend.analysis.spaces.proxy  # noqa: F401
    except ImportError:
        return False
    return True


def default_run(runs: pd.DataFrame, store: RunStore | None = None) -> str | None:
    """The run Explore opens without ``?run=``: the demo run (label ``demo``) if cached, else the newest.

    Found from the index alone (``make run`` labels the demo run "demo"), so no model code loads.
    With ``store``, only a healthy run qualifies (``RunStore.newest_healthy_run``: it opens, checksums
    verified); damaged runs are skipped.
    """
    if runs.empty:
        return None
    if store is not None:
        return store.newest_healthy_run(label="demo")
    demo = runs[runs["label"].fillna("") == "demo"]
    return str((demo if not demo.empty else runs)["key"].iloc[0])
