"""What holds across many questions (docs/architecture.md §6 "Dataset view"): the mean loss curve over
normalized progress split by correctness, final loss against trajectory length, and the
effect of reflection words on the loss compared with ordinary tokens (docs/architecture.md §1).

Definitions (the tests recompute each one directly with pandas):

- Progress bin of cut point c in a run of n trajectory tokens: ``min(c * bins // n, bins - 1)``.
  A run's value in a bin is the mean L̂ of its cut points there; the curve of a group is, per
  bin, the mean over runs of those values (each run counts once), with std (ddof=1), standard
  error, quartiles and the number of runs that have a cut point in the bin.
- Groups: ``correct`` / ``incorrect`` (model's answer vs the reference) and ``unknown``
  (no reference: the run scored the model's own answer); ``all`` holds every run.
- Relative loss change of a reflection word: ``|L̂(cut_after) − L̂(cut_before)| / L̂(cut_before)``
  with the cut points around the word from ``meta["reflections"]``. The per-token baseline is
  the mean of ``|L̂(c) − L̂(c−1)| / L̂(c−1)`` over every cut c that reads one ordinary token
  (not inside a reflection word), pooled over all runs.
- ``exclude_after_answer`` (default, as the reference does) drops cut points after the
  answer text already appeared in the trajectory, and the words and tokens there.

Aggregates are cached on disk under ``<cache>/aggregates/``: one small digest per run (so a
new run costs one read), and the combined tables per set of runs (so reopening the page on
500 runs reads one folder).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from backend.errors import CacheError, WriteError
from backend.store import atomic, schema
from backend.store.hashing import RUN_KEY_LENGTH, content_hash
from backend.store.runs import MetaView, RunStore, check_key

log = logging.getLogger(__name__)

STATS_VERSION = 1
DEFAULT_BINS = 50
GROUPS = ("correct", "incorrect", "unknown")
RUN_COLUMNS = (
    "key",
    "label",
    "question",
    "model",
    "answer",
    "predicted_answer",
    "correct",
    "group",
    "n_tokens",
    "n_steps",
    "initial_loss",
    "final_loss",
    "n_reflections",
)


@dataclass
class DatasetStats:
    """Aggregates over a set of runs.

    runs: one row per run (RUN_COLUMNS). curve: one row per (group, bin) with columns group,
    bin, progress (bin centre in 0..1), mean, std, sem, q25, q75, n_runs. reflections: one row
    per reflection word: word, count, n_runs, mean_rel_change, median_rel_change, ratio (mean
    over the per-token baseline). baseline: {"mean_rel_change", "count"}.
    """

    runs: pd.DataFrame
    curve: pd.DataFrame
    reflections: pd.DataFrame
    baseline: dict
    settings: dict
    skipped: list[str] = field(default_factory=list)  # one line per run that could not be read
    from_cache: bool = False


def canonical_word(word: str) -> str:
    """Group spellings of one reflection word: "Wait" -> "wait", "Hmmm" -> "hmm"."""
    word = re.sub(r"\s+", " ", word.strip().lower())
    return re.sub(r"^hmm+$", "hmm", word).replace("re-check", "recheck")


def group_of(correct) -> str:
    if correct is None or (isinstance(correct, float) and np.isnan(correct)):
        return "unknown"
    return "correct" if bool(correct) else "incorrect"


# ---------------------------------------------------------------------------- one run
def run_digest(meta: MetaView, tokens: pd.DataFrame, bins: int, exclude_after_answer: bool) -> dict:
    """Everything the aggregates need from one run, small enough to cache as JSON.

    tokens: the run's per-cut table (cut, loss, after_answer_seen). Returns the run's row,
    its per-bin mean loss ``bin_loss`` [bins] (None where it has no cut point), the relative
    changes of its reflection words, and the sum and count of its per-token changes.
    """
    summary = meta.summary
    n = summary.n_tokens
    cuts = tokens["cut"].to_numpy(dtype=np.int64)
    loss = tokens["loss"].to_numpy(dtype=np.float64)
    late = tokens["after_answer_seen"].to_numpy(dtype=bool) if exclude_after_answer else np.zeros(len(cuts), bool)

    bin_of_cut = np.minimum(cuts * bins // max(n, 1), bins - 1)
    keep = ~late
    sums = np.bincount(bin_of_cut[keep], weights=loss[keep], minlength=bins)
    counts = np.bincount(bin_of_cut[keep], minlength=bins)
    bin_loss = [float(s / c) if c else None for s, c in zip(sums, counts)]

    loss_at = dict(zip(cuts.tolist(), loss.tolist()))
    late_at = dict(zip(cuts.tolist(), late.tolist()))
    words = []
    inside_word = np.zeros(n + 1, dtype=bool)  # cut c reads a token of a reflection word
    for mark in meta.reflections:
        before, after = int(mark["cut_before"]), int(mark["cut_after"])
        inside_word[before + 1 : after + 1] = True
        if before in loss_at and after in loss_at and not late_at[after] and loss_at[before] > 0:
            words.append([canonical_word(mark["word"]), abs(loss_at[after] - loss_at[before]) / loss_at[before]])

    prev_loss = np.array([loss_at.get(c - 1, np.nan) for c in cuts.tolist()])
    ordinary = (cuts >= 1) & ~np.isnan(prev_loss) & ~late & ~inside_word[np.clip(cuts, 0, n)]
    ordinary &= np.nan_to_num(prev_loss, nan=0.0) > 0
    rel = np.abs(loss[ordinary] - prev_loss[ordinary]) / prev_loss[ordinary]

    correct = meta.correct
    row = {
        "key": meta.key,
        "label": meta.label,
        "question": meta.question,
        "model": meta.model_name,
        "answer": meta.answer,
        "predicted_answer": meta.predicted_answer,
        "correct": correct,
        "group": group_of(correct),
        "n_tokens": n,
        "n_steps": summary.n_steps,
        "initial_loss": summary.initial_loss,
        "final_loss": summary.final_loss,
        "n_reflections": len(meta.reflections),
    }
    return {
        "row": row,
        "bin_loss": bin_loss,
        "words": words,
        "token_sum": float(rel.sum()),
        "token_count": int(rel.size),
        "created": meta.created,
    }


def _read_run(store: RunStore, key: str) -> tuple[MetaView, pd.DataFrame]:
    """meta.json and tokens.parquet of one run (tokens checked against its checksum by the store)."""
    return store.read_tokens(key, columns=["cut", "loss", "after_answer_seen"])


# ---------------------------------------------------------------------------- combine
def combine(digests: list[dict], bins: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """(runs, curve, reflections, baseline) from per-run digests."""
    runs = _with_object_correct(pd.DataFrame([d["row"] for d in digests], columns=list(RUN_COLUMNS)))
    if digests:
        values = np.array([[np.nan if v is None else v for v in d["bin_loss"]] for d in digests], dtype=np.float64)
    else:
        values = np.zeros((0, bins))
    groups = runs["group"].to_numpy()
    frames = []
    for name in ("all", *GROUPS):
        rows = values if name == "all" else values[groups == name]
        if rows.shape[0] == 0:
            continue
        frames.append(_bin_stats(rows, name, bins))
    curve = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["group", "bin", "progress", "mean", "std", "sem", "q25", "q75", "n_runs"])
    )

    token_count = sum(d["token_count"] for d in digests)
    baseline_mean = sum(d["token_sum"] for d in digests) / token_count if token_count else float("nan")
    baseline = {"mean_rel_change": baseline_mean, "count": int(token_count)}  # pooled over all runs
    word_rows = [(w, rel, d["row"]["key"]) for d in digests for w, rel in d["words"]]
    words = pd.DataFrame(word_rows, columns=["word", "rel_change", "key"])
    if words.empty:
        reflections = pd.DataFrame(columns=["word", "count", "n_runs", "mean_rel_change", "median_rel_change", "ratio"])
    else:
        reflections = (
            words.groupby("word")
            .agg(
                count=("rel_change", "size"),
                n_runs=("key", "nunique"),
                mean_rel_change=("rel_change", "mean"),
                median_rel_change=("rel_change", "median"),
            )
            .reset_index()
        )
        reflections["ratio"] = reflections["mean_rel_change"] / baseline_mean if token_count else np.nan
        reflections = reflections.sort_values(["count", "word"], ascending=[False, True], ignore_index=True)
    return runs, curve, reflections, baseline


def _with_object_correct(runs: pd.DataFrame) -> pd.DataFrame:
    """``correct`` as Python True / False / None whatever the source (pandas infers bool or NA)."""
    values = [
        None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else bool(v)
        for v in runs["correct"].tolist()
    ]
    return runs.assign(correct=pd.Series(values, index=runs.index, dtype=object))


def _bin_stats(values: np.ndarray, group: str, bins: int) -> pd.DataFrame:
    """Per-bin statistics over runs of ``values`` [R, bins] (NaN where a run has no cut point)."""
    present = ~np.isnan(values)
    n_runs = present.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.where(present, values, 0.0).sum(axis=0)
        mean = np.where(n_runs > 0, total / np.maximum(n_runs, 1), np.nan)
        sq = np.where(present, (values - mean) ** 2, 0.0).sum(axis=0)
        std = np.where(n_runs > 1, np.sqrt(sq / np.maximum(n_runs - 1, 1)), np.nan)
        sem = std / np.sqrt(np.maximum(n_runs, 1))
    q25 = np.full(bins, np.nan)
    q75 = np.full(bins, np.nan)
    for b in np.flatnonzero(n_runs):
        q25[b], q75[b] = np.percentile(values[present[:, b], b], [25, 75])
    return pd.DataFrame(
        {
            "group": group,
            "bin": np.arange(bins),
            "progress": (np.arange(bins) + 0.5) / bins,
            "mean": mean,
            "std": std,
            "sem": sem,
            "q25": q25,
            "q75": q75,
            "n_runs": n_runs.astype(np.int64),
        }
    )


# ---------------------------------------------------------------------------- cached entry point
def _settings_tag(bins: int, exclude_after_answer: bool) -> str:
    return f"v{STATS_VERSION}-b{bins}-{'x' if exclude_after_answer else 'a'}"


def _aggregate_key(tag: str, run_ids: list[tuple[str, float | None]]) -> str:
    return content_hash([tag, sorted((k, c) for k, c in run_ids)], RUN_KEY_LENGTH)


class StatsCache:
    """``<cache>/aggregates/``: ``digests/<key>.<tag>.json`` and ``sets/<hash>/`` tables."""

    def __init__(self, store: RunStore):
        self.root = store.root / schema.AGGREGATES_DIR
        self.digests = self.root / "digests"
        self.sets = self.root / "sets"

    def _ready(self) -> bool:
        try:
            self.digests.mkdir(parents=True, exist_ok=True)
            self.sets.mkdir(parents=True, exist_ok=True)
            return True
        except OSError:
            return False  # a read-only cache still works, just without this speed-up

    def get_digest(self, key: str, tag: str, created) -> dict | None:
        try:
            digest = json.loads((self.digests / f"{key}.{tag}.json").read_text())
        except (OSError, ValueError):
            return None
        return digest if digest.get("created") == created else None

    def put_digest(self, key: str, tag: str, digest: dict) -> None:
        if not self._ready():
            return
        try:
            atomic.write_json(self.digests / f"{key}.{tag}.json", digest)
        except WriteError as exc:  # a speed-up only: the page still shows the numbers
            log.warning("run digest not cached: %s", exc)

    def get_set(self, set_key: str):
        folder = self.sets / set_key
        try:
            info = json.loads((folder / "info.json").read_text())
            tables = [pd.read_parquet(folder / f"{name}.parquet") for name in ("runs", "curve", "reflections")]
        except Exception:
            return None
        tables[0] = _with_object_correct(tables[0])
        return tables, info

    def put_set(self, set_key: str, runs, curve, reflections, info: dict) -> None:
        if not self._ready():
            return
        final, tmp = self.sets / set_key, None
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{set_key}.", dir=self.sets))
            runs.to_parquet(tmp / "runs.parquet", index=False)
            curve.to_parquet(tmp / "curve.parquet", index=False)
            reflections.to_parquet(tmp / "reflections.parquet", index=False)
            atomic.write_json(tmp / "info.json", info)
            if final.exists():
                shutil.rmtree(tmp, ignore_errors=True)
                return
            os.rename(tmp, final)
        except (OSError, WriteError) as exc:  # a speed-up only: the page still shows the numbers
            log.warning("dataset statistics not cached in %s: %s", self.sets, exc)
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)


def dataset_stats(
    store: RunStore,
    keys: list[str] | None = None,
    *,
    bins: int = DEFAULT_BINS,
    exclude_after_answer: bool = True,
    use_cache: bool = True,
) -> DatasetStats:
    """Aggregates over ``keys`` (default: every run in the cache); damaged runs are skipped
    and listed in ``skipped``. Cached on disk by the set of runs and the settings."""
    if not 1 <= int(bins) <= 1000:
        raise ValueError(f"bins must be between 1 and 1000, got {bins}")
    index = store.list_runs()
    created_of = dict(zip(index["key"], index["created"]))
    if keys is None:
        keys = list(index["key"])
    keys = list(dict.fromkeys(check_key(k) for k in keys))
    tag = _settings_tag(bins, exclude_after_answer)
    settings = {"bins": int(bins), "exclude_after_answer": bool(exclude_after_answer)}
    cache = StatsCache(store)
    set_key = _aggregate_key(tag, [(k, created_of.get(k)) for k in keys])
    if use_cache and (hit := cache.get_set(set_key)) is not None:
        (runs, curve, reflections), info = hit
        return DatasetStats(runs, curve, reflections, info["baseline"], settings, info["skipped"], from_cache=True)

    digests, skipped = [], []
    for key in keys:
        created = created_of.get(key)
        digest = cache.get_digest(key, tag, created) if use_cache and created is not None else None
        if digest is None:
            try:
                meta, tokens = _read_run(store, key)
                digest = run_digest(meta, tokens, bins, exclude_after_answer)
            except CacheError as exc:
                skipped.append(str(exc))
                continue
            except (KeyError, TypeError, ValueError) as exc:
                skipped.append(f"run {key}: unexpected content ({type(exc).__name__}: {exc})")
                continue
            if use_cache and digest.get("created") is not None:
                cache.put_digest(key, tag, digest)
        digests.append(digest)
    runs, curve, reflections, baseline = combine(digests, bins)
    if use_cache:
        cache.put_set(
            set_key, runs, curve, reflections, {"baseline": baseline, "skipped": skipped, "settings": settings}
        )
    return DatasetStats(runs, curve, reflections, baseline, settings, skipped)
