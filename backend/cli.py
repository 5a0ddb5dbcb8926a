"""``raml`` (or ``python -m backend``): run, batch, ls, show, export, demo, rm.

Errors print one line to stderr and exit non-zero; ``run`` prints the run key as its last
stdout line so scripts can capture it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys

from backend import __version__
from backend.errors import InputError, RamlError
from backend.io.terminal import printable

EXIT_INPUT = 2
PRESET_NAMES = ("openr1", "s1k", "limo", "gsm8k", "math500", "thought-anchors")  # backend.io.fields.PRESETS
LIGHT_COMMANDS = frozenset({"ls", "show", "rm", "export"})  # no torch: threads left alone


def _store(args):
    from backend.store.runs import RunStore

    return RunStore(args.cache_dir)


def _request_from(args, question, answer=None, trajectory=None, label="", seed=None):
    from backend.engine.trajectory import GenerationSettings
    from backend.pipeline.run import RunRequest

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
        model=args.model,
        generation=gen,
        template=args.template,
        segmentation=args.segmentation,
        cuts=args.cuts,
        proxy_layers=args.proxy_layers,
        truncate=args.truncate,
        trust_remote_code=args.trust_remote_code,
        label=label,
        generator=args.generator,
        base_url=args.base_url,
        generator_model=args.generator_model,
        device=args.device,
        dtype=args.dtype,
        max_answer_tokens=args.max_answer_tokens,
        max_question_tokens=args.max_question_tokens,
    )


class _Bars:
    """tqdm progress bars per stage, on stderr."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar, self.stage = enabled, None, None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage == "generate" or (stage == "analyze" and (done > 0 or total == 0)):
            from backend.store.runs import pause_for_tests

            pause_for_tests(stage)  # RAML_TEST_PAUSE_AT: fault tests kill the process here
        if not self.enabled:
            return
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=total, desc=stage, unit="cut" if stage == "analyze" else "", leave=False)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_run(args) -> int:
    from backend.engine.limits import read_trajectory_file
    from backend.pipeline.run import run_question

    trajectory = None
    if args.trajectory_file:  # refused by its size before it is read
        trajectory = read_trajectory_file(args.trajectory_file, args.max_trajectory_mb)
    bars = _Bars(not args.quiet)
    try:
        outcome = run_question(
            _request_from(args, args.question, args.answer, trajectory), _store(args), progress=bars, force=args.force
        )
    finally:
        bars.close()
    state = "cache hit" if outcome.cached else "computed"
    print(f"{state} in {outcome.seconds:.2f} s", file=sys.stderr)
    for w in outcome.warnings:
        print(f"warning: {printable(w)}", file=sys.stderr)
    print(outcome.key)
    return 0


def cmd_batch(args) -> int:
    from backend.io.fields import FieldMap
    from backend.scale.batch import BatchSpec, run_batch

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit {args.limit} must be at least 1 (leave --limit out to run every question)")
    _request_from(args, "options check").validate()  # shared options: refused once, before any line runs
    fields = FieldMap.from_args(args)
    spec = BatchSpec(
        args.file, fields, args.samples, args.limit, args.engine, args.address, show_progress=not args.quiet
    )
    report = run_batch(spec, _request_from(args, ""), _store(args))
    for line in report.error_lines():
        print(f"error: {printable(line)}", file=sys.stderr)
    print(report.summary(), file=sys.stderr)
    for line in report.key_lines():  # id<TAB>sample<TAB>key: the id is user text, the tabs stay
        print("\t".join(printable(part) for part in line.split("\t")))
    return report.exit_code


def cmd_ls(args) -> int:
    df = _store(args).list_runs()
    if args.json:
        print(df.to_json(orient="records"))
        return 0
    if df.empty:
        print("no runs in", args.cache_dir)
        return 0
    cols = ["key", "status", "model", "n_tokens", "n_steps", "final_loss", "correct", "question"]
    view = df[cols].copy()
    view["question"] = view["question"].fillna("").str.slice(0, 50)
    damaged = df["status"] != "ok"
    view.loc[damaged, "question"] = df.loc[damaged, "cause"].str.slice(0, 80)  # what is wrong, in its place
    for col in ("model", "question"):  # user text: control characters escaped
        view[col] = view[col].map(printable)
    print(view.to_string(index=False))
    if damaged.any():
        print(f"{int(damaged.sum())} damaged run(s): recompute them or remove them with rm", file=sys.stderr)
    return 0


