"""The family tree of runs (branches are runs, docs/architecture.md §5): children, counterfactual
importance from resampled branches, the ``show --json`` fields and the check before ``rm``.
Reads the store only (no torch): ``show`` and ``rm`` stay light; making branches is
``backend.pipeline.branches``.

Counterfactual importance follows Thought Anchors (Bogdan et al. 2025): the answers and L̂ of
the continuations resampled at step k against those where step k is kept (the branches
resampled at step k + 1, else the parent itself).
"""

from __future__ import annotations

import math
import sys
from collections import Counter

from backend.engine.trajectory import ENDED  # a light module: no torch at import
from backend.errors import InputError, RamlError
from backend.store.runs import RunData, RunStore

CAP_REASON = "hit the cap of {cap} new tokens before the model ended its answer"
CONTEXT_REASON = "filled the model's context before the model ended its answer"
LEGACY_REASON = "made before branches recorded why they stopped (maybe cut short)"


class OrphanError(InputError):
    """Deleting a run would orphan its branches and nobody confirmed it."""


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
    by_step: dict[int, list[dict]] = {}
    cut: dict[int, list[dict]] = {}
    for node in tree(store, key, max_depth=1):
        if node["kind"] == "resample":
            (cut if node["truncated"] else by_step).setdefault(int(node["branch_at"]), []).append(node)
    if not by_step and not cut:  # no resamples: the parent's tables are never read (Explore asks on every open)
        return []
    parent = _node(store, key)
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
    from backend.analysis.importance.stored import load_importance

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
