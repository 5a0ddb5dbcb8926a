"""``raml export KEY --html F | --format csv|parquet|json | --png | --svg`` and ``raml export --site
DIR [SELECTION ...]``: an interactive HTML file, the tables, the figures as images, or a static
site of runs. The images are an ``export_images`` job (written into the run's derived exports,
then copied into ``--out``); ``--detach`` only queues it. The HTML file and the site are read from
the cache only (nothing is computed: importance and the fidelity line appear when cached)."""

from __future__ import annotations

import sys

from backend.commands.common import add_detach, add_quiet, open_run, run_job, store
from backend.errors import InputError, RamlError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="write an interactive HTML file, the tables, the figures as images, or a static site of runs"
    )
    p.add_argument(
        "selection",
        nargs="*",
        metavar="KEY",
        help="run key or unique prefix (at least 4 characters); with --site: keys, field=value filters "
        "(model, label, answer_source, correct, q) or question files, none = every run",
    )
    p.add_argument("--html", default=None, help="interactive HTML file to write, or - for stdout")
    p.add_argument(
        "--site",
        default=None,
        metavar="DIR",
        help="static site of the selected runs: index.html + one page per run (opens from file://, no server)",
    )
    p.add_argument(
        "--follow-symlinks", action="store_true", help="if --html is a symbolic link, replace the file it points to"
    )
    p.add_argument("--plotlyjs", choices=("inline", "cdn"), default="inline", help="inline (offline, 4.8 MB) or cdn")
    p.add_argument("--cdn", action="store_true", help="load plotly.js from its CDN (same as --plotlyjs cdn)")
    p.add_argument("--format", choices=("csv", "parquet", "json"), default=None, help="tokens, steps, lens tables")
    p.add_argument("--png", action="store_true", help="loss, lens and path figures as PNG (kaleido + chromium)")
    p.add_argument("--svg", action="store_true", help="the same figures as SVG")
    p.add_argument("--scale", type=float, default=1.0, help="image scale (PNG pixels = 1000x450 x scale)")
    p.add_argument("--out", default=None, help="folder for tables and images (default raml-export-KEY)")
    add_detach(p)
    add_quiet(p)
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    plotlyjs = "cdn" if args.cdn else args.plotlyjs
    if args.site is not None:
        if args.html or args.format or args.png or args.svg:
            raise InputError("--site writes a whole folder: give --html, --format, --png and --svg without it")
        return _site(args, plotlyjs)
    if len(args.selection) != 1:
        raise InputError("export takes one run key (several runs, or filters: --site DIR)")
    args.key = args.selection[0]
    run = open_run(args)  # key checked and run verified before anything else

    if not (args.html or args.format or args.png or args.svg):
        raise RamlError("export needs --html FILE, --format csv|parquet|json, --png, --svg or --site DIR")
    from backend.export.single import export_html
    from backend.plots import exports

    if args.html == "-":
        from backend.export.single import build_export_html

        sys.stdout.write(build_export_html(run, plotlyjs, store=store(args)))
        sys.stdout.flush()
        return 0
    written = (
        [export_html(run, args.html, plotlyjs, follow_symlinks=args.follow_symlinks, store=store(args))]
        if args.html
        else []
    )
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


def _site(args, plotlyjs: str) -> int:
    from backend.export.site import export_site, select_runs

    st = store(args)
    keys = select_runs(st, args.selection)
    if not keys:
        raise InputError("no run matches the selection" if args.selection else f"no runs in cache {st.root}")
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=len(keys), desc="site", unit="run", leave=False)
    try:
        report = export_site(
            st,
            keys,
            args.site,
            plotlyjs=plotlyjs,
            progress=(lambda done, total: bar.update(done - bar.n)) if bar else None,
        )
    finally:
        if bar is not None:
            bar.close()
    sizes = report.sizes()
    for line in report.skipped:
        print(f"left out: {line}", file=sys.stderr)
    print(
        f"{len(report.pages)} run page(s), {sizes['total'] / 1e6:.1f} MB in {report.root}",
        file=sys.stderr,
    )
    print(report.index)
    return 0