def show_payload(run) -> dict:
    """The JSON object printed by ``show --json`` (fields fixed by issue #3)."""
    summary = run.summary
    payload = {
        "key": run.key,
        "model": run.model_name,
        "question": run.question,
        "answer": run.answer,
        "answer_source": run.answer_source,
        "correct": run.correct,
        "predicted_answer": run.predicted_answer,
        "n_tokens": summary.n_tokens,
        "n_steps": summary.n_steps,
        "timings": run.timings,
        "tokens": [{"cut": int(c), "loss": float(v)} for c, v in zip(run.tokens["cut"], run.tokens["loss"])],
        "steps": [
            {
                "index": int(r["index"]),
                "text": r["text"],
                "start": int(r["start"]),
                "end": int(r["end"]),
                "loss": float(r["loss"]),
                "p_answer": float(r["p_answer"]),
                "entropy": float(r["entropy"]),
                "reflection": bool(r["reflection"]),
            }
            for r in run.steps.to_dict("records")
        ],
    }
    _add_exact_fields(run, payload)
    return payload


def _add_exact_fields(run, payload: dict) -> None:
    """Steps gain exact_update_loss/norm and the payload a fidelity block once ``exact KEY`` ran."""
    from backend.analysis.exact.data import show_fields

    per_cut, fidelity = show_fields(run)
    for step in payload["steps"]:
        step.update(per_cut.get(step["end"], {"exact_update_loss": None, "exact_update_norm": None}))
    payload["fidelity"] = fidelity


def cmd_show(args) -> int:
    store = _store(args)
    run = store.open(args.key)
    payload = show_payload(run)
    if args.json:
        from backend.pipeline.branches import show_fields

        payload |= show_fields(store, run)
        print(json.dumps(payload, ensure_ascii=False))
        return 0
    s = run.summary
    p = {k: printable(v) for k, v in payload.items() if k in ("model", "question", "answer", "answer_source")}
    print(f"run      {run.key}\nmodel    {p['model']}\nquestion {p['question']}")
    print(
        f"answer   {p['answer']} ({p['answer_source']}), predicted {payload['predicted_answer']!r}, "
        f"correct={payload['correct']}"
    )
    print(f"tokens   {s.n_tokens}, steps {s.n_steps}, loss {s.initial_loss:.3f} -> {s.final_loss:.3f} nats")
    for st in payload["steps"]:
        flag = " [reflection]" if st["reflection"] else ""
        print(f"  {st['index']:3d}  L={st['loss']:.3f}  {printable(st['text'].strip()[:70])}{flag}")
    return 0


def cmd_rm(args) -> int:
    """All or nothing: every key is checked (format, then presence) before any run is deleted."""
    from backend.store.runs import check_key

    store = _store(args)
    for k in args.keys:
        check_key(k)
    missing = [k for k in dict.fromkeys(args.keys) if not store.path(k).exists()]
    if missing:
        raise InputError(f"no run {', '.join(missing)} in {args.cache_dir}: nothing deleted")
    from backend.pipeline.branches import confirm_orphaning

    confirm_orphaning(store, args.keys, args.yes)  # asks (or refuses) before orphaning branches
    for k in dict.fromkeys(args.keys):
        store.delete(k)
    return 0


def cmd_export(args) -> int:
    run = _store(args).open(args.key)  # key checked and run verified before anything else

    if not (args.html or args.format or args.png or args.svg):
        raise RamlError("export needs --html FILE, --format csv|parquet|json, --png or --svg")
    from backend.plots import exports
    from backend.plots.html_export import export_html

    if args.html == "-":
        from backend.plots.html_export import build_export_html

        sys.stdout.write(build_export_html(run, args.plotlyjs))
        sys.stdout.flush()
        return 0
    written = [export_html(run, args.html, args.plotlyjs, follow_symlinks=args.follow_symlinks)] if args.html else []
    out_dir = args.out or f"raml-export-{run.key}"
    if args.format:
        written += exports.export_tables(run, out_dir, args.format)
    for fmt in ("png", "svg"):
        if getattr(args, fmt):
            written += exports.export_images(run, out_dir, fmt, scale=args.scale)
    for path in written:
        print(path)
    return 0


def cmd_demo(args) -> int:
    from backend.demo import ensure_demo

    bars = _Bars(not args.quiet)
    try:
        key = ensure_demo(_store(args), progress=bars)
    finally:
        bars.close()
    print(key)
    return 0


