"""``raml rm KEY... [--yes]``: delete runs, all or nothing (light: no torch)."""

from __future__ import annotations

from backend.commands.common import store
from backend.errors import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser("rm", help="delete runs")
    p.add_argument("keys", nargs="+")
    p.add_argument("--yes", action="store_true", help="delete even if branches of it would be orphaned")
    p.set_defaults(func=cmd_rm)


def cmd_rm(args) -> int:
    """All or nothing: every key is checked (format, then presence) before any run is deleted."""
    from backend.store.runs import check_key

    st = store(args)
    for k in args.keys:
        check_key(k)
    missing = [k for k in dict.fromkeys(args.keys) if not st.path(k).exists()]
    if missing:
        raise InputError(f"no run {', '.join(missing)} in {args.cache_dir}: nothing deleted")
    from backend.pipeline.lineage import confirm_orphaning

    confirm_orphaning(st, args.keys, args.yes)  # asks (or refuses) before orphaning branches
    for k in dict.fromkeys(args.keys):
        st.delete(k)
    return 0
