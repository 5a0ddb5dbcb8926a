"""RaML Explorer backend: plain importable Python (no Streamlit). Layers: docs/architecture.md.

Importing ``backend`` sets ``OMP_WAIT_POLICY=PASSIVE`` (unless the environment names a policy)
before anything of the project loads torch: every entry point (``raml``, ``python -m backend``,
the app under ``streamlit run``, the job worker) imports this first, and libgomp reads the
policy only once, when torch loads (docs/threads.md). It also fixes glibc's mmap threshold, so
memory the engine frees goes back to the system (``backend.engine.heap``).
"""

__version__ = "0.2.0"

from backend.engine.heap import keep_heap_small as _keep_heap_small  # noqa: E402
from backend.engine.threads import set_wait_policy as _set_wait_policy  # noqa: E402

_set_wait_policy()
_keep_heap_small()
