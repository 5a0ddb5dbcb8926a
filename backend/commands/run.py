"""``raml run --question Q [--answer A] [--trajectory-file F]``: one run (a ``run`` job);
prints the run key as its last stdout line (``--detach``: the job id)."""

from __future__ import annotations

import sys

from backend.commands.common import Bars, add_run_options, request_from, run_job
from backend.io.terminal import printable


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="analyze one question; prints the run key")
    p.add_argument("--question", required=True)
    p.add_argument("--answer", default=None)
    p.add_argument("--trajectory-file", default=None)
    add_run_options(p)
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    from backend.engine.limits import read_trajectory_file
    from backend.jobs import request_params

    trajectory = None
    if args.trajectory_file:  # refused by its size before it is read
        trajectory = read_trajectory_file(args.trajectory_file, args.max_trajectory_mb)
    req = request_from(args, args.question, args.answer, trajectory)
    req.validate()  # the limits' messages name the command's flags (--temperature ...), before the job's
    from backend.pipeline.request import check_before_load

    check_before_load(req)  # layers (config / GGUF header), then lengths (tokenizer): before torch and the weights
    bars = Bars(not args.quiet)
    try:
        job = run_job(args, "run", request_params(req, force=args.force), progress=bars)
    finally:
        bars.close()
    if job is None:
        return 0
    outcome = job.value
    state = "cache hit" if outcome.cached else "computed"
    print(f"{state} in {outcome.seconds:.2f} s", file=sys.stderr)
    for w in outcome.warnings:
        print(f"warning: {printable(w)}", file=sys.stderr)
    print(outcome.key)
    return 0
