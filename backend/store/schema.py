"""The run schema's one owner (docs/architecture.md §5): every file name, parquet column, meta
field and tensor name of a cached run, and the one function that names stored tensors.

Nothing outside ``backend.store`` spells these strings: writers build a run through the
constants here, readers go through ``RunData``'s typed accessors. ``tests/unit/test_schema_names.py``
pins every name: changing one orphans existing caches, so it must be deliberate (raise
``SCHEMA_VERSION`` and say why).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

SCHEMA_VERSION: Final = 1
KEY_PATTERN: Final = re.compile(r"^[0-9a-f]{16,64}\Z")  # a run key; \Z, not $: "$" also matches before a final newline

# ---------------------------------------------------------------------------- cache layout
RUNS_DIR: Final = "runs"  # <root>/runs/<key>/
TMP_DIR: Final = "tmp"  # half-written runs and trash, renamed into runs/ when complete
LOCKS_DIR: Final = "locks"  # <root>/locks/<key>.lock, one per run (removed with the run)
INDEX_FILE: Final = "index.sqlite"
DERIVED_DIR: Final = "derived"  # <run dir>/derived/ (or <root>/derived/ for a read-only run dir)
AGGREGATES_DIR: Final = "aggregates"  # <root>/aggregates/ (derived data of a set of runs)
EXPORTS_DIR: Final = "exports"  # <run dir>/derived/exports/ (figure and table files of a run)
LOCK_SUFFIX: Final = ".lock"
LENSES_DIR: Final = "lenses"  # <root>/lenses/<model fingerprint>/tuned/ (backend.store.lenses)
TUNED_LENS_DIR: Final = "tuned"
LENS_PARAMS_FILE: Final = "params.safetensors"  # translators "{i}.weight" [d, d], "{i}.bias" [d] float32
LENS_CONFIG_FILE: Final = "config.json"  # tuned-lens' TunedLensConfig fields + model_fingerprint, params_sha256


# ---------------------------------------------------------------------------- derived data
@dataclass(frozen=True)
class DerivedKind:
    """One kind of derived data (docs/architecture.md §5): cached as ``<name>-<key><suffix>`` in
    the run's ``derived/`` folder (``scope="run"``) or the cache's ``aggregates/`` (``"store"``),
    where key = ``content_hash`` of kind, version, run and parameters
    (``backend.store.derived.derived_key``). Raising ``version`` orphans the cached files of
    that kind: they are recomputed on request."""

    name: str
    version: int
    suffix: str  # ".npz" (arrays, no pickles) or ".json" (one object)
    scope: str = "run"

    def file_name(self, key: str) -> str:
        return f"{self.name}-{key}{self.suffix}"


PROJECTION: Final = DerivedKind("projection", 1, ".npz")  # 2-D basis and coordinates of one or more paths
SURFACE: Final = DerivedKind("surface", 1, ".npz")  # loss on the single-layer proxy plane
LANDSCAPE: Final = DerivedKind("landscape", 1, ".npz")  # loss along two random directions
EXACT: Final = DerivedKind("exact", 1, ".npz")  # exact-update factors, Gram, losses, fidelity
EXACT_SURFACE: Final = DerivedKind("exact-surface", 1, ".npz")  # loss on the exact-update plane
IMPORTANCE: Final = DerivedKind("importance", 2, ".json")  # step ablation and attention (v2: named by key)
# v2 (issue 25): summaries follow the after-answer switch; runs carry their parent
CLAIMS_DIGEST: Final = DerivedKind("claims", 2, ".npz")  # one run's part of the dataset claims
CLAIMS_REPORT: Final = DerivedKind("claims-report", 2, ".npz", scope="store")  # the claims of a set of runs
LENS_TUNED: Final = DerivedKind("lens-tuned", 1, ".json")  # the lens grid read through the model's tuned lens
DERIVED_KINDS: Final = (
    PROJECTION,
    SURFACE,
    LANDSCAPE,
    EXACT,
    EXACT_SURFACE,
    IMPORTANCE,
    CLAIMS_DIGEST,
    CLAIMS_REPORT,
    LENS_TUNED,
)

# ---------------------------------------------------------------------------- run files
META_FILE: Final = "meta.json"
TOKENS_FILE: Final = "tokens.parquet"
STEPS_FILE: Final = "steps.parquet"
LENS_FILE: Final = "lens.parquet"
TENSORS_FILE: Final = "tensors.safetensors"
RUN_FILES: Final = (TOKENS_FILE, STEPS_FILE, LENS_FILE, TENSORS_FILE)  # checksummed in meta.json
FILE_MODE: Final = 0o644  # run files are readable by the other users of a shared cache
DIR_MODE: Final = 0o755

# ---------------------------------------------------------------------------- parquet columns
TOKEN_COLUMNS: Final = (  # tokens.parquet: one row per scored cut point c, [C]
    "cut",
    "progress",
    "loss",
    "p_answer",
    "rank",
    "entropy",
    "token",
    "step",
    "after_answer_seen",
    "reflection",
)
STEP_COLUMNS: Final = (  # steps.parquet: one row per step, [K - 1]
    "index",
    "start",
    "end",
    "text",
    "loss",
    "loss_before",
    "p_answer",
    "rank",
    "entropy",
    "reflection",
    "reflection_words",
    "delta_loss",
)
LENS_COLUMNS: Final = ("boundary", "cut", "layer", "nll", "p_answer", "top_tokens", "top_probs")  # [K * L]


# ---------------------------------------------------------------------------- meta.json fields
class Meta:
    """Top-level fields of ``meta.json`` (``Meta.MODEL`` is an object with ``ModelMeta`` fields,
    ``Meta.SUMMARY`` one with ``SummaryMeta`` fields)."""

    KEY: Final = "key"
    SCHEMA_VERSION: Final = "schema_version"
    CREATED: Final = "created"
    CHECKSUMS: Final = "checksums"
    SIZES: Final = "sizes"
    QUESTION: Final = "question"
    ANSWER: Final = "answer"
    ANSWER_SOURCE: Final = "answer_source"
    LABEL: Final = "label"
    MODEL: Final = "model"
    PROMPT: Final = "prompt"
    TRAJECTORY: Final = "trajectory"
    TEMPLATE: Final = "template"
    SEGMENTATION: Final = "segmentation"
    CUTS: Final = "cuts"
    GENERATION: Final = "generation"
    PROXY_LAYERS: Final = "proxy_layers"
    ANSWER_IDS: Final = "answer_ids"
    FIRST_ANSWER_CUT: Final = "first_answer_cut"
    TRUNCATED_TOKENS: Final = "truncated_tokens"
    REFLECTIONS: Final = "reflections"
    TIMINGS: Final = "timings"
    SUMMARY: Final = "summary"
    ANALYSIS_VERSION: Final = "analysis_version"
    RESPONSE: Final = "response"
    TRAJECTORY_SOURCE: Final = "trajectory_source"
    THINK_FORMAT: Final = "think_format"
    PREDICTED_ANSWER: Final = "predicted_answer"
    CORRECT: Final = "correct"
    GRADER: Final = "grader"  # which grader decided ``correct`` (backend.analysis.answers.grading)
    SEGMENTER_VERSION: Final = "segmenter_version"
    GENERATOR: Final = "generator"  # {"kind": local|imported|openai, ...}
    PARENT: Final = "parent"  # a branch: the run it branched from (backend.pipeline.branches)
    BRANCH_AT: Final = "branch_at"  # a branch: the step boundary it branched at
    BRANCH: Final = "branch"  # a branch: how it was made (resample / edit, settings)
    WARNINGS: Final = "warnings"
    COMPUTE: Final = "compute"  # how the run shared the cores: torch threads, OpenMP wait policy (docs/threads.md)
    ORIGIN: Final = "origin"  # an imported record: what its file says beyond the trace (eval log ids, scores)
    CUT_POLICY: Final = "cut_policy"  # how the cuts were chosen: requested, chosen, stride, budget, estimate


class ModelMeta:
    NAME: Final = "name"
    FINGERPRINT: Final = "fingerprint"
    CLASS: Final = "class"
    N_LAYERS: Final = "n_layers"
    D_MODEL: Final = "d_model"
    VOCAB_SIZE: Final = "vocab_size"
    DTYPE: Final = "dtype"
    DEVICE: Final = "device"


class SummaryMeta:
    N_TOKENS: Final = "n_tokens"
    N_STEPS: Final = "n_steps"
    N_CUTS: Final = "n_cuts"
    INITIAL_LOSS: Final = "initial_loss"
    FINAL_LOSS: Final = "final_loss"


BRANCH_FIELDS: Final = (Meta.PARENT, Meta.BRANCH_AT, Meta.BRANCH)  # only in the meta of a branch


def all_meta_fields() -> dict[str, tuple[str, ...]]:
    """Every meta.json field name, by object (for the pin test and documentation)."""
    return {
        group.__name__: tuple(v for k, v in vars(group).items() if k.isupper())
        for group in (Meta, ModelMeta, SummaryMeta)
    }


# meta.json fields the library and the CLI read without checking; an entry lacking one is damaged
REQUIRED_META: Final = {
    Meta.QUESTION: str,
    Meta.ANSWER: str,
    Meta.ANSWER_SOURCE: str,
    Meta.MODEL: dict,
    Meta.SUMMARY: dict,
}

# ---------------------------------------------------------------------------- index columns
INDEX_COLUMNS: Final = (  # index.sqlite table ``runs``
    "key",
    "question",
    "model",
    "answer",
    "answer_source",
    "correct",
    "n_tokens",
    "n_steps",
    "final_loss",
    "initial_loss",
    "created",
    "label",
    "predicted_answer",
    "grader",
    "parent",  # branches: the run this one branched from, and the step it branched at
    "branch_at",
)
STATUS_COLUMNS: Final = ("status", "cause")  # added by ``RunStore.list_runs`` (not stored)
STATUS_OK: Final = "ok"
STATUS_DAMAGED: Final = "damaged"

# ---------------------------------------------------------------------------- tensors
HIDDEN: Final = "hidden"  # [K, L, d] fp16: residual stream at the probe position per boundary and layer
BOUNDARY_CUTS: Final = "boundary_cuts"  # [K] int: cut point of each boundary
PROXY_INPUT: Final = "proxy_input"  # per proxy layer ℓ: [K, d] fp32, MLP input z_c
PROXY_PREACT: Final = "proxy_preact"  # per proxy layer ℓ: [K, F] fp32, MLP input projections W z_c
TENSOR_KINDS: Final = (HIDDEN, BOUNDARY_CUTS, PROXY_INPUT, PROXY_PREACT)
LAYERED_KINDS: Final = (PROXY_INPUT, PROXY_PREACT)  # stored once per layer, named ``<kind>.<layer>``

_TENSOR_NAME = re.compile(r"^([a-z_]+)(?:\.(\d+))?\Z")


def tensor_name(kind: str, layer: int | None = None) -> str:
    """The stored name of a tensor: ``hidden``, ``boundary_cuts``, ``proxy_input.<ℓ>``, ``proxy_preact.<ℓ>``."""
    if kind not in TENSOR_KINDS:
        raise ValueError(f"unknown tensor kind {kind!r} (known: {', '.join(TENSOR_KINDS)})")
    if kind in LAYERED_KINDS:
        if layer is None or isinstance(layer, bool) or int(layer) != layer or layer < 0:
            raise ValueError(f"tensor kind {kind!r} needs a layer index >= 0, got {layer!r}")
        return f"{kind}.{int(layer)}"
    if layer is not None:
        raise ValueError(f"tensor kind {kind!r} is not stored per layer")
    return kind


def parse_tensor_name(name: str) -> tuple[str, int | None]:
    """Inverse of ``tensor_name``: ``"proxy_preact.29"`` -> ``("proxy_preact", 29)``; ValueError otherwise."""
    match = _TENSOR_NAME.match(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"{name!r} is not a stored tensor name")
    kind, layer = match.group(1), match.group(2)
    parsed: tuple[str, int | None] = (kind, None if layer is None else int(layer))
    try:
        if tensor_name(*parsed) == name:  # refuses "hidden.3", "proxy_input", "proxy_input.03"
            return parsed
    except ValueError:
        pass
    raise ValueError(f"{name!r} is not a stored tensor name")


def layers_of(names, kind: str) -> list[int]:
    """Layers for which ``names`` holds a ``kind`` tensor, sorted (unknown names ignored)."""
    layers = []
    for name in names:
        try:
            k, layer = parse_tensor_name(name)
        except ValueError:
            continue
        if k == kind and layer is not None:
            layers.append(layer)
    return sorted(layers)
