"""User-facing errors: each one carries a one-line message naming what is wrong and where.

The CLI prints ``str(error)`` and exits non-zero; the app shows it with ``st.error``.
Anything that is not a ``RamlError`` is a bug and is reported as such.
"""


class RamlError(Exception):
    """Base class for errors caused by the user's input or environment, not by a bug."""


class ModelLoadError(RamlError):
    """The model could not be found, is unsafe to load, or is not a causal LM."""


class InputError(RamlError):
    """A question, answer, trajectory or setting is invalid."""


class ContextTooLongError(InputError):
    """Prompt + trajectory + template + answer exceed the model's context window."""


class CacheError(RamlError):
    """A cache entry is missing, corrupt, of an old schema, or the cache is not writable."""


class RunNotFoundError(CacheError):
    """No run with that key is in the cache."""


class OutOfMemoryError(RamlError):
    """Even the smallest probe chunk does not fit in memory."""


class WriteError(InputError):
    """A file could not be written (or may not be replaced): the message names the path and why."""


class ReadOnlyError(RamlError):
    """This process is a read-only server (``raml serve --read-only``): the action that changes the
    server (a job, a write, a delete, a server path) is refused (``backend.readonly``)."""
