"""What the commands share: the cache, the run options, progress bars, and the job step.

Commands that do long work submit the same job kinds as the app (``backend.jobs``): by default
the command runs its job in this process and waits (the job's failure is raised again, so exit
codes stay those of the direct call); with ``--detach`` it only queues the job and prints its
id, for a server's worker or ``raml jobs worker`` to run.
"""

from __future__ import annotations

import argparse
import os
import sys

from backend.io.terminal import printable

PRESET_NAMES = (
    "openr1",
    "s1k",
    "limo",
    "gsm8k",
    "math500",
    "thought-anchors",
    "inspect",
    "lm-eval",
    "openai-chat",
)  # backend.io.fields.PRESETS


def store(args):
    from backend.store.runs import RunStore

    return RunStore(args.cache_dir)


def open_run(args, text: str | None = None):
    """The run named by ``text`` (default ``args.key``): a full key or a unique prefix of at least
    4 characters, as the UI shows them (``RunStore.resolve``); checked before anything is queued."""
    st = store(args)
    return st.open(st.resolve(args.key if text is None else text))


def add_key_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("key", help="run key, or a unique prefix of it (at least 4 characters, e.g. the 12 the UI shows)")


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars on stderr")


def add_detach(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--detach",
        action="store_true",
        help="only queue the job and print its id (a server or `raml jobs worker` runs it)",
    )


def prepare_model_work(verbose: bool = False) -> None:
    """Just before a model runs in this process (after every flag was checked, so a refusal
    never pays for torch): torch threads from the cores really available (affinity, cgroup
    quota, ``RAML_TORCH_THREADS``) and, unless ``--verbose``, transformers' own bars off."""
    from backend.engine.threads import configure_torch_threads

    configure_torch_threads()
    if not verbose:
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass


def run_job(args, kind: str, params: dict, *, progress=None, title: str | None = None, model: bool = True):
    """Submit a job of ``kind``; with ``--detach`` print its id and return None, else run it
    here and return the finished job (its ``value`` is the kind's result). ``model=False``: a
    kind that runs no model (image export), so torch is left alone."""
    from backend.jobs import run_here, submit

    st = store(args)
    job_id = submit(st, kind, params, title=title)
    if not getattr(args, "quiet", False):
        print_estimate(st, job_id)
    if getattr(args, "detach", False):
        print(f"queued job {job_id} ({kind})", file=sys.stderr)
        print(job_id)
        return None
    if model:
        prepare_model_work(getattr(args, "verbose", False))
    bars = None
    if progress is None:  # every command that runs here shows its stages on stderr, unless --quiet
        progress = bars = Bars(not getattr(args, "quiet", False))
    try:
        job = run_here(st, job_id, progress=progress, reraise=True)
    finally:
        if bars is not None:
            bars.close()
    if job.state == "cancelled":
        from backend.errors import RamlError

        raise RamlError(f"job {job_id} was cancelled")
    if job.state != "finished":  # run by another worker that took it first
        from backend.errors import RamlError

        raise RamlError(f"job {job_id} {job.state}: {printable(job.error or '')}")
    return job


def print_estimate(st, job_id: int) -> None:
    """The job's estimate on stderr before any work: stage by stage with a range, and the cut
    policy's line for a run (backend.jobs.estimates)."""
    from backend.jobs import open_queue
    from backend.jobs.estimates import Estimate

    job = open_queue(st).get(job_id)
    est = Estimate.from_json(job.plan if job else None)
    if est is None or not est.stages:
        return
    print(f"estimate: {printable(est.describe())}", file=sys.stderr)
    for line in est.notes:
        print(printable(line), file=sys.stderr)


