"""RaML's claims across a dataset, in one cached report (the Dataset page and ``raml stats``).

Each view answers one claim of the paper (docs/dataset_claims.md says which):

- descent: mean L̂ over progress x = c/n, by correctness, with bootstrap bands (progress_curves);
- reflection: reflection words against matched ordinary windows, and the event-aligned
  average around them (reflection_effect);
- length: final L̂ and the area under the curve against trajectory length (the runs table);
- two models on the same questions (model_pairs) and samples of one question (samples),
  computed on request from the runs table and the stored curves;
- the map of tasks by their final implicit update, against the question-only control
  (task_map), per model;
- inner-loop statistics: step size and step cosine over progress (inner_loop).

One digest per run (derived data of the run, ``schema.CLAIMS_DIGEST``, keyed by the settings)
holds everything the views need from that run, so a new run costs one read and a set of
runs is combined in memory; the combined report is cached per set of runs and settings
(``schema.CLAIMS_REPORT``, under ``<cache>/aggregates/``) so that reopening the page reads one
file. A cache that cannot be written only warns (``backend.store.derived``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from io import StringIO

import numpy as np
import pandas as pd

from backend.analysis.dataset import inner_loop, progress_curves, reflection_effect, task_map
from backend.analysis.dataset.groups import group_of
from backend.analysis.dataset.intervals import few_values, mean_interval, paired_statistic_interval, spearman
from backend.analysis.dataset.model_pairs import question_id
from backend.analysis.spaces.proxy import available_layers, space_vectors
from backend.errors import CacheError, InputError
from backend.store import derived, schema
from backend.store.runs import RunData, RunStore, check_key

CLAIMS_VERSION = schema.CLAIMS_DIGEST.version
GROUP_ORDER = ("all", "correct", "incorrect", "unknown")


@dataclass(frozen=True)
class ClaimsSettings:
    """What the aggregates depend on (part of every cache key)."""

    grid_points: int = progress_curves.DEFAULT_GRID_POINTS
    ema_alpha: float | None = None  # None: raw L̂; 0.01: the reference's EMA
    exclude_after_answer: bool = True  # drop cut points after the answer text appeared, as the reference does
    layer: int | None = None  # proxy layer of the inner-loop stats and the task map (None: each run's middle one)
    window: int = reflection_effect.DEFAULT_WINDOW
    bins: int = inner_loop.DEFAULT_BINS
    # branches (runs with a parent) repeat their parent's question: left out by default; when
    # included, every interval resamples whole questions (a cluster bootstrap), never runs
    include_branches: bool = False

    def validate(self) -> ClaimsSettings:
        progress_curves.progress_grid(self.grid_points)
        if self.ema_alpha is not None and not 0 < float(self.ema_alpha) <= 1:
            raise InputError(f"EMA alpha must be in (0, 1], got {self.ema_alpha}")
        if not 1 <= int(self.window) <= 256:
            raise InputError(f"reflection window must be 1..256 tokens, got {self.window}")
        if not 2 <= int(self.bins) <= 100:
            raise InputError(f"inner-loop bins must be 2..100, got {self.bins}")
        return self

    def params(self) -> dict:
        """The settings as derived-data parameters of the report (the set's key)."""
        return asdict(self)

    def digest_params(self) -> dict:
        """What one run's digest depends on (whether branches are pooled does not change a run)."""
        return {k: v for k, v in asdict(self).items() if k != "include_branches"}


@dataclass
class ClaimsReport:
    """Every aggregate of the Dataset page. Tables are pandas frames; see ``to_json``."""

    settings: ClaimsSettings
    runs: pd.DataFrame  # one row per run (RUN_COLUMNS)
    grid: np.ndarray  # [G] progress values
    curves: np.ndarray  # [R, G] each run's L̂ on the grid (rows follow ``runs``)
    descent: pd.DataFrame  # group, progress, mean, low, high, n
    descent_summary: pd.DataFrame  # group, statistic (initial/final/drop/auc), mean, low, high, n
    length: pd.DataFrame  # x, y, spearman, low, high, n: does longer thinking mean more descent?
    reflection_words: pd.DataFrame  # per word + pooled (reflection_effect.word_effects)
    reflection_events: pd.DataFrame  # series, offset, mean, low, high, n
    inner_loop: pd.DataFrame  # measure, group, bin, progress, mean, low, high, n
    vectors: dict[str, np.ndarray]  # task-map space -> [R, D] (NaN rows where a run has none)
    skipped: list[str] = field(default_factory=list)
    from_cache: bool = False

    def task_map(self, space: str = "update", model: str | None = None, method: str = "pca") -> dict:
        """The map of tasks of one model: coords, neighbours, and agreement with the control."""
        if space not in task_map.SPACES:
            raise InputError(f"unknown task-map space {space!r} (choose {', '.join(task_map.SPACES)})")
        models = self.runs["model"].unique().tolist()
        model = model or (self.runs["model"].value_counts().index[0] if len(self.runs) else None)
        if model not in models:
            raise InputError(f"no runs of model {model!r}")
        rows = np.flatnonzero((self.runs["model"] == model).to_numpy() & np.isfinite(self.vectors[space]).all(axis=1))
        keys = self.runs["key"].to_numpy()[rows].tolist()
        fitted = task_map.fit_map(keys, self.vectors[space][rows], method)
        control = task_map.cosine_similarity(self.vectors["question"][rows])
        table = self.runs.iloc[rows][["key", "label", "question", "group", "n_tokens", "final_loss"]].reset_index(
            drop=True
        )
        table["x"], table["y"] = fitted.coords[:, 0], fitted.coords[:, 1]
        return {
            "model": model,
            "space": space,
            "description": task_map.SPACES[space],
            "points": table,
            "neighbours": task_map.neighbours(fitted.similarity, keys),
            "trustworthiness": fitted.trustworthiness,
            "warning": fitted.warning,
            "neighbour_overlap_with_control": task_map.neighbour_overlap(fitted.similarity, control),
            "similarity_agreement_with_control": task_map.similarity_agreement(fitted.similarity, control),
        }

    def to_json(self) -> dict:
        """Every aggregate as plain JSON (``raml stats --json``)."""

        def records(frame: pd.DataFrame) -> list[dict]:
            return json.loads(frame.to_json(orient="records"))

        report = {
            "settings": asdict(self.settings),
            "n_runs": len(self.runs),
            "skipped": self.skipped,
            "runs": records(self.runs),
            "descent": records(self.descent),
            "descent_summary": records(self.descent_summary),
            "length": records(self.length),
            "reflection_words": records(self.reflection_words),
            "reflection_events": records(self.reflection_events),
            "inner_loop": records(self.inner_loop),
            "task_maps": {},
        }
        for model in self.runs["model"].unique().tolist():
            for space in task_map.SPACES:
                try:
                    tm = self.task_map(space, model)
                except InputError:
                    continue
                report["task_maps"][f"{model}/{space}"] = {
                    k: records(v) if isinstance(v, pd.DataFrame) else v for k, v in tm.items()
                }
        return report


RUN_COLUMNS = (
    "key",
    "label",
    "parent",
    "question",
    "model",
    "source",
    "temperature",
    "seed",
    "answer",
    "predicted_answer",
    "correct",
    "group",
    "n_tokens",
    "n_steps",
    "initial_loss",
    "final_loss",
    "auc",
    "n_reflections",
    "layer",
    "created",
)


# ---------------------------------------------------------------------------- one run
def _middle_proxy_layer(run: RunData, wanted: int | None) -> int | None:
    layers = available_layers(run, "proxy")
    if not layers:
        return None
    if wanted is not None:
        return int(wanted) if int(wanted) in layers else None
    return layers[len(layers) // 2]


def run_digest(run: RunData, settings: ClaimsSettings) -> dict[str, np.ndarray]:
    """What the report needs from one run, as arrays (the row and tables as JSON strings)."""
    tokens, summary = run.tokens, run.summary
    n_tokens = int(summary.n_tokens)
    grid = progress_curves.progress_grid(settings.grid_points)
    cuts = tokens["cut"].to_numpy(np.int64)
    loss = tokens["loss"].to_numpy(np.float64)
    seen = tokens["after_answer_seen"].to_numpy(bool)
    keep = ~seen if settings.exclude_after_answer else np.ones(len(cuts), bool)
    curve = progress_curves.curve_on_grid(cuts, loss, n_tokens, grid, keep=keep, ema_alpha=settings.ema_alpha)
    # the summaries follow the same switch as the curve: L̂ at the first and last kept cut point
    kept = np.flatnonzero(keep & np.isfinite(loss))
    initial_loss = float(loss[kept[0]]) if kept.size else float("nan")
    final_loss = float(loss[kept[-1]]) if kept.size else float("nan")
    table, event, control = reflection_effect.occurrences(
        cuts, loss, keep, n_tokens, run.reflections, window=settings.window
    )
    layer = _middle_proxy_layer(run, settings.layer)
    boundary_cuts = np.concatenate([[0], run.steps["end"].to_numpy(np.int64)])
    profile = {m: np.full(settings.bins, np.nan) for m in inner_loop.MEASURES}
    d_model = int(run.d_model or 0)
    update = np.full(1, np.nan)
    shift = question = np.full(max(d_model, 1), np.nan)
    if layer is not None:
        u = space_vectors(run, layer, "proxy").astype(np.float64)  # [K, F]
        if len(u) == len(boundary_cuts):
            profile = inner_loop.run_profile(u, boundary_cuts, n_tokens, settings.bins)
        update = u[-1]
        hidden = run.hidden_layer(layer).astype(np.float64)  # [K, d]
        shift, question = hidden[-1] - hidden[0], hidden[0]
    generation = run.generation
    correct = run.correct
    row = {
        "key": run.key,
        "label": run.label,
        "parent": run.parent,
        "question": run.question,
        "model": run.model_name,
        "source": run.trajectory_source,
        "temperature": float(generation.get("temperature", 0.0) or 0.0),
        "seed": int(generation.get("seed", 0) or 0),
        "answer": run.answer,
        "predicted_answer": run.predicted_answer,
        "correct": None if correct is None else bool(correct),
        "group": group_of(correct),
        "n_tokens": n_tokens,
        "n_steps": int(summary.n_steps),
        "initial_loss": initial_loss,
        "final_loss": final_loss,
        "auc": progress_curves.area_under_curve(curve, grid),
        "n_reflections": len(run.reflections),
        "layer": -1 if layer is None else int(layer),
        "created": run.created,
    }
    return {
        "row": np.array(json.dumps(row)),
        "curve": curve,
        "occurrences": np.array(table.to_json(orient="split")),
        "event": event,
        "control": control,
        **{f"inner.{m}": profile[m] for m in inner_loop.MEASURES},
        "vec.update": update,
        "vec.shift": shift,
        "vec.question": question,
    }


def _cached_digest(store: RunStore, run: RunData, settings: ClaimsSettings) -> dict[str, np.ndarray]:
    if (hit := derived.load_derived(store, run, schema.CLAIMS_DIGEST, settings.digest_params())) is not None:
        return hit
    digest = run_digest(run, settings)
    derived.save_derived(
        store, run, schema.CLAIMS_DIGEST, settings.digest_params(), digest
    )  # a failed write only warns
    return digest


# ---------------------------------------------------------------------------- combine
def _stack_vectors(digests: list[dict], name: str) -> np.ndarray:
    """``[R, D]`` with NaN rows for runs of another width or without the vector."""
    arrays = [np.asarray(d[f"vec.{name}"], dtype=np.float64) for d in digests]
    widths = [a.size for a in arrays if np.isfinite(a).all()]
    width = max(set(widths), key=widths.count) if widths else 1
    out = np.full((len(arrays), width), np.nan)
    for i, a in enumerate(arrays):
        if a.size == width and np.isfinite(a).all():
            out[i] = a
    return out


def combine(digests: list[dict], settings: ClaimsSettings, skipped: list[str]) -> ClaimsReport:
    grid = progress_curves.progress_grid(settings.grid_points)
    runs = pd.DataFrame([json.loads(str(d["row"])) for d in digests], columns=list(RUN_COLUMNS))
    runs["correct"] = pd.Series([None if v is None or v != v else bool(v) for v in runs["correct"]], dtype=object)
    curves = np.array([d["curve"] for d in digests], dtype=np.float64).reshape(len(digests), len(grid))
    groups = runs["group"].to_numpy()
    # the unit of every interval: a run, or (branches pooled) its question, resampled whole
    clusters = runs["question"].map(question_cluster).to_numpy() if settings.include_branches else None
    descent = progress_curves.group_curves(curves, groups, grid, order=GROUP_ORDER, clusters=clusters)

    summary_rows = []
    for name in GROUP_ORDER:
        part = runs if name == "all" else runs[runs["group"] == name]
        if part.empty:
            continue
        part_clusters = None if clusters is None else clusters[part.index.to_numpy()]
        for statistic, values in (
            ("initial_loss", part["initial_loss"]),
            ("final_loss", part["final_loss"]),
            ("drop", part["initial_loss"] - part["final_loss"]),
            ("auc", part["auc"]),
            ("n_tokens", part["n_tokens"]),
        ):
            iv = mean_interval(values, clusters=part_clusters)
            row = {"group": name, "statistic": statistic, **iv.as_dict()}
            row["values"] = few_values(values) if np.isnan(iv.low) and iv.n else ""
            summary_rows.append(row)
    descent_summary = pd.DataFrame(summary_rows, columns=["group", "statistic", "mean", "low", "high", "n", "values"])

    length = length_effects(runs, clusters)

    tables = [pd.read_json(StringIO(str(d["occurrences"])), orient="split") for d in digests]
    if clusters is not None:
        tables = [t.assign(cluster=str(c)) for t, c in zip(tables, clusters)]
    occurrences = pd.concat([t for t in tables if len(t)], ignore_index=True) if any(len(t) for t in tables) else None
    width = 2 * settings.window + 1
    event = (
        np.concatenate([np.asarray(d["event"]).reshape(-1, width) for d in digests])
        if digests
        else np.zeros((0, width))
    )
    control = (
        np.concatenate([np.asarray(d["control"]).reshape(-1, width) for d in digests])
        if digests
        else np.zeros((0, width))
    )
    if occurrences is None:
        occurrences = pd.DataFrame(
            columns=["word", "progress", "span", "rel_change", "control_rel_change", "n_control"]
        )
    reflection_words = reflection_effect.word_effects(occurrences)
    event_clusters = (
        None
        if clusters is None
        else np.concatenate(
            [[str(c)] * np.asarray(d["event"]).reshape(-1, width).shape[0] for d, c in zip(digests, clusters)]
        )
    )
    reflection_events = reflection_effect.event_aligned(event, control, settings.window, clusters=event_clusters)

    profiles = [{m: np.asarray(d[f"inner.{m}"], dtype=np.float64) for m in inner_loop.MEASURES} for d in digests]
    inner = inner_loop.dataset_profile(profiles, groups, settings.bins, clusters=clusters)
    vectors = {name: _stack_vectors(digests, name) for name in ("update", "shift", "question")}
    return ClaimsReport(
        settings,
        runs,
        grid,
        curves,
        descent,
        descent_summary,
        length,
        reflection_words,
        reflection_events,
        inner,
        vectors,
        skipped,
    )


def question_cluster(question) -> str:
    """The cluster of a run in a cluster bootstrap: its question (a parent and its branches share it)."""
    return question_id(str(question))


def length_effects(runs: pd.DataFrame, clusters=None) -> pd.DataFrame:
    """Spearman correlations of trajectory length with the descent, with bootstrap intervals
    (``clusters`` [R]: whole clusters resampled)."""
    pairs = (("n_tokens", "drop"), ("n_tokens", "final_loss"), ("n_steps", "drop"), ("n_reflections", "drop"))
    values = runs.assign(drop=runs["initial_loss"] - runs["final_loss"])
    rows = []
    for x, y in pairs:
        iv = paired_statistic_interval(
            values[x].to_numpy(float), values[y].to_numpy(float), spearman, clusters=clusters
        )
        rows.append({"x": x, "y": y, "spearman": iv.estimate, "low": iv.low, "high": iv.high, "n": iv.n})
    return pd.DataFrame(rows, columns=["x", "y", "spearman", "low", "high", "n"])


def _is_branch(parent) -> bool:
    return isinstance(parent, str) and bool(parent)


# ---------------------------------------------------------------------------- cached entry point
def _set_params(settings: ClaimsSettings, run_ids: list[tuple[str, float | None]]) -> dict:
    """The report's derived-data parameters: the settings and the set of runs (key, created)."""
    return {"settings": settings.params(), "runs": sorted([k, c] for k, c in run_ids)}


_FRAMES = ("runs", "descent", "descent_summary", "length", "reflection_words", "reflection_events", "inner_loop")


def _save_report(store: RunStore, params: dict, report: ClaimsReport) -> None:
    arrays = {f"frame.{n}": np.array(getattr(report, n).to_json(orient="split")) for n in _FRAMES}
    arrays |= {f"vec.{k}": v for k, v in report.vectors.items()}
    arrays |= {"grid": report.grid, "curves": report.curves, "skipped": np.array(json.dumps(report.skipped))}
    derived.save_derived(store, None, schema.CLAIMS_REPORT, params, arrays)  # a failed write only warns


def _load_report(store: RunStore, params: dict, settings: ClaimsSettings) -> ClaimsReport | None:
    arrays = derived.load_derived(store, None, schema.CLAIMS_REPORT, params)
    if arrays is None:
        return None
    try:
        frames = {n: pd.read_json(StringIO(str(arrays[f"frame.{n}"])), orient="split") for n in _FRAMES}
    except (KeyError, ValueError):
        return None
    runs = frames["runs"]
    runs["correct"] = pd.Series([None if v is None or v != v else bool(v) for v in runs["correct"]], dtype=object)
    runs["label"] = runs["label"].fillna("").astype(str)
    vectors = {k[len("vec.") :]: v for k, v in arrays.items() if k.startswith("vec.")}
    return ClaimsReport(
        settings,
        runs,
        arrays["grid"],
        arrays["curves"],
        frames["descent"],
        frames["descent_summary"],
        frames["length"],
        frames["reflection_words"],
        frames["reflection_events"],
        frames["inner_loop"],
        vectors,
        json.loads(str(arrays["skipped"])),
        from_cache=True,
    )


def dataset_claims(
    store: RunStore, keys: list[str] | None = None, settings: ClaimsSettings | None = None, *, use_cache: bool = True
) -> ClaimsReport:
    """The report over ``keys`` (default: every run); damaged runs are skipped and listed."""
    settings = (settings or ClaimsSettings()).validate()
    index = store.list_runs()
    created_of = dict(zip(index["key"], index["created"]))
    keys = list(dict.fromkeys(check_key(k) for k in (index["key"] if keys is None else keys)))
    if not settings.include_branches:
        parent_of = dict(zip(index["key"], index["parent"])) if "parent" in index else {}
        keys = [k for k in keys if not _is_branch(parent_of.get(k))]
    params = _set_params(settings, [(k, created_of.get(k)) for k in keys])
    if use_cache and (hit := _load_report(store, params, settings)) is not None:
        return hit
    digests, skipped = [], []
    for key in keys:
        try:
            run = store.open(key)
            digests.append(_cached_digest(store, run, settings) if use_cache else run_digest(run, settings))
        except CacheError as exc:
            skipped.append(str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            skipped.append(f"run {key}: unexpected content ({type(exc).__name__}: {exc})")
    report = combine(digests, settings, skipped)
    if use_cache:
        _save_report(store, params, report)
    return report
