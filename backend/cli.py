"""``raml`` (or ``python -m backend``): the parser assembled from ``backend.commands`` (one
module per command), error handling and ``main``.

Errors print one line to stderr and exit non-zero; ``run`` prints the run key as its last
stdout line so scripts can capture it. Commands that do long work submit job kinds
(``backend.jobs``) and, unless ``--detach``, run them here and wait.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys

from backend import __version__
from backend.errors import RamlError
from backend.io.terminal import printable

EXIT_INPUT = 2


# Commands that live in their own modules: each module defines ``register(subparsers)``, which
# adds its sub-parser(s) with ``set_defaults(func=...)``. A new command is a new module plus
# one line here; its module imports heavy libraries inside the command function only (start-up
# stays light: ``tests/unit/test_cli_startup.py`` checks that listing and showing never import
# torch or transformers). Torch threads are set just before a model runs
# (``backend.commands.common.prepare_model_work``), after every flag was checked.
COMMAND_MODULES: tuple[str, ...] = (
    "backend.commands.run",
    "backend.commands.batch",
    "backend.commands.ls",
    "backend.commands.show",
    "backend.commands.export",
    "backend.commands.demo",
    "backend.commands.rm",
    "backend.commands.jobs",
    "backend.commands.exact",
    "backend.commands.stats",
    "backend.commands.importance",
    "backend.commands.branch",
    "backend.commands.lens",
    "backend.commands.serve",
)


def build_parser() -> argparse.ArgumentParser:
    prog = "raml" if os.path.basename(sys.argv[0]) == "raml" else "python -m backend"
    parser = argparse.ArgumentParser(prog=prog, description="RaML Explorer backend")
    parser.add_argument("--version", action="version", version=f"raml-explorer {__version__}")
    parser.add_argument("--cache-dir", default=os.environ.get("RAML_CACHE_DIR", "cache"))
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

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
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers is imported, if ever
        import warnings

        warnings.filterwarnings("ignore")
    try:
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
