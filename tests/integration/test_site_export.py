"""``raml export --site DIR``: the folder it writes, the runs it selects, what it refuses (issue 24).
In real Chromium: tests/browser/test_site.py. Two tiny-model runs in a private cache."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from conftest import SAMPLE_TRAJECTORY

from backend import cli
from backend.errors import InputError
from backend.plots import fill, step_card
from backend.plots.run_page import path_data
from backend.store.runs import RunStore


@pytest.fixture(scope="module")
def two_runs(tiny_run, tiny_llama, tmp_path_factory):
    """A copy of the tiny run's cache plus a second run (another question, a wrong reference):
    (store, tiny key, second key)."""
    from backend.pipeline.run import RunRequest, run_question

    src, key = tiny_run
    store = RunStore(tmp_path_factory.mktemp("site_cache") / "cache")
    shutil.copytree(src.root / "runs" / key, store.root / "runs" / key, ignore=shutil.ignore_patterns("derived"))
    store.reconcile()
    req = RunRequest(
        question="How many apples are left after eating two of eight?",
        answer="99",
        trajectory=SAMPLE_TRAJECTORY,
        model=tiny_llama.name,
        label="second",
    )
    other = run_question(req, store, loaded=tiny_llama).key
    return store, key, other


def _site(store, out, *args) -> int:
    return cli.main(["--cache-dir", str(store.root), "export", "--site", str(out), "--quiet", *args])


def test_site_folder_holds_index_pages_and_plotly_once(two_runs, tmp_path, capsys):
    import plotly

    store, key, other = two_runs
    out = tmp_path / "site"
    assert _site(store, out) == 0
    assert capsys.readouterr().out.strip() == str(out / "index.html")
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted([f"{key}.html", f"{other}.html"])
    shipped = plotly.__path__[0] + "/package_data/plotly.min.js"
    assert (out / "assets" / "plotly.min.js").read_bytes() == open(shipped, "rb").read()
    marker = json.loads((out / "raml-site.json").read_text())
    assert sorted(marker["runs"]) == sorted([key, other]) and marker["plotlyjs"] == "inline"
    index = (out / "index.html").read_text()
    assert f'href="runs/{key}.html"' in index and f'href="runs/{other}.html"' in index
    for page in [out / "index.html", *(out / "runs").iterdir(), out / "assets" / "raml-run.js"]:
        text = page.read_text()
        assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']?(https?:)?//""", text), page  # nothing external
        assert "fetch(" not in text and "XMLHttpRequest" not in text, page  # opens from file://
    page = (out / "runs" / f"{key}.html").read_text()
    assert page.count("plotly.min.js") == 1 and '<script src="../assets/plotly.min.js"' in page
    assert '<script src="../assets/raml-run.js"' in page and 'href="../index.html"' in page
    assert len(page) < 1_000_000  # the data only: plotly.js is in assets/ once


def test_site_selects_by_prefix_and_filter_and_refuses_a_foreign_folder(two_runs, tmp_path, capsys):
    from backend.export.site import select_runs

    store, key, other = two_runs
    assert select_runs(store, [key[:6]]) == [key]
    assert select_runs(store, ["label=second"]) == [other]
    assert select_runs(store, [key[:6], "label=second"]) == []  # keys name runs, filters narrow them
    assert sorted(select_runs(store, [])) == sorted([key, other])
    out = tmp_path / "site"
    assert _site(store, out, "q=apples are left") == 0
    assert [p.stem for p in (out / "runs").iterdir()] == [other]
    assert _site(store, out, key[:8]) == 0  # a site written before is replaced, its stale page removed
    assert [p.stem for p in (out / "runs").iterdir()] == [key]
    capsys.readouterr()
    assert _site(store, out, "label=nobody") == cli.EXIT_INPUT
    assert "no run matches" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert _site(store, foreign) == cli.EXIT_INPUT
    assert "is not empty" in capsys.readouterr().err and sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    with pytest.raises(InputError, match="inline or cdn"):
        from backend.export.site import export_site

        export_site(store, [key], tmp_path / "x", plotlyjs="remote")


def test_site_with_cdn_ships_no_plotly(two_runs, tmp_path):
    store, key, _ = two_runs
    out = tmp_path / "cdn"
    assert _site(store, out, key, "--cdn") == 0
    assert not (out / "assets" / "plotly.min.js").exists()
    page = (out / "runs" / f"{key}.html").read_text()
    assert re.search(r'<script src="https://cdn\.plot\.ly/plotly-[0-9.]+\.min\.js"', page)


def test_export_of_one_key_is_unchanged_and_several_need_site(two_runs, tmp_path, capsys):
    store, key, other = two_runs
    assert cli.main(["--cache-dir", str(store.root), "export", key, other, "--html", str(tmp_path / "x.html")]) == 2
    assert "--site" in capsys.readouterr().err
    assert cli.main(["--cache-dir", str(store.root), "export", "--site", str(tmp_path / "s"), "--html", "x"]) == 2


def test_run_view_has_the_step_card_and_the_fidelity_line_when_cached(two_runs):
    """Every boundary's step card, and the fidelity line from a fidelity block (as the exact update
    caches it) without computing one."""
    from backend.plots.run_page import build_run_view, run_body_html

    store, key, _ = two_runs
    run = store.open(key)
    fidelity = {  # the block backend.analysis.exact.run.fidelity writes
        "initial_loss": 5.0,
        "final_loss": 3.0,
        "descent": 2.0,
        "exact": {"fraction": 1.0, "loss": 3.0},
        "exact_top_k": {"1": {"layers": [2], "fraction": 0.5, "loss": 4.0}},
        "single_layer_proxy": {"0": {"fraction": 0.1, "loss": 4.8}},
    }
    view = build_run_view(run, store=store, fidelity=fidelity)
    n = len(run.steps)
    cards = [fill.html_at(view.data["card"], b) for b in range(n + 1)]  # the card sent once as a template
    assert fill.n_boundaries(view.data["card"]) == n + 1 and "Before any thinking" in cards[0]
    assert "<b>Step 2</b>" in cards[2] and cards == step_card.all_cards(run, path_data(run, store)[2])
    body = run_body_html(view)
    assert 'data-raml="fidelity"' in body and "Fraction of the descent" in body and "full exact 100%" in body
    assert view.data["figures"]["importance"] is None and 'data-raml="importance"' not in body


def test_site_export_loads_no_model_library(two_runs, tmp_path):
    """The site is read from the cache: a real ``raml export --site`` never imports torch or
    transformers (``sys.modules`` of a subprocess, as tests/integration/test_cli_startup.py)."""
    from tests.integration.test_cli_startup import loaded_modules

    store, _, _ = two_runs
    rc, heavy, output = loaded_modules(
        "--cache-dir", str(store.root), "export", "--site", str(tmp_path / "s"), "--quiet"
    )
    assert rc == 0, output
    assert not {"torch", "transformers"} & set(heavy), heavy
