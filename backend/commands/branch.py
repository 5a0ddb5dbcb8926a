"""``raml branch KEY --step K --samples N`` (resample) or ``--edit-file F [--regenerate]`` (edit):
a ``branch`` job; prints the branches' run keys (``--detach``: the job id)."""

from __future__ import annotations

import sys

from backend.commands.common import add_detach, add_key_argument, add_quiet, open_run, run_job
from backend.errors import InputError


def cmd_branch(args) -> int:
    from backend.engine.trajectory import GenerationSettings
    from backend.pipeline import branches as branching

    run = open_run(args)  # the key checked before anything is queued
    settings = GenerationSettings(args.max_new_tokens, args.temperature, args.top_p, args.seed)
    params = {
        "key": run.key,
        "step": args.step,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "max_new_tokens": args.max_new_tokens,
        "seed": args.seed,
    }
    if args.edit_file is not None:
        if args.samples is not None:
            raise InputError("--samples and --edit-file exclude each other (an edit is one branch)")
        from backend.engine.limits import read_text_file

        text = read_text_file(args.edit_file, "edit file", "--max-edit-mb", args.max_edit_mb)  # kind, size first
        branching.validate(run, args.step, 1, settings)
        branching.check_edit(run, args.step, text, args.regenerate)  # the context too, before the weights
        cost = branching.estimate(run, args.step, 1, args.max_new_tokens, regenerate=args.regenerate)
        params |= {"mode": "edit", "text": text, "regenerate": args.regenerate}
    else:
        if args.regenerate:
            raise InputError("--regenerate goes with --edit-file (resampled branches are always generated)")
        from backend.pipeline.branch_defaults import DEFAULTS

        samples = DEFAULTS.samples if args.samples is None else args.samples
        branching.validate(run, args.step, samples, settings)
        cost = branching.estimate(run, args.step, samples, args.max_new_tokens)
        params |= {"mode": "resample", "samples": samples}
    print(_cost_line(cost), file=sys.stderr)
    job = run_job(args, "branch", params)
    if job is None:
        return 0
    for outcome in job.value:
        print(outcome.key)
    return 0


def _cost_line(cost: dict) -> str:
    return (
        f"branching: {cost['samples']} run(s), {cost['generated_tokens']} tokens to generate, "
        f"{cost['analysed_tokens']} to analyse"
    )


def register(subparsers) -> None:
    p = subparsers.add_parser("branch", help="branch a run at a step: resample it or replace it with your text")
    add_key_argument(p)
    from backend.pipeline.branch_defaults import DEFAULTS  # the page's defaults too (a light module)

    p.add_argument("--step", type=int, required=True, help="the step resampled or replaced, 1..S (as Explore shows it)")
    p.add_argument("--samples", type=int, default=None, help=f"resampled continuations (default {DEFAULTS.samples})")
    p.add_argument("--edit-file", default=None, help="text that replaces the step")
    p.add_argument("--regenerate", action="store_true", help="with --edit-file: regenerate the rest")
    p.add_argument(
        "--max-edit-mb", type=float, default=1.0, help="largest --edit-file accepted (default 1 MB), checked first"
    )
    p.add_argument("--temperature", type=float, default=DEFAULTS.temperature, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=DEFAULTS.top_p)
    p.add_argument("--seed", type=int, default=0, help="sample i uses seed + i")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=DEFAULTS.max_new_tokens,
        help="the cap; a resample stops earlier when the model ends its answer (end token or a closed \\boxed{})",
    )
    add_detach(p)
    add_quiet(p)
    p.set_defaults(func=cmd_branch)
