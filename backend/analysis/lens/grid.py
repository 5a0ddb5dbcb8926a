"""A run's lens grid (boundary × layer: answer NLL, p(first answer token), top tokens) read through
either lens (docs/lens.md). ``"logit"`` is the grid stored with the run (``lens.parquet``);
``"tuned"`` is computed once per run and tuned lens — the engine over the run's boundary cuts with
the model's ``TunedLens`` — and kept as the run's derived data (``schema.LENS_TUNED``, keyed by the
lens's checksum, so a retrained lens gives a new grid). Both come back as one table with the same
columns (``schema.LENS_COLUMNS``), so the heatmap, the step card, exports and ``show --json`` take
either one.
"""

from __future__ import annotations

import pandas as pd

from backend.errors import InputError
from backend.store import derived, schema

LENS_KINDS = ("logit", "tuned")


def check_kind(kind: str) -> str:
    if kind not in LENS_KINDS:
        raise InputError(f"lens {kind!r} is not one of {', '.join(LENS_KINDS)}")
    return kind


def _lens_checksum(store, fingerprint: str | None) -> str | None:
    from backend.store.lenses import has_lens, lens_dir, read_config

    if not fingerprint or store is None or not has_lens(store.root, fingerprint):
        return None
    return read_config(lens_dir(store.root, fingerprint)).get("params_sha256")


def lens_checksum(store, fingerprint: str | None) -> str | None:
    """The stored tuned lens's ``params_sha256`` for ``fingerprint`` (None when there is none)."""
    return _lens_checksum(store, fingerprint)


def grid_params(checksum: str) -> dict:
    return _params(checksum)


def _params(checksum: str) -> dict:
    return {"lens": checksum}


def load_tuned_grid(run, store) -> pd.DataFrame | None:
    """The cached tuned-lens grid of ``run`` for the model's current tuned lens, else None."""
    checksum = _lens_checksum(store, run.model_fingerprint)
    if checksum is None:
        return None
    data = derived.load_derived(store, run, schema.LENS_TUNED, _params(checksum))
    if data is None or list(data.get("columns", [])) != list(schema.LENS_COLUMNS):
        return None
    return pd.DataFrame(data["rows"], columns=list(schema.LENS_COLUMNS))


def json_rows(frame: pd.DataFrame) -> list[list]:
    return [
        [
            int(r.boundary),
            int(r.cut),
            int(r.layer),
            float(r.nll),
            float(r.p_answer),
            list(r.top_tokens),
            [float(p) for p in r.top_probs],
        ]
        for r in frame.itertuples(index=False)
    ]


def lens_table(run, store, kind: str = "logit") -> pd.DataFrame:
    """The run's lens grid through ``kind``; ``InputError`` (one line) when the tuned grid is not computed."""
    check_kind(kind)
    if kind == "logit":
        return run.lens
    frame = load_tuned_grid(run, store)
    if frame is None:
        if _lens_checksum(store, run.model_fingerprint) is None:
            raise InputError(f"no tuned lens for {run.model_name} yet: run `raml lens train --model {run.model_name}`")
        raise InputError(
            f"run {run.key[:12]}: its tuned-lens grid is not computed yet: run `raml lens grid {run.key[:12]}`"
        )
    return frame


def show_fields(run, store) -> dict:
    """``show --json``'s lens block: the grid through each lens (``tuned`` null until computed) and
    the stored tuned lens's held-out quality (null when the model has none)."""
    from backend.store.lenses import LensError, has_lens, lens_dir, read_config

    def records(frame: pd.DataFrame) -> list[dict]:
        return [dict(zip(schema.LENS_COLUMNS, row)) for row in json_rows(frame)]

    tuned_lens = None
    if run.model_fingerprint and store is not None and has_lens(store.root, run.model_fingerprint):
        try:
            config = read_config(lens_dir(store.root, run.model_fingerprint))
            tuned_lens = {k: config.get(k) for k in ("params_sha256", "trained", "quality")}
        except LensError:
            tuned_lens = None
    tuned = load_tuned_grid(run, store)
    return {
        "lens_grid": {"logit": records(run.lens), "tuned": None if tuned is None else records(tuned)},
        "tuned_lens": tuned_lens,
    }
