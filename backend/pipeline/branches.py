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

Counterfactual importance follows Thought Anchors (Bogdan et al. 2025): the answers and L̂ of
the continuations resampled at step k against those where step k is kept (the branches
resampled at step k + 1, else the parent itself).

Long functions take ``progress(stage, done, total)`` like ``backend.pipeline.run.run_question``.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict

from backend.engine import provider
from backend.engine.models import LoadedModel
from backend.engine.trajectory import ENDED, GenerationSettings, generate_until_done
from backend.errors import InputError, RamlError
from backend.pipeline.branch_defaults import DEFAULTS
from backend.pipeline.run import RunOutcome, RunRequest, estimate_probe_tokens, run_question
from backend.store.runs import RunData, RunStore

StageProgress = Callable[[str, int, int], None]
MAX_SAMPLES = 64
MAX_NEW_TOKENS = 8192
STEP_BASE = 1  # steps are numbered from 1 (recorded in each new branch's meta; older branches counted from 0)
PROBE_RESERVE = 96  # context tokens kept free for the analysis probe (template + answer)


CAP_REASON = "hit the cap of {cap} new tokens before the model ended its answer"
CONTEXT_REASON = "filled the model's context before the model ended its answer"
LEGACY_REASON = "made before branches recorded why they stopped (maybe cut short)"


class OrphanError(InputError):
    """Deleting a run would orphan its branches and nobody confirmed it."""


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
        outcomes.append(run_question(req, store, loaded=loaded))
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
    _check_step(run, step)
    if not isinstance(text, str) or not text.strip():
        raise InputError("the edited step is empty (to drop a step, see `raml importance`)")
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
    return run_question(_branch_request(run, prefix + rest, branch, label, generation), store, loaded=loaded)


def _node(store: RunStore, key: str) -> dict:
    run = store.open(key, verify=False)
    branch = run.branch
    why = truncation(branch)
    return {
        "key": key,
        "label": run.label,
        "parent": run.parent,
        "branch_at": run.branch_at,
        "kind": branch.get("kind"),
        "generation": branch.get("generation"),
        "finish": branch.get("finish"),
        "truncated": why is not None,
        "truncated_reason": why,
        "predicted_answer": run.predicted_answer,
        "correct": run.correct,
        "final_loss": run.summary.final_loss,
        "n_tokens": run.summary.n_tokens,
    }


def tree(store: RunStore, key: str, max_depth: int = 8) -> list[dict]:
    """Every descendant of ``key`` (depth-first), each with its parent, step and outcome."""
    nodes, frontier = [], [(key, 0)]
    while frontier:
        current, depth = frontier.pop(0)
        for child in store.children(current):
            try:
                node = _node(store, child)
            except RamlError:
                continue  # a damaged or vanished child stays out of the tree
            nodes.append(node | {"depth": depth + 1})
            if depth + 1 < max_depth:
                frontier.append((child, depth + 1))
    return nodes


def truncation(branch: dict) -> str | None:
    """Why a generated branch may be cut short (one line), or None when the model ended it itself
    (or nothing was generated: a teacher-forced edit)."""
    if not branch or "generation" not in branch:
        return None
    finish = branch.get("finish")
    if finish is None:
        return LEGACY_REASON
    if finish in ENDED:
        return None
    if finish == "context":
        return CONTEXT_REASON
    return CAP_REASON.format(cap=(branch.get("generation") or {}).get("max_new_tokens", "?"))


def _kl(p: Counter, q: Counter) -> float:
    """KL(p || q) of two answer distributions with add-one (Laplace) smoothing over their union."""
    support = set(p) | set(q)
    total_p, total_q = sum(p.values()) + len(support), sum(q.values()) + len(support)
    return float(
        sum(((p[a] + 1) / total_p) * math.log(((p[a] + 1) / total_p) / ((q[a] + 1) / total_q)) for a in support)
    )


def counterfactual(store: RunStore, key: str) -> list[dict]:
    """Per step with resampled branches: Thought Anchors' counterfactual importance.

    ``resampled`` = direct resample branches at step k; ``kept`` = those at step k + 1 (step k
    kept, the rest resampled), else the parent alone. Reports the KL divergence of the answer
    distributions (kept ‖ resampled), the change in accuracy and in mean final L̂ (resampled −
    kept, nats: positive when losing step k hurts, like ablation importance).

    Branches that were cut short (``truncation``) are left out: their L̂ is that of an unfinished
    thought. Each row lists them under ``excluded`` (key and reason); a step whose resamples were
    all cut short has no values.
    """
    parent = _node(store, key)
    by_step: dict[int, list[dict]] = {}
    cut: dict[int, list[dict]] = {}
    for node in tree(store, key, max_depth=1):
        if node["kind"] == "resample":
            (cut if node["truncated"] else by_step).setdefault(int(node["branch_at"]), []).append(node)
    rows = []
    for step in sorted(set(by_step) | set(cut)):
        resampled = by_step.get(step, [])
        excluded = [{"key": n["key"], "reason": n["truncated_reason"]} for n in cut.get(step, [])]
        if not resampled:
            rows.append(
                {
                    "step": step,
                    "n_resampled": 0,
                    "n_kept": 0,
                    "kept_is_parent": step + 1 not in by_step,
                    "answer_kl": None,
                    "loss_delta": None,
                    "accuracy_delta": None,
                    "excluded": excluded,
                }
            )
            continue
        kept = by_step.get(step + 1) or [parent]

        def answers(nodes):
            return Counter(str(n["predicted_answer"] or "").strip() for n in nodes)

        def mean(nodes, field):
            values = [float(n[field]) for n in nodes if n[field] is not None]
            return sum(values) / len(values) if values else None

        loss_r, loss_k = mean(resampled, "final_loss"), mean(kept, "final_loss")
        acc_r, acc_k = mean(resampled, "correct"), mean(kept, "correct")
        rows.append(
            {
                "step": step,
                "n_resampled": len(resampled),
                "n_kept": len(kept),
                "kept_is_parent": step + 1 not in by_step,
                "answer_kl": round(_kl(answers(kept), answers(resampled)), 6),
                "loss_delta": None if loss_r is None or loss_k is None else round(loss_r - loss_k, 6),
                "accuracy_delta": None if acc_r is None or acc_k is None else round(acc_k - acc_r, 6),
                "excluded": excluded,
            }
        )
    return rows


def show_fields(store: RunStore, run: RunData) -> dict:
    """``show --json`` additions: stored importance (or null) and the branches of the run."""
    from backend.analysis.importance.run import load_importance

    return {
        "importance": load_importance(run, store),
        "branches": {
            "parent": run.parent,
            "branch_at": run.branch_at,
            "children": tree(store, run.key),
            "counterfactual": counterfactual(store, run.key),
        },
    }


def confirm_orphaning(store: RunStore, keys: list[str], yes: bool, ask=input) -> None:
    """Before ``rm``: runs with branches left behind need ``--yes`` or a 'y' at a terminal."""
    deleting = set(keys)
    orphans = {k: [c for c in store.children(k) if c not in deleting] for k in keys}
    orphans = {k: v for k, v in orphans.items() if v}
    if not orphans or yes:
        return
    total = sum(len(v) for v in orphans.values())
    what = f"{', '.join(orphans)} has {total} branch run(s) that would be orphaned"
    if not sys.stdin.isatty():
        raise OrphanError(f"{what}; pass --yes to delete anyway (no terminal to ask)")
    if ask(f"{what}. Delete anyway? [y/N] ").strip().lower() not in ("y", "yes"):
        raise OrphanError(f"not deleted: {what}")
