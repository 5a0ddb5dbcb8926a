"""The tuned lens through the queue and the CLI (docs/lens.md): ``raml lens train`` (a ``lens_train``
job) stores exactly what the direct call stores; ``raml lens grid`` (a ``lens_grid`` job) equals the
engine read through the stored lens, and ``show --json`` carries both grids; bad input is one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from backend.analysis.lens.grid import lens_table, load_tuned_grid
from backend.analysis.lens.train import LensBudget, train_lens
from backend.cli import main
from backend.engine import provider
from backend.errors import InputError
from backend.jobs import submit
from backend.store import lenses
from backend.store.runs import RunStore

BUDGET = dict(tokens=256, epochs=1, generations=False)  # one optimiser step on the tiny model


@pytest.fixture()
def run_copy(tiny_run, tmp_path, tiny_llama):
    src, key = tiny_run
    store = RunStore(tmp_path / "cache")
    shutil.copytree(src.root / "runs" / key, store.root / "runs" / key, ignore=shutil.ignore_patterns("derived"))
    store.reconcile()
    provider.register(tiny_llama)
    yield store, key
    provider.unregister(tiny_llama.name)


def test_the_lens_train_job_stores_what_the_direct_call_stores(run_copy, tmp_path, tiny_llama, capsys):
    store, _key = run_copy
    code = main(["--cache-dir", str(store.root), "lens", "train", "--model", tiny_llama.name, "--tokens", "256",
                 "--epochs", "1", "--no-generations"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "KL logit" in out and out.count("\n") >= tiny_llama.model.config.num_hidden_layers + 3
    via_job = lenses.load_lens(store.root, tiny_llama.fingerprint)

    direct_store = RunStore(tmp_path / "direct")
    shutil.copytree(store.root / "runs", direct_store.root / "runs", dirs_exist_ok=True)  # the same cached trajectories
    direct_store.reconcile()
    train_lens(direct_store, tiny_llama, LensBudget(tokens=256, epochs=1, generations=False))
    direct = lenses.load_lens(direct_store.root, tiny_llama.fingerprint)
    assert via_job.arrays.keys() == direct.arrays.keys()
    for name in direct.arrays:
        assert np.array_equal(via_job.arrays[name], direct.arrays[name]), name
    assert via_job.config["params_sha256"] == direct.config["params_sha256"]
    assert via_job.config["quality"] == direct.config["quality"]
    assert via_job.config["trained"]["tokens_by_source"].keys() == {
        "assets"
    }  # 256 tokens: the bundled text comes first
    L = tiny_llama.model.config.num_hidden_layers
    assert len(via_job.config["quality"]["kl_tuned"]) == L and via_job.config["quality"]["kl_tuned"][-1] < 1e-6


def test_the_lens_grid_job_reads_the_run_through_the_stored_lens(run_copy, tiny_llama, capsys):
    from backend.analysis.importance.run import probe_request_for_run
    from backend.analysis.lens.use import tuned_lens_for
    from backend.engine.probe import analyze

    store, key = run_copy
    run = store.open(key)
    with pytest.raises(InputError, match="no tuned lens for") as err:
        lens_table(run, store, "tuned")
    assert "\n" not in str(err.value)
    train_lens(store, tiny_llama, LensBudget(**BUDGET))
    with pytest.raises(InputError, match="not computed yet"):
        lens_table(run, store, "tuned")
    assert main(["--cache-dir", str(store.root), "lens", "grid", key, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    lens = tuned_lens_for(store.root, tiny_llama)
    req = probe_request_for_run(run, tiny_llama.tokenizer)
    expected = analyze(tiny_llama.model, req, lens=lens)
    grid = load_tuned_grid(run, store)
    L = tiny_llama.model.config.num_hidden_layers
    assert np.array_equal(grid["nll"].to_numpy(np.float32), expected.lens_nll.reshape(-1))
    assert [r[3] for r in printed["rows"]] == grid["nll"].tolist()
    assert list(grid.columns) == list(run.lens.columns)
    # the last layer is the model's own readout in both (float32; the run's grid may come from a
    # process with other thread counts, so equal to rounding, not bit for bit)
    np.testing.assert_allclose(
        grid["nll"].to_numpy()[L - 1 :: L], run.lens["nll"].to_numpy()[L - 1 :: L], rtol=0, atol=1e-5
    )
    assert not np.allclose(grid["nll"], run.lens["nll"])

    assert main(["--cache-dir", str(store.root), "show", key, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [r["nll"] for r in shown["lens_grid"]["tuned"]] == grid["nll"].tolist()
    assert [r["nll"] for r in shown["lens_grid"]["logit"]] == run.lens["nll"].tolist()
    assert shown["tuned_lens"]["quality"]["kl_tuned"][-1] < 1e-6

    out = store.root.parent / "export"
    assert main(["--cache-dir", str(store.root), "export", key, "--format", "json", "--out", str(out)]) == 0
    exported = json.loads((out / "lens_tuned.json").read_text())
    assert [r["nll"] for r in exported] == pytest.approx(grid["nll"].tolist(), rel=1e-9)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"tokens": 10}, "tokens 10 must lie in 256..4194304"),
        ({"epochs": 0}, "epochs 0 must lie in 1..100"),
        ({"tokens": "many"}, "tokens must be an integer"),
        ({"layers": 3}, "unknown field 'layers'"),
    ],
)
def test_bad_lens_train_params_are_refused_at_submit_in_one_line(store, params, message):
    with pytest.raises(InputError, match=message) as err:
        submit(store, "lens_train", params)
    assert "\n" not in str(err.value) and "lens_train" in str(err.value)