class Bars:
    """tqdm progress bars per stage, on stderr (a job's ``progress`` listener)."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar, self.stage = enabled, None, None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage == "generate" or (stage == "analyze" and (done > 0 or total == 0)):
            from backend.store.runs import pause_for_tests

            pause_for_tests(stage)  # RAML_TEST_PAUSE_AT: fault tests kill the process here
        if not self.enabled or stage in ("start", "done"):
            return
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=total, desc=stage, unit="cut" if stage == "analyze" else "", leave=False)
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def request_from(args, question, answer=None, trajectory=None, label="", seed=None):
    from backend.engine.models import DEFAULT_MODEL
    from backend.engine.trajectory import RAML_TEMPLATE, GenerationSettings
    from backend.pipeline.request import RunRequest

    gen = GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed if seed is None else seed,
    )
    return RunRequest(
        question=question,
        answer=answer,
        trajectory=trajectory,
        model=args.model or DEFAULT_MODEL,
        generation=gen,
        template=RAML_TEMPLATE if args.template is None else args.template,
        segmentation=args.segmentation,
        cuts=args.cuts,
        proxy_layers=args.proxy_layers,
        truncate=args.truncate,
        trust_remote_code=args.trust_remote_code,
        label=label,
        generator=args.generator,
        base_url=args.base_url,
        generator_model=args.generator_model,
        generator_deadline_s=args.generator_deadline,
        generator_max_mb=args.generator_max_mb,
        device=args.device,
        dtype=args.dtype,
        max_answer_tokens=args.max_answer_tokens,
        max_question_tokens=args.max_question_tokens,
        cut_budget_s=getattr(args, "budget_s", None),
    )


def add_run_options(p: argparse.ArgumentParser) -> None:
    from backend.engine import limits  # light; the model and template defaults are filled in later
    from backend.engine.openai_generator import DEFAULT_DEADLINE_S, DEFAULT_MAX_RESPONSE_MB

    p.add_argument(
        "--model",
        default=os.environ.get("RAML_MODEL"),
        help="hub id (from the local HF cache), local directory, .gguf file, or smollm2-135m (the default)",
    )
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--template", default=None, help="probe template (default: the RaML template)")
    p.add_argument(
        "--segmentation", default="sentences", help="sentences | lines | paragraphs | thought-anchors | tokens:K"
    )
    p.add_argument(
        "--cuts",
        default="auto",
        help="auto (every token if it fits --budget-s, else a stride that does, every step boundary kept) "
        "| all | stride:K | steps",
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="with --cuts auto: seconds the scoring of cut points may take "
        "(default RAML_CUT_BUDGET_S or 300, from this machine's measured throughput)",
    )
    p.add_argument(
        "--proxy-layers",
        type=lambda s: [int(x) for x in s.split(",") if x.strip()],
        default=None,
        help="comma-separated layer indices (default: 4 evenly spaced + last)",
    )
    p.add_argument("--truncate", action="store_true", help="keep the last part of an over-long trajectory")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--device", default=None, help="scorer device: cpu, cuda, cuda:N, mps (default: cuda if available)")
    p.add_argument("--dtype", default=None, help="scorer dtype: float32, float16, bfloat16 (default: bf16 on cuda)")
    p.add_argument("--generator", default="local", help="local (the scorer writes the trace) or openai (a server)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--generator-model", default=None, help="model name the --base-url server serves")
    p.add_argument(
        "--generator-deadline",
        type=float,
        default=DEFAULT_DEADLINE_S,
        help=f"seconds the --base-url server has for the whole reply (default {DEFAULT_DEADLINE_S:g})",
    )
    p.add_argument(
        "--generator-max-mb",
        type=float,
        default=DEFAULT_MAX_RESPONSE_MB,
        help=f"largest reply accepted from it, counted as it arrives (default {DEFAULT_MAX_RESPONSE_MB:g} MB)",
    )
    p.add_argument("--force", action="store_true", help="recompute even if cached")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--max-answer-tokens",
        type=int,
        default=limits.DEFAULT_MAX_ANSWER_TOKENS,
        help="longest reference answer (tokens); the readout's memory grows with it",
    )
    p.add_argument("--max-question-tokens", type=int, default=limits.DEFAULT_MAX_QUESTION_TOKENS)
    p.add_argument("--max-trajectory-mb", type=float, default=limits.DEFAULT_MAX_TRAJECTORY_MB)
    add_detach(p)
