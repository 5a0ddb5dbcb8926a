"""Branches of a run (issue 13 item 2): resample step s, or replace step s with user text and
keep the rest (teacher-forced) or regenerate it. A branch is an ordinary run with ``parent`` and
``branch_at`` (the step s that was resampled or replaced) in its meta and in the index, analysed
and cached like any run.

Steps are numbered s = 1..S everywhere (docs/architecture.md §3): step s ends at boundary s, which
is what Explore's stepper shows as "Step s / S"; resampling step s keeps steps 1..s−1.

A resample continues until the model ends its reasoning and answer (its end token or a closed
final ``\boxed{}``: ``backend.engine.trajectory.generate_until_done``), bounded by the context
and the stated cap ``DEFAULTS.max_new_tokens``; a branch that hit the cap (or the context) is
flagged (``branch.finish``, ``truncated`` in the tree) and left out of counterfactual importance,
which says so (``excluded``). The page and the CLI take their defaults from ``DEFAULTS``.

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
from backend.engine.trajectory import GenerationSettings, generate_until_done
from backend.errors import ContextTooLongError, InputError
from backend.pipeline.branch_defaults import DEFAULTS
from backend.pipeline.lineage import OrphanError, confirm_orphaning, counterfactual, show_fields, tree, truncation
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
    "truncation",
    "validate",
]

StageProgress = Callable[[str, int, int], None]
MAX_SAMPLES = 64
MAX_NEW_TOKENS = 8192
MAX_EDIT_CHARS = 1 << 20  # an edited step: a step, not a book (the CLI's --edit-file is capped by bytes first)
STEP_BASE = 1  # steps are numbered from 1 (recorded in each new branch's meta; older branches counted from 0)
PROBE_RESERVE = 96  # context tokens kept free for the analysis probe (template + answer)


def _check_step(run: RunData, step: int) -> int:
    n_steps = len(run.steps)
    if not isinstance(step, int) or isinstance(step, bool) or not 1 <= step <= n_steps:
        raise InputError(f"--step {step} is outside run {run.key}'s steps 1..{n_steps}")
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


def check_edit(run: RunData, step: int, text: str, regenerate: bool, loaded: LoadedModel | None = None) -> None:
    """Every limit of an edit, before any weights load: the step exists, the text is not empty
    and not over ``MAX_EDIT_CHARS``, and (the rest kept) the edited trajectory fits the model's
    context, counted with its tokenizer only (``loaded``'s when given). One-line ``InputError``s."""
    _check_step(run, step)
    if not isinstance(text, str) or not text.strip():
        raise InputError("the edited step is empty (to drop a step, see `raml importance`)")
    if len(text) > MAX_EDIT_CHARS:
        raise InputError(f"the edited step has {len(text)} characters, over the limit of {MAX_EDIT_CHARS}")
    if regenerate:
        return  # the rest is generated: its length is --max-new-tokens, checked with the sampling
    rest = "".join(run.steps["text"].iloc[step:])
    request = _branch_request(run, prefix_text(run, step) + text + rest, {"kind": "edit"}, run.label)
    try:
        check_before_load(request, loaded)  # tokenizer and config only (else the registered model's, else disk)
    except ContextTooLongError as exc:  # a branch has no --truncate: say what to do instead
        message = str(exc).replace("use --truncate to keep its last part", "shorten the edited step")
        raise ContextTooLongError(f"edited trajectory: {message}") from None


def prefix_text(run: RunData, step: int) -> str:
    """The trajectory text before step ``step`` (1-based; steps are contiguous slices of it)."""
    return "".join(run.steps["text"].iloc[: step - 1])


def branch_label(
    run: RunData, store: RunStore, kind: str, step: int, temperature: float | None, offset: int = 0
) -> str:
    """ "<parent label> · branch k @ step s, resample, T=0.7": k counts the parent's branches."""
    k = len(store.children(run.key)) + 1 + offset
    parent = run.label or run.key[:8]
    setting = "" if temperature is None else f", T={temperature:g}"
    return f"{parent} · branch {k} @ step {step}, {kind}{setting}"


def _model_for(run: RunData, loaded: LoadedModel | None) -> LoadedModel:
    """The run's own model (``backend.engine.provider``); other weights are refused in one line."""
    return provider.provide_for_run(run.model_name, run.model_fingerprint, run.key, loaded=loaded)


def _branch_request(
    run: RunData, trajectory: str, branch: dict, label: str, generation: GenerationSettings | None = None
) -> RunRequest:
    if run.think_format and "<think>" not in trajectory:
        trajectory = "<think>" + trajectory  # keep the parent's prompt format even without a closing tag
    return RunRequest(
        generation=generation or GenerationSettings(),
        question=run.question,
        answer=run.answer if run.answer_source == "reference" else None,
        trajectory=trajectory,
        model=run.model_name,
        template=run.template,
        segmentation=run.segmentation,
        cuts=run.cuts,
        proxy_layers=list(run.proxy_layers) or None,
        label=label,
        branch=branch | {"step_base": STEP_BASE},
    )


def estimate(run: RunData, step: int, samples: int, max_new_tokens: int, regenerate: bool = True) -> dict:
    """What a branch will cost, told before starting: tokens generated and analysed, and seconds
    extrapolated from the parent's own analysis time per token."""
    _check_step(run, step)
    start = int(run.steps["start"].iloc[step - 1])
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
    """``samples`` continuations from the boundary before step ``step`` (seeds seed, seed+1, ...),
    each until the model ends its answer or the cap ``settings.max_new_tokens``."""
    settings = settings or GenerationSettings(DEFAULTS.max_new_tokens, DEFAULTS.temperature, DEFAULTS.top_p)
    report = progress or (lambda stage, done, total: None)
    run = store.open(key)
    validate(run, step, samples, settings)
    loaded = _model_for(run, loaded)
    prefix = prefix_text(run, step)
    outcomes = []
    for i in range(samples):
        sample = GenerationSettings(settings.max_new_tokens, settings.temperature, settings.top_p, settings.seed + i)
        report("generate", i, samples)
        done = generate_until_done(loaded, run.prompt, sample, prefix=prefix, reserve=PROBE_RESERVE)
        branch = {
            "parent": key,
            "branch_at": step,
            "kind": "resample",
            "generation": asdict(sample),
            "finish": done.finish,
            "generated_tokens": done.n_tokens,
        }
        label = branch_label(run, store, "resample", step, sample.temperature)
        req = _branch_request(run, prefix + done.text, branch, label, sample)
        outcomes.append(run_question(req, store, loaded=loaded, progress=progress))  # its analyze / write stages
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
    check_edit(run, step, text, regenerate, loaded)
    _check_sampling(1, settings)
    loaded = _model_for(run, loaded)
    prefix = prefix_text(run, step) + text
    branch: dict = {"parent": key, "branch_at": step, "kind": "edit", "text": text, "regenerate": regenerate}
    generation = None
    if regenerate:
        report("generate", 0, 1)
        done = generate_until_done(loaded, run.prompt, settings, prefix=prefix, reserve=PROBE_RESERVE)
        rest, generation = done.text, settings
        branch |= {"generation": asdict(settings), "finish": done.finish, "generated_tokens": done.n_tokens}
        report("generate", 1, 1)
    else:
        rest = "".join(run.steps["text"].iloc[step:])
    label = branch_label(run, store, "edit", step, settings.temperature if regenerate else None)
    return run_question(
        _branch_request(run, prefix + rest, branch, label, generation), store, loaded=loaded, progress=progress
    )
