"""``raml serve --read-only`` for real: the command starts the app, and Chromium sees the run's
linked views on Explore and the library on Runs without one control that changes the server (no
compute, branch, delete, import or jobs panel); the cache's files stay as they were. One server
of its own (it must be read-only), the session's browser; waits are conditions with deadlines."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.app_server import CHROMIUM, FIRST_PAGE_MS, raml_serve

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt install chromium)")
HIDDEN = (
    "importance_compute",
    "exact_compute",
    "exact_landscape_compute",
    "branch_here_open",
    "branch_start",
    "lens_grid_compute",
    "explore_dl_figures",
    "jobs_panel",
    "runs_delete",
    "runs_import_file",
    "runs_new_start",
)
NOTE = "Read-only server"


def _files(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(("index.sqlite", "jobs.sqlite"))
    }


def _absent(page) -> list[str]:
    return [k for k in HIDDEN if page.locator(f".st-key-{k}").count()]


def test_read_only_server_shows_runs_without_a_control_that_changes_it(tiny_run, browser, tmp_path):
    store, key = tiny_run
    root = tmp_path / "cache"
    shutil.copytree(store.root, root, ignore=shutil.ignore_patterns("locks", "tmp", "jobs.sqlite"))
    before = _files(root)
    with raml_serve(root, "--read-only", timeout=FIRST_PAGE_MS / 1000) as url:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"{url}/?run={key}&step=2", wait_until="domcontentloaded")
        sidebar = page.locator('[data-testid="stSidebar"]')
        # the note is the script's last element: once it is there, every panel above it is drawn
        sidebar.get_by_text(NOTE).first.wait_for(timeout=FIRST_PAGE_MS)
        page.get_by_text("Branches", exact=True).first.wait_for()
        assert page.locator("#raml-step-label").inner_text().startswith("Step 2 /")
        assert page.locator(".st-key-explore_dl_tables button").count() >= 1  # reading is still there
        assert _absent(page) == []

        page.goto(f"{url}/runs", wait_until="domcontentloaded")
        sidebar.get_by_text(NOTE).first.wait_for(timeout=FIRST_PAGE_MS)
        page.locator(".st-key-runs_open button").wait_for()
        assert page.get_by_role("tab").count() == 0  # no New run, no Import
        assert _absent(page) == []
        page.close()
    assert _files(root) == before
