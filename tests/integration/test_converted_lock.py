"""One GGUF conversion at a time across processes (backend/engine/converted.py): a second loader
waits for the first one's copy instead of de-quantizing the same file again (two pytest workers, the
app's worker beside a CLI batch)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

from backend.engine import converted

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from backend.engine import converted
    with converted.conversion_lock(Path(sys.argv[1])):
        print("holding", flush=True)
        sys.stdin.readline()  # until the test says so
    """
)


def _holder(path, root):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        cwd=root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def test_a_second_process_waits_for_the_first_conversion(tmp_path, caplog):
    from tests.conftest import ROOT

    path = tmp_path / "models" / "abcdef12-float32"
    holder = _holder(path, ROOT)
    try:
        with caplog.at_level(logging.INFO, logger=converted.__name__):
            with converted.conversion_lock(path, timeout=0.2):  # held elsewhere: gives up waiting
                pass
        assert "without the lock" in caplog.text
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        assert holder.wait(timeout=60) == 0
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=converted.__name__):
        with converted.conversion_lock(path, timeout=60):  # released: taken at once
            pass
    assert "without the lock" not in caplog.text


def test_no_lock_possible_still_loads(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.INFO, logger=converted.__name__):
        with converted.conversion_lock(blocker / "models" / "abcdef12-float32"):
            entered = True
    assert entered and "without the lock" in caplog.text
    with converted.conversion_lock(None):  # the cache is off: nothing to lock
        pass
