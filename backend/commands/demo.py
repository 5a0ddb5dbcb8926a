"""``raml demo``: prepare the demo run (cached after the first time); prints its key."""

from __future__ import annotations

from backend.commands.common import Bars, prepare_model_work, store


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="prepare the demo run (cached after the first time)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from backend.demo import ensure_demo

    prepare_model_work(args.verbose)
    bars = Bars(not args.quiet)
    try:
        key = ensure_demo(store(args), progress=bars)
    finally:
        bars.close()
    print(key)
    return 0
