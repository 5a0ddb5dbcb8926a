"""``raml rm KEY... [--yes]``: delete runs, all or nothing (light: no torch)."""

from __future__ import annotations

from backend.commands.common import store
from backend.errors import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser("rm", help="delete runs")
    p.add_argument("keys", nargs="+", help="run keys or unique prefixes (at least 4 characters)")
    p.add_argument("--yes", action="store_true", help="delete even if branches of it would be orphaned")
    p.set_defaults(func=cmd_rm)


def cmd_rm(args) -> int:
    """All or nothing: every key or prefix is resolved (format, ambiguity, presence) before any
    run is deleted."""
    from backend.errors import RunNotFoundError
    from backend.store.keys import normalize_prefix

    st = store(args)
    for k in args.keys:
        normalize_prefix(k)  # a malformed or too short one is named before any lookup
    keys, missing = [], []
    for k in dict.fromkeys(args.keys):
        try:
            keys.append(st.resolve(k))
        except RunNotFoundError:
            missing.append(k)
    if missing:
        raise InputError(f"no run {', '.join(missing)} in {args.cache_dir}: nothing deleted")
    keys = list(dict.fromkeys(keys))
    from backend.pipeline.lineage import confirm_orphaning

    confirm_orphaning(st, keys, args.yes)  # asks (or refuses) before orphaning branches
    for k in keys:
        st.delete(k)
    return 0