def _add_run_options(p: argparse.ArgumentParser) -> None:
    from backend.engine.models import DEFAULT_MODEL
    from backend.engine.trajectory import RAML_TEMPLATE

    p.add_argument(
        "--model",
        default=os.environ.get("RAML_MODEL", DEFAULT_MODEL),
        help="hub id (from the local HF cache), local directory, .gguf file, or smollm2-135m",
    )
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--template", default=RAML_TEMPLATE)
    p.add_argument(
        "--segmentation", default="sentences", help="sentences | lines | paragraphs | thought-anchors | tokens:K"
    )
    p.add_argument("--cuts", default="all", help="all | stride:K | steps")
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
    p.add_argument("--force", action="store_true", help="recompute even if cached")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    from backend.engine import limits

    p.add_argument(
        "--max-answer-tokens",
        type=int,
        default=limits.DEFAULT_MAX_ANSWER_TOKENS,
        help="longest reference answer (tokens); the readout's memory grows with it",
    )
    p.add_argument("--max-question-tokens", type=int, default=limits.DEFAULT_MAX_QUESTION_TOKENS)
    p.add_argument("--max-trajectory-mb", type=float, default=limits.DEFAULT_MAX_TRAJECTORY_MB)


# Commands that live in their own modules: each module defines ``register(subparsers)``, which
# adds its sub-parser(s) with ``set_defaults(func=...)``. A new command is a new module plus
# one line here; its module imports heavy libraries inside the command function only.
COMMAND_MODULES: tuple[str, ...] = (
    "backend.commands.jobs",
    "backend.commands.exact",
    "backend.commands.stats",
    "backend.commands.importance",
    "backend.commands.branch",
)


def build_parser() -> argparse.ArgumentParser:
    prog = "raml" if os.path.basename(sys.argv[0]) == "raml" else "python -m backend"
    parser = argparse.ArgumentParser(prog=prog, description="RaML Explorer backend")
    parser.add_argument("--version", action="version", version=f"raml-explorer {__version__}")
    parser.add_argument("--cache-dir", default=os.environ.get("RAML_CACHE_DIR", "cache"))
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="analyze one question; prints the run key")
    p.add_argument("--question", required=True)
    p.add_argument("--answer", default=None)
    p.add_argument("--trajectory-file", default=None)
    _add_run_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("batch", help="one run per question or trace of a dataset file or folder (resumable)")
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
    _add_run_options(p)
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("ls", help="list cached runs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("show", help="print a run")
    p.add_argument("key")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("export", help="write an interactive HTML file, the tables, or the figures as images")
    p.add_argument("key")
    p.add_argument("--html", default=None, help="interactive HTML file to write, or - for stdout")
    p.add_argument(
        "--follow-symlinks", action="store_true", help="if --html is a symbolic link, replace the file it points to"
    )
    p.add_argument("--plotlyjs", choices=("inline", "cdn"), default="inline", help="inline (offline, 4.8 MB) or cdn")
    p.add_argument("--format", choices=("csv", "parquet", "json"), default=None, help="tokens, steps, lens tables")
    p.add_argument("--png", action="store_true", help="loss, lens and path figures as PNG (kaleido + chromium)")
    p.add_argument("--svg", action="store_true", help="the same figures as SVG")
    p.add_argument("--scale", type=float, default=1.0, help="image scale (PNG pixels = 1000x450 x scale)")
    p.add_argument("--out", default=None, help="folder for tables and images (default raml-export-KEY)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="prepare the demo run (cached after the first time)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("rm", help="delete runs")
    p.add_argument("keys", nargs="+")
    p.add_argument("--yes", action="store_true", help="delete even if branches of it would be orphaned")
    p.set_defaults(func=cmd_rm)

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


@contextlib.contextmanager
def _progress_bars_silenced(quiet: bool):
    """--quiet: every tqdm bar off while the command runs, libraries' included (transformers' GGUF
    conversion draws a plain ``tqdm.auto`` bar that its own switch does not reach)."""
    if not quiet:
        yield
        return
    import functools

    import tqdm

    original = tqdm.tqdm.__init__
    tqdm.tqdm.__init__ = functools.partialmethod(original, disable=True)  # type: ignore[method-assign]
    try:
        yield
    finally:
        tqdm.tqdm.__init__ = original  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not args.verbose:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        import warnings

        warnings.filterwarnings("ignore")
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
    try:
        if args.command not in LIGHT_COMMANDS:
            from backend.engine.threads import configure_torch_threads

            configure_torch_threads()  # from the cores really available (affinity, cgroup quota, env)
        with _progress_bars_silenced(getattr(args, "quiet", False)):
            return args.func(args)
    except RamlError as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as exc:  # e.g. an output path that cannot be written
        print(f"error: {printable(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
