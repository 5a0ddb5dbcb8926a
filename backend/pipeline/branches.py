"""Branches of a run (issue 13 item 2): resample from boundary k, or replace step k with
user text and keep the rest (teacher-forced) or regenerate it. A branch is an ordinary run
with ``parent`` and ``branch_at`` (the step index that was resampled or replaced) in its meta
and in the index, analysed and cached like any run.

The family tree (children, counterfactual importance, ``show --json`` fields, the check before
``rm``) is read by ``backend.pipeline.lineage``, which needs no model.

Long functions take ``progress(stage, done, total)`` like ``backend.pipeline.run.run_question``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict

from backend.engine import provider
from backend.engine.models import LoadedModel
from backend.engine.trajectory import GenerationSettings, generate
from backend.errors import ContextTooLongError, InputError
from backend.pipeline.lineage import OrphanError, confirm_orphaning, counterfactual, show_fields, tree
from backend.pipeline.request import check_before_load
from backend.pipeline.run import RunOutcome, RunRequest, estimate_probe_tokens, run_question
from backend.store.runs import RunData, RunStore

__all__ = [  # the family-tree readers live in lineage (torch-free); re-exported for old callers
    "MAX_NEW_TOKENS",
    "MAX_SAMPLES",
    "OrphanError",
    "check_edit",
    "confirm_orphaning",
    "counterfactual",
    "edit",
    "estimate",
    "prefix_text",
    "resample",
    "show_fields",
    "tree",
    "validate",
]

StageProgress = Callable[[str, int, int], None]
MAX_SAMPLES = 64
MAX_NEW_TOKENS = 8192
MAX_EDIT_CHARS = 1 << 20  # an edited step: a step, not a book (the CLI's --edit-file is capped by bytes first)


def _check_step(run: RunData, step: int) -> int:
    n_steps = len(run.steps)
    if not isinstance(step, int) or not 0 <= step < n_steps:
        raise InputError(f"--step {step} is outside run {run.key}'s steps 0..{n_steps - 1}")
    return step


def _check_sampling(samples: int, settings: GenerationSettings) -> None:
    if not 1 <= samples <= MAX_SAMPLES:
        raise InputError(f"--samples {samples} must lie in 1..{MAX_SAMPLES}")
    if not 1 <= settings.max_new_tokens <= MAX_NEW_TOKENS:
        raise InputError(f"--max-new-tokens {settings.max_new_tokens} must lie in 1..{MAX_NEW_TOKENS}")
    if not (math.isfinite(settings.temperature) and 0 <= settings.temperature <= 10):
        raise InputError(f"--temperature {settings.temperature} must lie in 0..10 (0 = greedy)")
    if not (math.isfinite(settings.top_p) and 0 < settings.top_p <= 1):
        raise InputError(f"--top-p {settings.top_p} must lie in (0, 1]")


def validate(run: RunData, step: int, samples: int, settings: GenerationSettings) -> None:
    """Every limit of a branch request, checked before any model work (one-line ``InputError``)."""
    _check_step(run, step)
    _check_sampling(samples, settings)
    if settings.greedy and samples > 1:
        raise InputError("--temperature 0 is greedy: every sample would be the same; use --temperature > 0")


def check_edit(run: RunData, step: int, text: str, regenerate: bool) -> None:
    """Every limit of an edit, before any weights load: the step exists, the text is not empty
    and not over ``MAX_EDIT_CHARS``, and (the rest kept) the edited trajectory fits the model's
    context, counted with its tokenizer only. One-line ``InputError``s."""
    _check_step(run, step)
    if not isinstance(text, str) or not text.strip():
        raise InputError("the edited step is empty (to drop a step, see `raml importance`)")
    if len(text) > MAX_EDIT_CHARS:
        raise InputError(f"the edited step has {len(text)} characters, over the limit of {MAX_EDIT_CHARS}")
    if regenerate:
        return  # the rest is generated: its length is --max-new-tokens, checked with the sampling
    rest = "".join(run.steps["text"].iloc[step + 1 :])
    request = _branch_request(run, prefix_text(run, step) + text + rest, {"kind": "edit"})
    try:
        check_before_load(request, provider.registered(run.model_name))  # tokenizer and config only
    except ContextTooLongError as exc:  # a branch has no --truncate: say what to do instead
        message = str(exc).replace("use --truncate to keep its last part", "shorten the edited step")
        raise ContextTooLongError(f"edited trajectory: {message}") from None


def prefix_text(run: RunData, step: int) -> str:
    """The trajectory text before step ``step`` (steps are contiguous slices of it)."""
    return "".join(run.steps["text"].iloc[:step])


def _model_for(run: RunData, loaded: LoadedModel | None) -> LoadedModel:
    """The run's own model (``backend.engine.provider``); other weights are refused in one line."""
    return provider.provide_for_run(run.model_name, run.model_fingerprint, run.key, loaded=loaded)


