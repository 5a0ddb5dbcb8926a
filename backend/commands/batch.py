"""``raml batch FILE [--samples K]``: one run per (question, sample) of a dataset file or
folder, resumable (a ``batch`` job: ``backend.scale.batch.run_batch``). Prints
``id<TAB>sample<TAB>key`` per stored run; exit 1 if any line or run failed."""

from __future__ import annotations

import sys
from dataclasses import asdict

from backend.commands.common import PRESET_NAMES, add_run_options, request_from, run_job
from backend.errors import InputError
from backend.io.terminal import printable

PER_RECORD = ("question", "answer", "trajectory", "label")


def register(subparsers) -> None:
    p = subparsers.add_parser("batch", help="one run per question or trace of a dataset file or folder (resumable)")
    p.add_argument(
        "file",
        help="JSONL, .parquet (or a folder of shards), .arrow, .csv, a Hugging Face save_to_disk folder, "
        "or Thought Anchors problem folders",
    )
    p.add_argument("--samples", type=int, default=1, help="K sampled trajectories per question")
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local one)")
    p.add_argument("--limit", type=int, default=None, help="first N questions only (N >= 1)")
    p.add_argument("--preset", default=None, choices=PRESET_NAMES, help="column names of a known dataset layout")
    p.add_argument("--question-field", default=None, help="column with the question (default: question)")
    p.add_argument("--answer-field", default=None, help="column with the reference answer (default: answer)")
    p.add_argument("--trajectory-field", default=None, help="column with the trace (a list gives one run per element)")
    p.add_argument(
        "--batch-input",
        default=None,
        metavar="FILE",
        help="OpenAI-compatible batch output (--preset openai-chat): the batch input file of its requests; "
        "each output line takes its question from the request with the same custom_id",
    )
    add_run_options(p)
    p.set_defaults(func=cmd_batch)


def cmd_batch(args) -> int:
    from backend.engine.limits import check_input_path
    from backend.io.fields import FieldMap
    from backend.scale.batch import BatchSpec

    check_input_path(args.file, "dataset")  # no FIFO or device reaches a reader
    if args.batch_input is not None:
        check_input_path(args.batch_input, "batch input file")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit {args.limit} must be at least 1 (leave --limit out to run every question)")
    request_from(args, "options check").validate()  # shared options: refused once, before any line runs
    BatchSpec(args.file, FieldMap.from_args(args), args.samples, args.limit, args.engine, args.address).validate()
    template = {k: v for k, v in asdict(request_from(args, "")).items() if k not in PER_RECORD}
    params = {
        "source": args.file,
        "samples": args.samples,
        "limit": args.limit,
        "preset": args.preset,
        "question_field": args.question_field,
        "answer_field": args.answer_field,
        "trajectory_field": args.trajectory_field,
        "batch_input": args.batch_input,
        "template": template,
        "engine": args.engine,
        "address": args.address,
    }
    job = run_job(args, "batch", params, progress=None if args.quiet else _Interactive())
    if job is None:
        return 0
    report = job.value
    for line in report.error_lines():
        print(f"error: {printable(line)}", file=sys.stderr)
    print(report.summary(), file=sys.stderr)
    for line in report.key_lines():  # id<TAB>sample<TAB>key: the id is user text, the tabs stay
        print("\t".join(printable(part) for part in line.split("\t")))
    return report.exit_code


class _Interactive:
    """A listener that only marks the job as followed from a terminal (run_batch draws its own bar)."""

    def __call__(self, stage: str, done: int, total: int) -> None:
        pass
