"""The tuned-lens grid of a run, computed: the engine over the run's boundary cuts with the model's
``TunedLens`` (the ``lens_grid`` job), cached as the run's derived data (``schema.LENS_TUNED``,
read back by ``backend.analysis.lens.grid``). docs/lens.md."""

from __future__ import annotations

import numpy as np
import pandas as pd

from backend.analysis.lens.grid import grid_params, json_rows, lens_checksum
from backend.store import derived, schema


def lens_frame(result, tokenizer) -> pd.DataFrame:
    """The ``lens.parquet`` table of a ``ProbeResult`` (one row per boundary × layer, ``[K * L]``)."""
    K, L, k = result.lens_top_ids.shape
    ids = np.asarray(result.lens_top_ids)
    names = {int(i): tokenizer.decode([int(i)]) for i in set(ids.ravel().tolist())}
    return pd.DataFrame(
        {
            "boundary": np.repeat(np.arange(K), L),
            "cut": np.repeat(result.boundary_cuts, L),
            "layer": np.tile(np.arange(L), K),
            "nll": result.lens_nll.reshape(-1),
            "p_answer": result.lens_p_first.reshape(-1),
            "top_tokens": [[names[int(i)] for i in row] for row in ids.reshape(-1, k)],
            "top_probs": [row.tolist() for row in result.lens_top_probs.reshape(-1, k)],
        }
    )


def compute_tuned_grid(run, loaded, store, *, progress=None) -> pd.DataFrame:
    """The lens grid of ``run`` through the model's stored tuned lens, cached as derived data."""
    from backend.analysis.importance.run import probe_request_for_run
    from backend.analysis.lens.use import lens_for
    from backend.engine import provider
    from backend.engine.probe import analyze

    loaded = provider.provide_for_run(run.model_name, run.model_fingerprint, run.key, loaded=loaded)
    lens = lens_for(store.root, loaded, "tuned")
    checksum = lens_checksum(store, loaded.fingerprint)
    req = probe_request_for_run(run, loaded.tokenizer)
    req.top_k = len(run.lens["top_tokens"].iloc[0]) if len(run.lens) else req.top_k
    result = analyze(loaded.model, req, lens=lens, progress=progress)
    frame = lens_frame(result, loaded.tokenizer)
    rows = json_rows(frame)
    derived.save_derived(
        store, run, schema.LENS_TUNED, grid_params(str(checksum)), {"columns": list(frame.columns), "rows": rows}
    )
    return frame