def _branch_request(run: RunData, trajectory: str, branch: dict) -> RunRequest:
    if run.think_format and "<think>" not in trajectory:
        trajectory = "<think>" + trajectory  # keep the parent's prompt format even without a closing tag
    return RunRequest(
        question=run.question,
        answer=run.answer if run.answer_source == "reference" else None,
        trajectory=trajectory,
        model=run.model_name,
        template=run.template,
        segmentation=run.segmentation,
        cuts=run.cuts,
        proxy_layers=list(run.proxy_layers) or None,
        label=run.label,
        branch=branch,
    )


def estimate(run: RunData, step: int, samples: int, max_new_tokens: int, regenerate: bool = True) -> dict:
    """What a branch will cost, told before starting: tokens generated and analysed, and seconds
    extrapolated from the parent's own analysis time per token."""
    _check_step(run, step)
    start = int(run.steps["start"].iloc[step])
    n_new = max_new_tokens if regenerate else int(run.n_tokens) - start
    probe_m = max(1, len(run.answer_ids or []) + 12)
    analysed = estimate_probe_tokens(start + n_new, run.cuts, probe_m, len(run.steps))
    parent_tokens = estimate_probe_tokens(int(run.n_tokens), run.cuts, probe_m, len(run.steps))
    timings = run.timings
    parent_s = float(timings.get("prefill_s", 0) + timings.get("probe_s", 0) + timings.get("readout_s", 0))
    per_token = parent_s / max(parent_tokens, 1)
    gen_s = 0.01 * n_new if regenerate else 0.0  # ~100 tokens/s on a CPU for SmolLM2-size models
    seconds = samples * (analysed * per_token + gen_s)
    return {
        "samples": samples,
        "generated_tokens": samples * (n_new if regenerate else 0),
        "analysed_tokens": samples * analysed,
        "seconds": round(seconds, 1),
    }


def resample(
    store: RunStore,
    key: str,
    step: int,
    samples: int,
    *,
    settings: GenerationSettings | None = None,
    loaded: LoadedModel | None = None,
    progress: StageProgress | None = None,
) -> list[RunOutcome]:
    """``samples`` continuations from the boundary before step ``step`` (seeds seed, seed+1, ...)."""
    settings = settings or GenerationSettings(temperature=0.7, top_p=0.95)
    report = progress or (lambda stage, done, total: None)
    run = store.open(key)
    validate(run, step, samples, settings)
    loaded = _model_for(run, loaded)
    prefix = prefix_text(run, step)
    outcomes = []
    for i in range(samples):
        sample = GenerationSettings(settings.max_new_tokens, settings.temperature, settings.top_p, settings.seed + i)
        report("generate", i, samples)
        continuation = generate(loaded, run.prompt, sample, prefix=prefix)
        branch = {"parent": key, "branch_at": step, "kind": "resample", "generation": asdict(sample)}
        outcomes.append(run_question(_branch_request(run, prefix + continuation, branch), store, loaded=loaded))
        report("generate", i + 1, samples)
    return outcomes


def edit(
    store: RunStore,
    key: str,
    step: int,
    text: str,
    *,
    regenerate: bool = False,
    settings: GenerationSettings | None = None,
    loaded: LoadedModel | None = None,
    progress: StageProgress | None = None,
) -> RunOutcome:
    """Replace step ``step`` with ``text``; keep the later steps (teacher-forced) or regenerate them."""
    settings = settings or GenerationSettings()
    report = progress or (lambda stage, done, total: None)
    run = store.open(key)
    check_edit(run, step, text, regenerate)
    _check_sampling(1, settings)
    loaded = _model_for(run, loaded)
    prefix = prefix_text(run, step) + text
    branch: dict = {"parent": key, "branch_at": step, "kind": "edit", "text": text, "regenerate": regenerate}
    if regenerate:
        report("generate", 0, 1)
        rest = generate(loaded, run.prompt, settings, prefix=prefix)
        branch["generation"] = asdict(settings)
        report("generate", 1, 1)
    else:
        rest = "".join(run.steps["text"].iloc[step + 1 :])
    return run_question(_branch_request(run, prefix + rest, branch), store, loaded=loaded)
