"""``raml serve [--read-only] [--host H] [--port P] [--base-path /raml]``: the app (what ``make run``
starts, without preparing the demo run) on the cache of ``--cache-dir``.

``--read-only`` makes it a server a lab can show its cache with (SECURITY.md): the same pages, where
every compute, import, delete, branch, edit and job control is hidden, and refused in the backend
too (``RAML_READ_ONLY=1``, read by ``backend.readonly`` at every job submit, run write or delete,
atomic write and server path; ``RAML_DATA_ROOTS=""``: no path on the server). Streamlit's own ways
for a visitor to change the server are turned off with it: uploads (``server.maxUploadSize 0``:
every file is refused before it is stored), run-on-save and the file watcher, static file serving;
XSRF protection stays on and error details stay hidden, whatever a config file says (flags beat
``.streamlit/config.toml``).

Light: nothing heavy is imported; the command replaces itself with ``python -m streamlit run
app/main.py`` (``--dry-run`` prints that command and the environment it sets instead).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from backend import readonly
from backend.errors import InputError

DEFAULT_PORT = 8501
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# always, as `make run` and .streamlit/config.toml have them: flags, so they hold from any folder
SAFE_FLAGS = {
    "server.headless": "true",
    "server.enableXsrfProtection": "true",
    "server.fileWatcherType": "none",
    "server.runOnSave": "false",
    "browser.gatherUsageStats": "false",
    "client.showErrorDetails": "none",
    "client.toolbarMode": "minimal",
}
# and on a read-only server: nothing a visitor sends is stored, no file of the server is served
READ_ONLY_FLAGS = {
    "server.maxUploadSize": "0",
    "server.allowRunOnSave": "false",
    "server.enableStaticServing": "false",
    "global.developmentMode": "false",
}


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="start the app (--read-only: a server to show the cache, changing nothing)")
    p.add_argument(
        "--read-only",
        action="store_true",
        help="hide and refuse every compute, import, delete, branch and job control (SECURITY.md)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: put a proxy in front)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--base-path", default="", help="URL path the app is served under behind a proxy, e.g. /raml")
    p.add_argument("--dry-run", action="store_true", help="print the streamlit command and environment, start nothing")
    p.set_defaults(func=cmd_serve)


def app_script() -> Path:
    """``app/main.py`` beside the ``backend`` package (a checkout or an installed wheel alike)."""
    return Path(__file__).resolve().parents[2] / "app" / "main.py"


def serve_plan(args) -> tuple[list[str], dict[str, str], Path]:
    """(argv, environment, working folder) of the Streamlit server ``args`` ask for."""
    if not 1 <= int(args.port) <= 65535:
        raise InputError(f"--port {args.port} is not a port (1 to 65535)")
    script = app_script()
    if not script.is_file():
        raise InputError(f"the app is not installed beside the backend ({script} is missing)")
    cache = Path(args.cache_dir).expanduser().resolve()
    read_only = bool(args.read_only) or readonly.is_read_only()
    if read_only and not (cache / "runs").is_dir():
        raise InputError(f"no cache at {cache} (no runs/ folder): a read-only server shows an existing cache")
    env = {"RAML_CACHE_DIR": str(cache)}
    flags = dict(SAFE_FLAGS)
    if read_only:
        env |= {readonly.ENV: "1", "RAML_DATA_ROOTS": ""}
        flags |= READ_ONLY_FLAGS
    flags |= {"server.address": str(args.host), "server.port": str(int(args.port))}
    if args.base_path.strip("/"):
        flags["server.baseUrlPath"] = args.base_path.strip("/")
    argv = [sys.executable, "-m", "streamlit", "run", str(script)]
    for name, value in flags.items():
        argv += [f"--{name}", value]
    return argv, env, script.parent.parent  # the project folder: its .streamlit/config.toml (theme) applies


def cmd_serve(args) -> int:
    argv, env, cwd = serve_plan(args)
    if args.dry_run:
        for name, value in env.items():
            print(f"{name}={shlex.quote(value)}")
        print(f"cd {shlex.quote(str(cwd))} && {shlex.join(argv)}")
        return 0
    if args.host not in LOOPBACK:
        print(
            f"warning: listening on {args.host}: anyone who can reach port {args.port} can use the app; "
            "put it behind a reverse proxy with authentication (SECURITY.md)",
            file=sys.stderr,
        )
    os.environ.update(env)
    os.chdir(cwd)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)  # Streamlit replaces this process: signals reach it directly
    return 0  # pragma: no cover  (execv does not return)
