"""``raml export KEY --html F | --format csv|parquet|json | --png | --svg``: an interactive HTML
file, the tables, or the figures as images. The images are an ``export_images`` job (written
into the run's derived exports, then copied into ``--out``); ``--detach`` only queues it."""

from __future__ import annotations

import sys

from backend.commands.common import add_detach, add_key_argument, add_quiet, open_run, run_job, store
from backend.errors import RamlError


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="write an interactive HTML file, the tables, or the figures as images")
    add_key_argument(p)
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
    add_detach(p)
    add_quiet(p)
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    run = open_run(args)  # key checked and run verified before anything else

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
        written += exports.export_tables(run, out_dir, args.format, store=store(args))
    formats = [fmt for fmt in ("png", "svg") if getattr(args, fmt)]
    if formats:
        exports.ensure_browser()  # refused here, in one line, before a job is queued
        job = run_job(args, "export_images", {"key": run.key, "formats": formats, "scale": args.scale}, model=False)
        if job is not None:
            written += exports.copy_into(job.value, out_dir)
    for path in written:
        print(path)
    return 0
