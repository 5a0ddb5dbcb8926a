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
LIGHT_COMMANDS = frozenset({"ls", "show", "rm", "export"})  # no torch: threads left alone


def _store(args):
    from backend.store.runs import RunStore

    return RunStore(args.cache_dir)


def _request_from(args, question, answer=None, trajectory=None, label="", seed=None):
    from backend.engine.trajectory import GenerationSettings
    from backend.jobs import RunRequest

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
    from backend.jobs import run_question

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
    from backend.scale.batch import run_batch

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit {args.limit} must be at least 1 (leave --limit out to run every question)")
    _request_from(args, "options check").validate()  # shared options: refused once, before any line runs
    return run_batch(args, _request_from, _store(args))


def cmd_ls(args) -> int:
    df = _store(args).list_runs()
    if args.json:
        print(df.to_json(orient="records"))
        return 0
    if df.empty:
        print("no runs in", args.cache_dir)
        return 0
    cols = ["key", "model", "n_tokens", "n_steps", "final_loss", "correct", "question"]
    view = df[cols].copy()
    view["question"] = view["question"].str.slice(0, 50)
    for col in ("model", "question"):  # user text: control characters escaped
        view[col] = view[col].map(printable)
    print(view.to_string(index=False))
    return 0


def show_payload(run) -> dict:
    """The JSON object printed by ``show --json`` (fields fixed by issue #3)."""
    meta = run.meta
    return {
        "key": run.key,
        "model": meta["model"]["name"],
        "question": meta["question"],
        "answer": meta["answer"],
        "answer_source": meta["answer_source"],
        "correct": meta.get("correct"),
        "predicted_answer": meta.get("predicted_answer"),
        "n_tokens": meta["summary"]["n_tokens"],
        "n_steps": meta["summary"]["n_steps"],
        "timings": meta.get("timings", {}),
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


def cmd_show(args) -> int:
    run = _store(args).open(args.key)
    payload = show_payload(run)
    if args.json:
        print(json.dumps(payload, ensure_ascii=False))
        return 0
    s = run.meta["summary"]
    p = {k: printable(v) for k, v in payload.items() if k in ("model", "question", "answer", "answer_source")}
    print(f"run      {run.key}\nmodel    {p['model']}\nquestion {p['question']}")
    print(
        f"answer   {p['answer']} ({p['answer_source']}), predicted {payload['predicted_answer']!r}, "
        f"correct={payload['correct']}"
    )
    print(f"tokens   {s['n_tokens']}, steps {s['n_steps']}, loss {s['initial_loss']:.3f} -> {s['final_loss']:.3f} nats")
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
    for k in dict.fromkeys(args.keys):
        store.delete(k)
    return 0


def cmd_export(args) -> int:
    run = _store(args).open(args.key)  # key checked and run verified before anything else

    from backend.plots.html_export import export_html

    out = export_html(run, args.html)
    print(out)
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
    p.add_argument("--segmentation", default="sentences", help="sentences | lines | paragraphs | tokens:K")
    p.add_argument("--cuts", default="all", help="all | stride:K | steps")
    p.add_argument(
        "--proxy-layers",
        type=lambda s: [int(x) for x in s.split(",") if x.strip()],
        default=None,
        help="comma-separated layer indices (default: 4 evenly spaced + last)",
    )
    p.add_argument("--truncate", action="store_true", help="keep the last part of an over-long trajectory")
    p.add_argument("--trust-remote-code", action="store_true")
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
COMMAND_MODULES: tuple[str, ...] = ()


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

    p = sub.add_parser(
        "batch", help="one run per question of a JSONL/Parquet/Arrow file or HF save_to_disk folder (resumable)"
    )
    p.add_argument("file", help="JSONL, .parquet, .arrow, or a Hugging Face datasets folder (save_to_disk)")
    p.add_argument("--samples", type=int, default=1, help="K sampled trajectories per question")
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local one)")
    p.add_argument("--limit", type=int, default=None, help="first N questions only (N >= 1)")
    p.add_argument("--question-field", default="question")
    p.add_argument("--answer-field", default="answer")
    _add_run_options(p)
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("ls", help="list cached runs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("show", help="print a run")
    p.add_argument("key")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("export", help="write a self-contained interactive HTML file")
    p.add_argument("key")
    p.add_argument("--html", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="prepare the demo run (cached after the first time)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("rm", help="delete runs")
    p.add_argument("keys", nargs="+")
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
