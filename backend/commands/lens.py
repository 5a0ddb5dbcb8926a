"""``raml lens train [--model M] [--tokens N]``: train the model's tuned lens (a ``lens_train`` job;
``--detach`` only queues it) and print its held-out quality, logit vs tuned; ``raml lens show
[--model M]``: the stored lens's quality; ``raml lens import DIR`` / ``raml lens export DIR``: a
lens in tuned-lens' own layout (``config.json`` + ``params.pt``, read without unpickling). docs/lens.md."""

from __future__ import annotations

import json
import os

from backend.commands.common import add_detach, run_job, store

DEFAULT_MODEL = "smollm2-135m"  # backend.engine.models.DEFAULT_MODEL (kept light: no torch at start-up)


def _model(args) -> str:
    return args.model or os.environ.get("RAML_MODEL") or DEFAULT_MODEL


def quality_table(config: dict) -> str:
    """Per-layer held-out KL to the final distribution and answer lens loss, logit vs tuned."""
    q = config["quality"]
    lines = [" layer  KL logit  KL tuned  answer NLL logit  answer NLL tuned"]
    for i, row in enumerate(zip(q["kl_logit"], q["kl_tuned"], q["answer_nll_logit"], q["answer_nll_tuned"])):
        lines.append(f"{i:6d}  {row[0]:8.3f}  {row[1]:8.3f}  {row[2]:16.3f}  {row[3]:16.3f}")
    return "\n".join(lines)


def cmd_train(args) -> int:
    params = {
        "model": _model(args),
        "tokens": args.tokens,
        "epochs": args.epochs,
        "generations": not args.no_generations,
    }
    job = run_job(args, "lens_train", params)
    if job is None:
        return 0
    config = job.value
    if args.json:
        print(json.dumps(config))
        return 0
    t = config["trained"]
    print(
        f"tuned lens of {params['model']} ({config['model_fingerprint']}): {t['tokens']} training tokens "
        f"({', '.join(f'{k} {v}' for k, v in t['tokens_by_source'].items())}), {t['steps']} steps, "
        f"{config['timings']['wall_s']:.0f} s"
    )
    print(f"held-out: {config['quality']['held_out_tokens']} tokens, {config['quality']['held_out_answers']} answers")
    print(quality_table(config))
    return 0


def _fingerprint(name: str) -> str:
    from backend.jobs.estimates import model_state

    return model_state(name)[0]


def cmd_show(args) -> int:
    from backend.errors import InputError
    from backend.store.lenses import load_lens

    name = _model(args)
    stored = load_lens(store(args).root, _fingerprint(name))
    if stored is None:
        raise InputError(f"no tuned lens for {name} yet: run `raml lens train --model {name}`")
    if args.json:
        print(json.dumps(stored.config))
        return 0
    print(f"{stored.path}")
    print(quality_table(stored.config))
    return 0


def cmd_import(args) -> int:
    from backend.analysis.lens.reference import import_reference
    from backend.engine import provider

    loaded = provider.provide(_model(args))
    folder = import_reference(store(args).root, loaded, args.folder)
    print(folder)
    return 0


def cmd_export(args) -> int:
    from backend.analysis.lens.reference import export_reference
    from backend.engine import provider

    loaded = provider.provide(_model(args))
    print(export_reference(store(args).root, loaded, args.folder))
    return 0


def cmd_grid(args) -> int:
    run = store(args).open(args.key)  # the key checked before anything is queued
    job = run_job(args, "lens_grid", {"key": run.key})
    if job is None:
        return 0
    rows = job.value["rows"]
    if args.json:
        print(json.dumps(job.value))
        return 0
    layers = 1 + max(r[2] for r in rows)
    print(f"run {run.key}: tuned-lens grid, {len(rows) // layers} boundaries x {layers} layers (answer NLL, nats)")
    for b in range(len(rows) // layers):
        print(f"{b:4d}  " + " ".join(f"{r[3]:5.2f}" for r in rows[b * layers : (b + 1) * layers]))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("lens", help="the tuned lens of a model: train, show, import, export")
    sub = p.add_subparsers(dest="lens_command", required=True)
    t = sub.add_parser("train", help="train the model's tuned lens on offline text (a lens_train job)")
    t.add_argument("--model", default=None, help="model name (default: $RAML_MODEL or smollm2-135m)")
    t.add_argument("--tokens", type=int, default=1024, help="training tokens (256..4194304; default 1024)")
    t.add_argument("--epochs", type=int, default=1, help="passes over the training text (1..100)")
    t.add_argument("--no-generations", action="store_true", help="bundled and cached text only, no sampled text")
    t.add_argument("--json", action="store_true", help="print the stored config (quality, timings) as JSON")
    add_detach(t)
    t.set_defaults(func=cmd_train)
    s = sub.add_parser("show", help="the stored tuned lens's held-out quality, logit vs tuned")
    s.add_argument("--model", default=None)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)
    i = sub.add_parser(
        "import", help="store a lens saved by tuned-lens (config.json + params.pt or params.safetensors)"
    )
    i.add_argument("folder")
    i.add_argument("--model", default=None)
    i.set_defaults(func=cmd_import)
    g = sub.add_parser("grid", help="a run's lens grid through the model's tuned lens (a lens_grid job; cached)")
    g.add_argument("key")
    g.add_argument("--json", action="store_true")
    add_detach(g)
    g.set_defaults(func=cmd_grid)
    e = sub.add_parser("export", help="write the stored lens in tuned-lens' layout (config.json + params.pt)")
    e.add_argument("folder")
    e.add_argument("--model", default=None)
    e.set_defaults(func=cmd_export)
