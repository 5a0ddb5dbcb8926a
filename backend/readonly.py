"""Read-only mode of a shared server (``raml serve --read-only``; SECURITY.md).

One process-wide switch: the environment variable ``RAML_READ_ONLY`` (``1``, ``true``, ``yes``,
``on``), which ``raml serve --read-only`` sets before Streamlit starts. It is read at every call,
never from a page, a URL or the session: a visitor cannot turn it off. Every backend path that
would change the server, or open a path on it, asks :func:`check` first and is refused with one
line (:class:`~backend.errors.ReadOnlyError`):

- the job queue (``backend.jobs.queue``): ``submit``, ``cancel``, ``resume`` and ``claim`` (no job is
  queued, stopped or run), and no worker thread is started;
- the run store (``backend.store.runs``): ``write`` and ``delete`` (and no clean-up of ``tmp/``);
- every atomic write (``backend.store.atomic``: derived data, tuned lenses, exports) and the tuned
  lens store's ``save_lens`` / ``remove_lens``;
- derived data (``backend.store.derived``): ``save_derived`` writes nothing (the page still shows what
  it computed, as when a write fails) and there is no exports folder;
- server paths (``backend.io``): ``data_roots`` is empty, ``confine`` and the readers' server-path
  mode (``iter_questions(..., reveal=False)``) refuse.

What stays writable: the SQLite index of runs (``index.sqlite``, derived from the run folders and
kept in step with them on every listing) and the queue's tables when ``jobs.sqlite`` is new; nothing
a visitor chooses is written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from backend.errors import ReadOnlyError

ENV = "RAML_READ_ONLY"
_ON = ("1", "true", "yes", "on")


def is_read_only(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process is a read-only server (``RAML_READ_ONLY``)."""
    return environ.get(ENV, "").strip().lower() in _ON


def refusal(action: str) -> str:
    """The one line a refused ``action`` ("starting jobs", "deleting runs", ...) is told with."""
    return f"this server is read-only: {action} is turned off"


def check(action: str) -> None:
    """Raise :class:`ReadOnlyError` (one line naming ``action``) when this process is read-only."""
    if is_read_only():
        raise ReadOnlyError(refusal(action))
