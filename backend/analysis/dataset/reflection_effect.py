"""Do reflection words mark larger moves? The reference's statistic against a matched control.

For an occurrence of a reflection word between cut points b (before the word) and a (after
it), the reference's relative change is |L̂(a) − L̂(b)| / L̂(b). A word spans w = a − b tokens,
so it is compared with windows of the same length w in the same run, at similar progress
(|s/n − b/n| <= tolerance), that overlap no reflection word: the control of the occurrence
is the mean relative change over those windows. Comparing a w-token word with single
ordinary tokens (the earlier table) would favour long words; matching length and progress
removes both biases.

The event-aligned view: ΔL̂(o) = L̂(b + o) − L̂(b) for offsets o in −W..W around each
occurrence, averaged, with the same average around the matched control windows' starts.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from backend.analysis.dataset.groups import canonical_word  # one spelling rule for both tables
from backend.analysis.dataset.intervals import (
    MIN_INTERVAL_N,
    few_values,
    mean_interval,
    n_units,
    paired_statistic_interval,
    ratio_of_means,
)

DEFAULT_WINDOW = 16  # tokens each side in the event-aligned view
PROGRESS_TOLERANCE = 0.05
WIDER_TOLERANCE = 0.15  # used when no window lies within PROGRESS_TOLERANCE


def _rel(loss_at: dict[int, float], start: int, end: int) -> float:
    before, after = loss_at.get(start), loss_at.get(end)
    if before is None or after is None or not before > 0:
        return float("nan")
    return abs(after - before) / before


def occurrences(
    cuts: np.ndarray,
    loss: np.ndarray,
    keep: np.ndarray,
    n_tokens: int,
    reflections: list[dict],
    *,
    window: int = DEFAULT_WINDOW,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Per occurrence of a reflection word in one run.

    cuts/loss/keep ``[C]``: the run's cut points, L̂ and which are kept. reflections: the
    run's reflection marks (``RunData.reflections``: word, cut_before, cut_after). Returns (table with word,
    progress, span, rel_change, control_rel_change, n_control; event ``[E, 2W+1]``;
    control_event ``[E, 2W+1]``) with E occurrences whose own change is measurable.
    """
    cuts = np.asarray(cuts, dtype=np.int64)
    loss = np.asarray(loss, dtype=np.float64)
    keep = np.asarray(keep, dtype=bool)
    n = max(int(n_tokens), 1)
    loss_at = {int(c): float(v) for c, v, k in zip(cuts, loss, keep) if k and np.isfinite(v)}
    inside = np.zeros(n + 2, dtype=bool)  # token positions covered by a reflection word
    spans = []
    for mark in reflections:
        b, a = int(mark["cut_before"]), int(mark["cut_after"])
        spans.append((canonical_word(str(mark["word"])), b, a))
        inside[max(b, 0) : min(a, n) + 1] = True
    offsets = np.arange(-window, window + 1)
    rows, events, controls = [], [], []
    starts = np.array(sorted(loss_at), dtype=np.int64)
    for word, b, a in spans:
        rel = _rel(loss_at, b, a)
        if not np.isfinite(rel):
            continue
        w = a - b
        candidates = []
        for tol in (PROGRESS_TOLERANCE, WIDER_TOLERANCE):
            near = starts[np.abs(starts / n - b / n) <= tol]
            candidates = [
                int(s) for s in near if (s + w) in loss_at and not inside[s + 1 : min(s + w, n) + 1].any() and s != b
            ]
            if candidates:
                break
        control_values = [_rel(loss_at, s, s + w) for s in candidates]
        control_values = [v for v in control_values if np.isfinite(v)]
        rows.append(
            {
                "word": word,
                "progress": b / n,
                "span": w,
                "rel_change": rel,
                "control_rel_change": float(np.mean(control_values)) if control_values else float("nan"),
                "n_control": len(control_values),
            }
        )
        base = loss_at[b]
        events.append([loss_at.get(b + int(o), np.nan) - base for o in offsets])
        if candidates:
            around = np.array([[loss_at.get(s + int(o), np.nan) - loss_at[s] for o in offsets] for s in candidates])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # offsets no window reaches stay NaN
                controls.append(np.nanmean(around, axis=0))
        else:
            controls.append(np.full(len(offsets), np.nan))
    table = pd.DataFrame(rows, columns=["word", "progress", "span", "rel_change", "control_rel_change", "n_control"])
    shape = (len(rows), len(offsets))
    event = np.array(events, dtype=np.float64).reshape(shape)
    control = np.array(controls, dtype=np.float64).reshape(shape)
    return table, event, control


def word_effects(table: pd.DataFrame) -> pd.DataFrame:
    """Per word and pooled ("all words"): n, mean relative change and its control, each with an
    interval, the ratio of the two means and the mean paired difference, each with an interval.

    With a ``cluster`` column (the question of each occurrence's run, when branches are pooled)
    the intervals resample whole clusters; ``units`` counts them. Where fewer than
    ``MIN_INTERVAL_N`` units remain there is no interval and ``values`` lists the values."""
    out = []
    groups = [("all words", table)] + [(w, part) for w, part in table.groupby("word", sort=False)]
    for word, part in groups:
        paired = part.dropna(subset=["rel_change", "control_rel_change"])
        own = part["cluster"].tolist() if "cluster" in part else None
        pair_clusters = paired["cluster"].tolist() if "cluster" in paired else None
        effect = mean_interval(part["rel_change"], clusters=own)
        control = mean_interval(paired["control_rel_change"], clusters=pair_clusters)
        ratio = paired_statistic_interval(
            paired["rel_change"], paired["control_rel_change"], ratio_of_means, clusters=pair_clusters
        )
        diff = mean_interval(
            paired["rel_change"].to_numpy() - paired["control_rel_change"].to_numpy(), clusters=pair_clusters
        )
        units = n_units(None if own is None else np.unique(np.asarray(own, dtype=str)), len(part))
        out.append(
            {
                "word": word,
                "n": effect.n,
                "units": units,
                "values": few_values(part["rel_change"]) if units < MIN_INTERVAL_N else "",
                "n_matched": len(paired),
                **effect.as_dict("rel_change_"),
                **{k: v for k, v in control.as_dict("control_").items() if k != "control_n"},
                "ratio": ratio.estimate,
                "ratio_low": ratio.low,
                "ratio_high": ratio.high,
                "difference": diff.estimate,
                "difference_low": diff.low,
                "difference_high": diff.high,
            }
        )
    frame = pd.DataFrame(out)
    if len(frame) > 1:
        head, rest = frame.iloc[:1], frame.iloc[1:].sort_values(["n", "word"], ascending=[False, True])
        frame = pd.concat([head, rest], ignore_index=True)
    return frame


def event_aligned(event: np.ndarray, control: np.ndarray, window: int, clusters=None) -> pd.DataFrame:
    """Mean ΔL̂ around reflection words and around matched controls, per offset, with intervals
    (``clusters`` [E], one per occurrence, resampled whole when given)."""
    offsets = np.arange(-window, window + 1)
    rows = []
    for name, values in (("reflection word", event), ("matched control", control)):
        for j, offset in enumerate(offsets):
            column = values[:, j] if values.size else np.zeros(0)
            iv = mean_interval(column, clusters=None if clusters is None or not values.size else clusters)
            rows.append({"series": name, "offset": int(offset), **iv.as_dict()})
    return pd.DataFrame(rows)
