"""Explore's download buttons, pressed in a real Chromium: the tables zip opens in pandas and
the figures zip holds PNGs of the exported size (issue 12 item 6)."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from backend.plots import exports
from tests.app_server import CHROMIUM, EXPLORE_LIVE_JS, FIRST_PAGE_MS

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt install chromium)")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def test_explore_downloads_tables_and_figures(explore_app, browser):
    url, key, run = explore_app
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page.goto(f"{url}/?run={key}", wait_until="domcontentloaded")
    page.wait_for_function(EXPLORE_LIVE_JS, timeout=FIRST_PAGE_MS)  # not during the page's resize rerun
    button = page.locator(".st-key-explore_dl_tables button").first
    button.wait_for(timeout=FIRST_PAGE_MS)
    button.scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "explore_downloads.png"))
    with page.expect_download(timeout=180_000) as tables:
        button.click()
    tables_zip = Path(tables.value.path()).read_bytes()
    with page.expect_download(timeout=180_000) as figures:
        page.locator(".st-key-explore_dl_figures button").first.click()
    figures_zip = Path(figures.value.path()).read_bytes()
    page.close()
    with zipfile.ZipFile(io.BytesIO(tables_zip)) as zf:
        tokens = pd.read_csv(io.BytesIO(zf.read("tokens.csv")))
        assert sorted(zf.namelist()) == ["lens.csv", "steps.csv", "tokens.csv"]
    assert tokens["loss"].to_numpy() == pytest.approx(run.tokens["loss"].to_numpy(), rel=1e-6)
    with zipfile.ZipFile(io.BytesIO(figures_zip)) as zf:
        assert sorted(zf.namelist()) == ["lens.png", "loss.png", "path.png"]
        png = zf.read("loss.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (exports.FIGURE_WIDTH * 2, exports.FIGURE_HEIGHT * 2)
