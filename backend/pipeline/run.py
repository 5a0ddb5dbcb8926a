"""A run end to end: resolve the model, find the run in the cache or generate/import the
trajectory, segment it, run the probe engine once, and store everything.

``run_question`` is what the CLI, the batch engines and the app's "new run" form call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from backend.analysis.answers.extract import extract_final_answer
from backend.analysis.answers.grading import grade_answer
from backend.engine import probe, provider
from backend.engine.architecture import default_proxy_layers, locate
from backend.engine.models import LoadedModel, resolve
from backend.engine.openai_generator import generate_openai
from backend.engine.specs import parse_cuts
from backend.engine.threads import compute_settings
from backend.engine.trajectory import (
    SEGMENTER_VERSION,
    build_prompt,
    encode,
    encode_with_offsets,
    first_answer_cut,
    generate,
    reflection_marks,
    segment,
    split_thinking,
)
from backend.errors import ContextTooLongError, InputError
from backend.pipeline import cut_policy
from backend.pipeline.request import RunRequest, check_before_load
from backend.store import hashing, schema
from backend.store.runs import RunStore, content_key
from backend.store.schema import Meta, ModelMeta, SummaryMeta

log = logging.getLogger(__name__)

ANALYSIS_VERSION = 1
# stage name, done, total — e.g. ("analyze", 120, 301)
StageProgress = Callable[[str, int, int], None]


@dataclass
class RunOutcome:
    key: str
    cached: bool
    seconds: float
    warnings: list[str] = field(default_factory=list)


def resolve_auto_cuts(req: RunRequest, tok, thinking: str, answer: str) -> RunRequest:
    """``req`` with ``cuts: auto`` decided by ``cut_policy.choose_cuts`` on the trajectory's real
    tokens and boundaries, at the rate ``req.cut_policy`` carries (``s_per_token``, ``d_model``:
    the batch kind puts this machine's there) or the first guess."""
    from dataclasses import replace

    _, offsets = encode_with_offsets(tok, thinking)
    n = len(offsets)
    boundaries = [0] + [s.end for s in segment(thinking, offsets, req.segmentation)]
    m = len(encode(tok, req.template)) + len(encode(tok, answer))
    hint = dict(req.cut_policy or {})
    rate = float(hint.get("s_per_token") or cut_policy.DEFAULT_S_PER_TOKEN)
    fixed_s, per_cut_s = cut_policy.scoring_costs(n, m, rate, hint.get("d_model"))
    policy = cut_policy.choose_cuts(
        cut_policy.AUTO, n, boundaries, fixed_s=fixed_s, per_cut_s=per_cut_s, budget_s=req.cut_budget_s
    )
    basis = "measured" if hint.get("s_per_token") else "first guess"
    return replace(req, cuts=policy.chosen, cut_policy=policy.to_json() | {"basis": basis, "n_tokens": n})


def estimate_probe_tokens(n_tokens: int, cuts: str, n_probe: int, n_steps: int = 0) -> int:
    """Tokens of forward compute a run will cost (n + S*m), to tell a user before starting."""
    chosen = parse_cuts(cuts, n_tokens, list(range(n_steps + 1)))
    n_cuts = n_tokens + 1 if chosen is None else len(chosen)
    return n_tokens + n_cuts * n_probe


def request_key(req: RunRequest, fingerprint: str) -> str:
    """Key of a request, known before the model is loaded or the trajectory generated."""
    source = {"trajectory": req.trajectory} if req.trajectory is not None else {"generation": asdict(req.generation)}
    if req.trajectory is None and req.generator != "local":  # keys of local requests stay as pinned
        source["generator"] = {"kind": req.generator, "base_url": req.base_url, "model": req.generator_model}
    if req.device or req.dtype:
        source["placement"] = {"device": req.device, "dtype": req.dtype}
    payload = _settings(req) | source | {"model": fingerprint, "question": req.question.strip(), "answer": req.answer}
    return content_key(payload)


def _settings(req: RunRequest) -> dict:
    branch = {"branch": req.branch} if req.branch else {}  # absent for ordinary runs: their keys stay as pinned
    return branch | {
        "template": req.template,
        "segmentation": req.segmentation,
        "cuts": req.cuts,
        "proxy_layers": req.proxy_layers,
        "truncate": req.truncate,
        "analysis_version": ANALYSIS_VERSION,
    }


def _run_key(req: RunRequest, fingerprint: str, chat_template: str, trajectory: str, answer: str | None) -> str:
    payload = _settings(req) | {
        "model": fingerprint,
        "prompt_format": hashing.text_sha256(chat_template or "")[:16],
        "question": req.question.strip(),
        "answer": answer,
        "trajectory": trajectory,
    }
    return content_key(payload)


def run_question(
    req: RunRequest,
    store: RunStore,
    *,
    loaded: LoadedModel | None = None,
    progress: StageProgress | None = None,
    force: bool = False,
) -> RunOutcome:
    """Analyze one question; returns the run key (from the cache when possible)."""
    t_start = time.perf_counter()
    req.validate()
    report = progress or (lambda stage, done, total: None)
    loaded = loaded or provider.registered(req.model)  # an in-memory model wins (backend.engine.provider)
    fingerprint = loaded.fingerprint if loaded else resolve(req.model).fingerprint()

    req_key = request_key(req, fingerprint)
    hit = None if force else store.run_for_request(req_key)
    if hit:
        return RunOutcome(hit, True, time.perf_counter() - t_start)

    check_before_load(req, loaded)
    generator_meta, remote = None, None
    if req.trajectory is None and req.generator == "openai":  # before the weights: a server's failure costs no load
        report("generate", 0, req.generation.max_new_tokens)
        remote = generate_openai(
            str(req.base_url),
            str(req.generator_model),
            req.question,
            req.generation,
            timeout_s=req.generator_deadline_s,
            max_response_mb=req.generator_max_mb,
        )
        report("generate", req.generation.max_new_tokens, req.generation.max_new_tokens)
        generator_meta = {"kind": "openai", "base_url": req.base_url, "model": req.generator_model}
    report("load", 0, 1)
    loaded = provider.provide(
        req.model, loaded=loaded, trust_remote_code=req.trust_remote_code, device=req.device, dtype=req.dtype
    )
    report("load", 1, 1)
    tok = loaded.tokenizer

    if remote is not None:
        response, source = remote, "generated"
    elif req.trajectory is None:
        report("generate", 0, req.generation.max_new_tokens)
        response = generate(loaded, build_prompt(tok, req.question, think=False), req.generation)
        report("generate", req.generation.max_new_tokens, req.generation.max_new_tokens)
        source = "generated"
    else:
        response, source = req.trajectory, "imported"
    thinking, after_thinking, think_format = split_thinking(response)
    if not thinking.strip():
        detail = " (the model produced only whitespace or special tokens)" if source == "generated" else ""
        raise InputError(f"the trajectory has no thinking text to analyze{detail}")

    answer, answer_source = req.answer, "reference"
    predicted = extract_final_answer(after_thinking if after_thinking.strip() else thinking)
    if answer is None:
        if not predicted:
            raise InputError("no reference answer given and none could be extracted from the trajectory")
        answer, answer_source = predicted, "self"
    answer = answer.strip()

    if req.cuts == cut_policy.AUTO:  # a batch's or an API caller's: decided now, on the real token counts
        req = resolve_auto_cuts(req, tok, thinking, answer)
    key = _run_key(req, fingerprint, getattr(tok, "chat_template", "") or "", thinking, answer)
    with store.lock(key):
        if store.has(key) and not force:
            store.remember_request(req_key, key)
            return RunOutcome(key, True, time.perf_counter() - t_start)
        warnings: list[str] = []
        built = _build_probe_request(req, loaded, thinking, answer, think_format, warnings)
        report("analyze", 0, len(built["request"].all_cuts))
        result = probe.analyze(loaded.model, built["request"], progress=lambda d, t: report("analyze", d, t))
        report("write", 0, 1)
        meta_extra = {
            Meta.RESPONSE: response,
            Meta.TRAJECTORY_SOURCE: source,
            Meta.GENERATOR: generator_meta or {"kind": "local" if source == "generated" else "imported"},
            Meta.THINK_FORMAT: think_format,
            Meta.PREDICTED_ANSWER: predicted,
            **_grading(predicted, answer, answer_source),
            Meta.WARNINGS: warnings,
            Meta.ORIGIN: req.origin,
            Meta.CUT_POLICY: req.cut_policy,
            Meta.CREATED: time.time(),
        }
        if req.branch:
            meta_extra |= {
                Meta.PARENT: req.branch["parent"],
                Meta.BRANCH_AT: int(req.branch["branch_at"]),
                Meta.BRANCH: req.branch,
            }
            if req.branch.get("generation"):  # generated here from the parent's prefix: say so at the top level
                meta_extra |= {Meta.TRAJECTORY_SOURCE: "generated", Meta.GENERATOR: {"kind": "local", "branch": True}}
        tables = _tables(req, loaded, built, result, answer, answer_source, meta_extra)
        store.write(key, *tables)
        store.remember_request(req_key, key)
        report("write", 1, 1)
    for w in warnings:
        log.warning(w)
    return RunOutcome(key, False, time.perf_counter() - t_start, warnings)


def _grading(predicted: str | None, answer: str, answer_source: str) -> dict:
    """``correct`` and the grader that decided it (none for the model's own answer)."""
    if answer_source == "self":
        return {Meta.CORRECT: None, Meta.GRADER: "none"}
    grade = grade_answer(predicted, answer)
    return {Meta.CORRECT: grade.correct, Meta.GRADER: grade.grader}


def _build_probe_request(
    req: RunRequest, loaded: LoadedModel, thinking: str, answer: str, think_format: bool, warnings: list[str]
) -> dict:
    tok = loaded.tokenizer
    prompt = build_prompt(tok, req.question, think=think_format)
    prompt_ids = encode(tok, prompt)
    traj_ids, offsets = encode_with_offsets(tok, thinking)
    template_ids, answer_ids = encode(tok, req.template), encode(tok, answer)
    if not template_ids:
        raise InputError("the template tokenizes to nothing")
    if not answer_ids:
        raise InputError(f"answer {answer!r} tokenizes to nothing")
    if len(answer_ids) > req.max_answer_tokens:  # a self-extracted answer, known only now
        raise InputError(
            f"answer has {len(answer_ids)} tokens, over the limit of {req.max_answer_tokens} "
            "(--max-answer-tokens to raise it; the readout's memory grows with it)"
        )
    budget = loaded.max_context - len(prompt_ids) - len(template_ids) - len(answer_ids)
    truncated = 0
    if len(traj_ids) > budget:
        if not req.truncate or budget < 1:
            raise ContextTooLongError(
                f"trajectory has {len(traj_ids)} tokens but only {max(budget, 0)} fit in the model's context of "
                f"{loaded.max_context} (with prompt, template and answer); use --truncate to keep its last part"
            )
        n_original = len(traj_ids)
        while len(traj_ids) > budget:  # re-encode the kept text so offsets stay consistent
            thinking = thinking[offsets[len(traj_ids) - budget][0] :]
            traj_ids, offsets = encode_with_offsets(tok, thinking)
        truncated = n_original - len(traj_ids)
        warnings.append(f"trajectory truncated: dropped its first {truncated} tokens to fit the context")
    steps = segment(thinking, offsets, req.segmentation)
    boundaries = [0] + [s.end for s in steps]
    n_layers = locate(loaded.model).n_layers
    proxy_layers = req.proxy_layers if req.proxy_layers is not None else default_proxy_layers(n_layers)
    if any(not 0 <= i < n_layers for i in proxy_layers):
        raise InputError(f"proxy layers {proxy_layers} outside 0..{n_layers - 1}")
    request = probe.ProbeRequest(
        prompt_ids=prompt_ids,
        trajectory_ids=traj_ids,
        template_ids=template_ids,
        answer_ids=answer_ids,
        cuts=parse_cuts(req.cuts, len(traj_ids), boundaries),
        boundary_cuts=boundaries,
        proxy_layers=sorted(set(proxy_layers)),
    )
    return {
        "request": request,
        "prompt": prompt,
        "thinking": thinking,
        "offsets": offsets,
        "steps": steps,
        "truncated": truncated,
        "marks": reflection_marks(thinking, offsets),
        "answer_seen_cut": first_answer_cut(thinking, offsets, answer),
    }


def _token_strings(tok, ids) -> dict[int, str]:
    return {int(i): tok.decode([int(i)]) for i in set(np.asarray(ids).ravel().tolist())}


def _tables(req, loaded, built, result: probe.ProbeResult, answer, answer_source, meta_extra):
    """Turn a ProbeResult into (meta, tokens, steps, lens, tensors) for the cache."""
    thinking, offsets, steps = built["thinking"], built["offsets"], built["steps"]
    n = len(offsets)
    cuts = result.cuts
    step_of_token = np.zeros(n, dtype=np.int64)
    for s in steps:
        step_of_token[s.start : s.end] = s.index
    reflection_at = {}
    for mark in built["marks"]:
        reflection_at.setdefault(mark.cut_after, mark.word)
    seen = built["answer_seen_cut"]
    tokens = pd.DataFrame(
        {
            "cut": cuts,
            "progress": cuts / max(n, 1),
            "loss": result.answer_nll,
            "p_answer": result.p_first,
            "rank": result.rank_first,
            "entropy": result.entropy,
            "token": ["" if c == 0 else thinking[offsets[c - 1][0] : offsets[c - 1][1]] for c in cuts],
            "step": [-1 if c == 0 else int(step_of_token[c - 1]) for c in cuts],
            "after_answer_seen": [seen is not None and c > seen for c in cuts],
            "reflection": [reflection_at.get(int(c), "") for c in cuts],
        }
    )
    loss_at = dict(zip(result.cuts.tolist(), result.answer_nll.tolist()))
    row_at = {c: i for i, c in enumerate(result.cuts.tolist())}
    steps_df = pd.DataFrame(
        {
            "index": [s.index for s in steps],
            "start": [s.start for s in steps],
            "end": [s.end for s in steps],
            "text": [s.text for s in steps],
            "loss": [loss_at[s.end] for s in steps],
            "loss_before": [loss_at[s.start] for s in steps],
            "p_answer": [float(result.p_first[row_at[s.end]]) for s in steps],
            "rank": [int(result.rank_first[row_at[s.end]]) for s in steps],
            "entropy": [float(result.entropy[row_at[s.end]]) for s in steps],
            "reflection": [bool(s.reflection_words) for s in steps],
            "reflection_words": [", ".join(s.reflection_words) for s in steps],
        }
    )
    steps_df["delta_loss"] = steps_df["loss"] - steps_df["loss_before"]
    B, L, k = result.lens_top_ids.shape
    names = _token_strings(loaded.tokenizer, result.lens_top_ids)
    lens = pd.DataFrame(
        {
            "boundary": np.repeat(np.arange(B), L),
            "cut": np.repeat(result.boundary_cuts, L),
            "layer": np.tile(np.arange(L), B),
            "nll": result.lens_nll.reshape(-1),
            "p_answer": result.lens_p_first.reshape(-1),
            "top_tokens": [[names[int(i)] for i in row] for row in result.lens_top_ids.reshape(-1, k)],
            "top_probs": [row.tolist() for row in result.lens_top_probs.reshape(-1, k)],
        }
    )
    tensors = {
        schema.tensor_name(schema.HIDDEN): result.hidden.astype(np.float16),
        schema.tensor_name(schema.BOUNDARY_CUTS): result.boundary_cuts,
    }
    for layer in result.proxy_input:
        # float32 on purpose: the exactness identity of the proxy space is checked to 1e-4
        tensors[schema.tensor_name(schema.PROXY_INPUT, layer)] = result.proxy_input[layer]
        tensors[schema.tensor_name(schema.PROXY_PREACT, layer)] = result.proxy_preact[layer]
    model = loaded.model
    cfg = model.config
    meta = {
        Meta.QUESTION: req.question.strip(),
        Meta.ANSWER: answer,
        Meta.ANSWER_SOURCE: answer_source,
        Meta.LABEL: req.label,
        Meta.MODEL: {
            ModelMeta.NAME: loaded.name,
            ModelMeta.FINGERPRINT: loaded.fingerprint,
            ModelMeta.CLASS: type(model).__name__,
            ModelMeta.N_LAYERS: L,
            ModelMeta.D_MODEL: int(result.hidden.shape[-1]),
            ModelMeta.VOCAB_SIZE: int(cfg.vocab_size),
            ModelMeta.DTYPE: str(loaded.dtype).replace("torch.", ""),
            ModelMeta.DEVICE: str(loaded.device),
        },
        Meta.PROMPT: built["prompt"],
        Meta.TRAJECTORY: thinking,
        Meta.TEMPLATE: req.template,
        Meta.SEGMENTATION: req.segmentation,
        Meta.SEGMENTER_VERSION: SEGMENTER_VERSION,
        Meta.CUTS: req.cuts,
        Meta.GENERATION: asdict(req.generation),
        Meta.PROXY_LAYERS: sorted(result.proxy_input),
        Meta.ANSWER_IDS: built["request"].answer_ids,
        Meta.FIRST_ANSWER_CUT: seen,
        Meta.TRUNCATED_TOKENS: built["truncated"],
        Meta.REFLECTIONS: [asdict(m) for m in built["marks"]],
        Meta.TIMINGS: {k: round(float(v), 4) for k, v in result.timings.items()},
        Meta.COMPUTE: compute_settings(),
        Meta.SUMMARY: {
            SummaryMeta.N_TOKENS: n,
            SummaryMeta.N_STEPS: len(steps),
            SummaryMeta.N_CUTS: int(len(cuts)),
            SummaryMeta.INITIAL_LOSS: float(result.answer_nll[0]),
            SummaryMeta.FINAL_LOSS: float(result.answer_nll[-1]),
        },
        Meta.ANALYSIS_VERSION: ANALYSIS_VERSION,
    } | meta_extra
    return meta, tokens, steps_df, lens, tensors
