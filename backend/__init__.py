"""RaML Explorer backend: plain importable Python (no Streamlit). Layers: docs/architecture.md.

Importing ``backend`` sets ``OMP_WAIT_POLICY=PASSIVE`` (unless the environment names a policy)
before anything of the project loads torch: every entry point (``raml``, ``python -m backend``,
the app under ``streamlit run``, the job worker) imports this first, and libgomp reads the
policy only once, when torch loads (docs/threads.md).
"""

__version__ = "0.2.0"

from backend.engine.threads import set_wait_policy as _set_wait_policy  # noqa: E402

_set_wait_policy()
