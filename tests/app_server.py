"""Helpers to run the real app for browser tests and the UI benchmark: a free port, a
``streamlit run`` subprocess on 127.0.0.1, and Debian's Chromium via playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
# Deadlines, not sleeps: a wait returns as soon as its condition holds. A fresh server's first
# page imports the app cold, and a busy 2-core machine (the suite, other work, CPU burners) can
# take minutes for it.
FIRST_PAGE_MS = 240_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_app(cache_dir: str | Path, port: int | None = None, timeout: float = 90.0):
    """Start ``streamlit run app/main.py`` against ``cache_dir``; yields the base URL."""
    port = port or free_port()
    argv = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "app" / "main.py"),
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    with _server(argv, cache_dir, port, timeout) as url:
        yield url


@contextmanager
def raml_serve(cache_dir: str | Path, *args: str, port: int | None = None, timeout: float = 90.0):
    """Start ``raml serve ARGS`` (``python -m backend serve``) against ``cache_dir``; yields the base URL."""
    port = port or free_port()
    argv = [sys.executable, "-m", "backend", "--cache-dir", str(cache_dir), "serve", "--port", str(port), *args]
    with _server(argv, cache_dir, port, timeout) as url:
        yield url


@contextmanager
def _server(argv: list[str], cache_dir: str | Path, port: int, timeout: float):
    env = dict(os.environ, RAML_CACHE_DIR=str(cache_dir), PYTHONUNBUFFERED="1")
    log_path = Path(cache_dir).parent / f"streamlit-{port}.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start within {timeout:.0f} s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


# In-page probe: is the Explore view fully at boundary `want.step`? The step label, the
# highlighted text, and the cursor marks the browser draws over the loss chart, lens heatmap and
# path chart (app/stepper.py); the loss chart's line must sit at progress `want.x`.
VIEW_AT_JS = """
(want) => {
  const label = document.getElementById('raml-step-label');
  if (!label || !label.textContent.startsWith(want.label)) return false;
  const cur = document.getElementById('raml-current');
  if (want.step > 0 ? !(cur && cur.dataset.step === String(want.step)) : cur !== null) return false;
  for (const k of ['explore_loss_chart', 'explore_lens_chart', 'explore_path_chart']) {
    const gd = document.querySelector('.st-key-' + k + ' .js-plotly-plot');
    if (!gd || gd.dataset.ramlCursor !== String(want.step)) return false;
  }
  const loss = document.querySelector('.st-key-explore_loss_chart .js-plotly-plot');
  const mark = loss.querySelector('.raml-cursor-mark');
  const xa = loss._fullLayout.xaxis;
  return !!mark && Math.abs(parseFloat(mark.style.left) - (xa._offset + xa.l2p(want.x) - 1)) < 1.5;
}
"""

# Click "Next" and resolve with the milliseconds until the whole view shows boundary `want`.
TIME_NEXT_JS = """
async (want) => {
  const isAt = %s;
  const t0 = performance.now();
  document.querySelector('.st-key-explore_next button').click();
  return await new Promise((resolve, reject) => {
    const limit = t0 + 20000;
    function check() {
      if (isAt(want)) return resolve(performance.now() - t0);
      if (performance.now() > limit) return reject(new Error('view did not update'));
      requestAnimationFrame(check);
    }
    requestAnimationFrame(check);
  });
}
""" % VIEW_AT_JS.strip()
