"""Issue 7, faults: processes killed mid-run, damaged cache files, concurrent writers, out of
memory while probing, a full or unwritable disk. Nothing is lost, nothing half-written is
ever shown, and the index always agrees with the run directories.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
import torch
from _reliability_support import (
    ROOT,
    cache_state,
    cli_env,
    one_error_line,
    save_tiny_model,
    start_cli,
    wait_for_line,
)
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY

from backend import cli
from backend.engine.architecture import default_proxy_layers, locate
from backend.engine.probe import ProbeRequest, analyze
from backend.engine.trajectory import RAML_TEMPLATE, build_prompt, encode, encode_with_offsets, segment
from backend.errors import CacheError
from backend.pipeline.run import RunRequest, run_question
from backend.store.runs import RunStore


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, smol_tokenizer):
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny", smol_tokenizer)


@pytest.fixture(scope="module")
def trajectory_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "trajectory.txt"
    path.write_text(SAMPLE_TRAJECTORY)
    return path


def _run_args(stage: str, model_dir, trajectory_file) -> list[str]:
    common = ["run", "--question", SAMPLE_QUESTION, "--answer", "6", "--model", str(model_dir), "--quiet"]
    if stage == "generate":  # sampled so that this random model writes some text
        return common + ["--max-new-tokens", "24", "--temperature", "1.0", "--seed", "1"]
    return common + ["--trajectory-file", str(trajectory_file)]


# ----------------------------------------------------------------------------- SIGKILL
@pytest.mark.slow
@pytest.mark.parametrize("stage", ["generate", "analyze", "write", "index"])
def test_sigkill_leaves_no_half_entry_and_rerun_completes(tmp_path, model_dir, trajectory_file, stage, capsys):
    """Kill a real ``python -m backend run`` at a stage (held there by RAML_TEST_PAUSE_AT); the
    rerun is the same command, run in this process (the kill is what needs a process of its own;
    a rerun in a real process is test_two_processes_writing_one_run_give_one_entry's)."""
    cache = tmp_path / "cache"
    args = _run_args(stage, model_dir, trajectory_file)
    proc = start_cli(cache, *args, RAML_TEST_PAUSE_AT=stage)
    try:
        wait_for_line(proc, f"RAML_TEST_PAUSED {stage}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    state = cache_state(cache)
    if stage == "index":  # killed between the rename and the index row: the run is complete
        (key,) = state["runs"]
        assert state["indexed"] == set() and state["tmp"] == []
        store = RunStore(cache)
        assert store.list_runs()["key"].tolist() == [key]  # reconcile() repairs the index
        store.open(key)
    else:
        assert state["runs"] == state["indexed"] == state["requests"] == set()
        if stage == "write":  # the killed writer's temp dir, complete but never published
            (leftover,) = state["tmp"]
            assert (cache / "tmp" / leftover / "meta.json").is_file()
        else:
            assert state["tmp"] == []
        store = RunStore(cache)  # opening the cache keeps recent temp dirs (a writer may be alive)
        assert len(cache_state(cache)["tmp"]) == len(state["tmp"])
        assert store.cleanup_tmp(older_than_s=0) == len(state["tmp"])
        assert store.list_runs().empty

    capsys.readouterr()
    code = cli.main(["--cache-dir", str(cache), *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    key = out.strip().splitlines()[-1]
    state = cache_state(cache)
    assert state["runs"] == state["indexed"] == state["requests"] == {key} and state["tmp"] == []
    run = RunStore(cache).open(key)  # checksums verified
    assert run.meta["answer"] == "6" and len(run.tokens) == run.meta["summary"]["n_tokens"] + 1


# ----------------------------------------------------------------------------- concurrency
@pytest.mark.slow
def test_two_processes_writing_one_run_give_one_entry(tmp_path, model_dir, trajectory_file):
    cache = tmp_path / "cache"
    args = _run_args("write", model_dir, trajectory_file)
    first = start_cli(cache, *args, RAML_TEST_PAUSE_AT="write", RAML_TEST_PAUSE_SECONDS="10")
    second = None
    try:
        wait_for_line(first, "RAML_TEST_PAUSED write")  # holds the run's lock, files in tmp/
        second = start_cli(cache, *args, RAML_TEST_PAUSE_AT="write", RAML_TEST_PAUSE_SECONDS="10")
        reader = RunStore(cache)  # the app reading meanwhile sees nothing half-written
        assert reader.list_runs().empty and cache_state(cache)["runs"] == set()
        out1, err1 = first.communicate(timeout=300)
        out2, err2 = second.communicate(timeout=300)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    key = out1.strip().splitlines()[-1]
    assert out2.strip().splitlines()[-1] == key
    assert "computed" in err1 and "cache hit" in err2  # the second waited for the first's lock
    state = cache_state(cache)
    assert state["runs"] == state["indexed"] == {key} and state["tmp"] == []
    RunStore(cache).open(key)


@pytest.mark.slow
def test_eight_concurrent_runs_keep_the_index_consistent(tmp_path, model_dir):
    cache = tmp_path / "cache"
    n = 8
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "_reliability_support.py"),
            "concurrent",
            str(cache),
            str(model_dir),
            str(n),
        ],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["exitcodes"] == [0] * n
    assert [error for _, _, error in report["outcomes"]] == [None] * n, report["outcomes"]
    keys = {key for _, key, _ in report["outcomes"]}
    assert len(keys) == n
    assert report["read_errors"] == []  # a reader listing and opening runs meanwhile never failed
    state = cache_state(cache)
    assert state["runs"] == state["indexed"] == state["requests"] == keys and state["tmp"] == []
    con = sqlite3.connect(cache / "index.sqlite")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("SELECT COUNT(*) FROM runs").fetchone() == (n,)
    finally:
        con.close()
    store = RunStore(cache)
    assert sorted(store.open(k).meta["question"] for k in keys) == sorted(
        f"Question number {i}: how many apples are left?" for i in range(n)
    )


# ----------------------------------------------------------------------------- damaged cache files
CUTS = "steps"  # step boundaries only: every table and tensor is written, at a fraction of the cost


@pytest.fixture(scope="module")
def pristine_cache(tmp_path_factory, tiny_llama):
    """A cache with two real runs of the tiny model: A (answer 6) and B (answer 13)."""
    root = tmp_path_factory.mktemp("pristine") / "cache"
    store = RunStore(root)
    keys = {}
    for name, answer in (("A", "6"), ("B", "13")):
        req = RunRequest(question=SAMPLE_QUESTION, answer=answer, trajectory=SAMPLE_TRAJECTORY, cuts=CUTS)
        keys[name] = run_question(req, store, loaded=tiny_llama).key
    return root, keys


@pytest.fixture()
def damaged_copy(tmp_path, pristine_cache):
    root, keys = pristine_cache
    copy = tmp_path / "cache"
    shutil.copytree(root, copy)
    return RunStore(copy), keys


def _truncate(path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _edit_meta(path, change):
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {  # name: (damage(run_dir), words the error must contain, also caught without checksums?)
    "truncated-tokens-parquet": (lambda d: _truncate(d / "tokens.parquet"), "tokens.parquet"),
    "truncated-steps-parquet": (lambda d: _truncate(d / "steps.parquet"), "steps.parquet"),
    "truncated-lens-parquet": (lambda d: _truncate(d / "lens.parquet"), "lens.parquet"),
    "truncated-safetensors": (lambda d: _truncate(d / "tensors.safetensors", 0.9), "tensors.safetensors"),
    "missing-safetensors": (lambda d: (d / "tensors.safetensors").unlink(), "tensors.safetensors is missing"),
    "bitflip-safetensors": (
        lambda d: _flip_last_byte(d / "tensors.safetensors"),
        "tensors.safetensors does not match its checksum",
    ),
    "truncated-meta": (lambda d: _truncate(d / "meta.json"), "meta.json is unreadable"),
    "meta-not-an-object": (lambda d: (d / "meta.json").write_text("[1, 2]"), "meta.json is not a JSON object"),
    "meta-field-removed": (
        lambda d: _edit_meta(d / "meta.json", lambda m: m.pop("summary")),
        "meta.json field 'summary'",
    ),
    "meta-checksum-edited": (
        lambda d: _edit_meta(d / "meta.json", lambda m: m["checksums"].update({"lens.parquet": "0" * 64})),
        "lens.parquet does not match its checksum",
    ),
    "old-schema": (lambda d: _edit_meta(d / "meta.json", lambda m: m.update(schema_version=0)), "schema version 0"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_entry_is_reported_others_survive_and_force_recomputes(damaged_copy, tiny_llama, capsys, damage):
    store, keys = damaged_copy
    damage_fn, words = DAMAGE[damage]
    a_dir, b_dir = store.path(keys["A"]), store.path(keys["B"])
    b_files = {p.name: p.read_bytes() for p in b_dir.iterdir()}
    damage_fn(a_dir)

    with pytest.raises(CacheError) as reported:
        store.open(keys["A"])
    message = str(reported.value)
    assert words in message and keys["A"] in message and "\n" not in message
    code = cli.main(["--cache-dir", str(store.root), "show", keys["A"]])
    assert code == cli.EXIT_INPUT and words in one_error_line(capsys.readouterr().err)

    assert store.open(keys["B"]).key == keys["B"]  # other runs unaffected
    assert keys["B"] in store.list_runs()["key"].tolist()

    req = RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, cuts=CUTS)
    outcome = run_question(req, store, loaded=tiny_llama, force=True)
    assert outcome.key == keys["A"] and not outcome.cached
    repaired = store.open(keys["A"])
    assert repaired.meta["answer"] == "6" and len(repaired.tensor("hidden")) == len(repaired.steps) + 1
    assert {p.name: p.read_bytes() for p in b_dir.iterdir()} == b_files
    state = cache_state(store.root)
    assert state["runs"] == state["indexed"] == set(keys.values()) and state["tmp"] == []


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_plain_rerun_recomputes_damage_it_can_see_cheaply(damaged_copy, tiny_llama, damage):
    """Damage that changes a file's size or meta.json's structure is recomputed by an ordinary
    rerun; a same-size bit flip or an edited checksum needs ``--force`` (only hashing sees it)."""
    store, keys = damaged_copy
    DAMAGE[damage][0](store.path(keys["A"]))
    req = RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, cuts=CUTS)
    outcome = run_question(req, store, loaded=tiny_llama)
    assert outcome.key == keys["A"]
    if damage in ("bitflip-safetensors", "meta-checksum-edited"):
        assert outcome.cached
        with pytest.raises(CacheError, match="checksum"):
            store.open(keys["A"])
    else:
        assert not outcome.cached
        store.open(keys["A"])


@pytest.mark.parametrize("damage", [d for d in DAMAGE if d.startswith("truncated-") and d != "truncated-meta"])
def test_ls_marks_a_run_with_a_truncated_file_damaged(damaged_copy, capsys, damage):
    """Issue 27: ``ls`` said "ok" for a run whose parquet was cut short (it looked only at names)."""
    store, keys = damaged_copy
    damage_fn, name = DAMAGE[damage]
    damage_fn(store.path(keys["A"]))
    runs = store.list_runs().set_index("key")
    assert runs.loc[keys["A"], "status"] == "damaged" and f"{name} is truncated" in runs.loc[keys["A"], "cause"]
    assert runs.loc[keys["B"], "status"] == "ok"
    assert cli.main(["--cache-dir", str(store.root), "ls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(keys["A"][:12] in line and "damaged" in line for line in lines), lines


def test_parquet_damage_is_named_even_without_checksums(damaged_copy):
    store, keys = damaged_copy
    _truncate(store.path(keys["A"]) / "steps.parquet")
    with pytest.raises(CacheError, match=r"steps\.parquet is unreadable"):
        store.open(keys["A"], verify=False)
    _truncate(store.path(keys["B"]) / "tensors.safetensors", 0.9)
    with pytest.raises(CacheError, match=r"tensors\.safetensors is unreadable"):
        store.open(keys["B"], verify=False)


def test_tensor_file_damaged_after_open_raises_cache_error(damaged_copy):
    store, keys = damaged_copy
    run = store.open(keys["A"])
    _truncate(run.path / "tensors.safetensors", 0.9)
    for read in (lambda: run.tensor("hidden"), lambda: run.hidden_layer(0), run.tensor_names):
        with pytest.raises(CacheError, match="tensors.safetensors is unreadable"):
            read()


def test_damaged_index_is_rebuilt_from_the_runs(damaged_copy):
    store, keys = damaged_copy
    (store.root / "index.sqlite").write_bytes(b"this is not a database " * 200)
    for suffix in ("-wal", "-shm"):
        (store.root / f"index.sqlite{suffix}").unlink(missing_ok=True)
    rebuilt = RunStore(store.root)
    assert sorted(rebuilt.list_runs()["key"]) == sorted(keys.values())
    assert list(store.root.glob("index.sqlite.damaged-*"))  # kept for inspection, not deleted


# ----------------------------------------------------------------------------- out of memory
def _probe_request(loaded) -> ProbeRequest:
    tok = loaded.tokenizer
    text = SAMPLE_TRAJECTORY
    ids, offsets = encode_with_offsets(tok, text)
    return ProbeRequest(
        prompt_ids=encode(tok, build_prompt(tok, SAMPLE_QUESTION, think=False)),
        trajectory_ids=ids,
        template_ids=encode(tok, RAML_TEMPLATE),
        answer_ids=encode(tok, "6"),
        boundary_cuts=[0] + [s.end for s in segment(text, offsets, "sentences")],
        proxy_layers=default_proxy_layers(locate(loaded.model).n_layers),
    )


@pytest.mark.parametrize("when", ["before-forward", "after-forward"])
def test_oom_while_probing_falls_back_to_smaller_chunks_with_identical_numbers(tiny_llama, monkeypatch, when):
    """CUDA OOM on the first big probe chunk (raised before the forward, or after it has already
    grown the KV cache, as a real mid-forward OOM does) -> halve the chunk and redo it."""
    req = _probe_request(tiny_llama)
    chunk_tokens = 48 * (len(req.template_ids) + len(req.answer_ids))  # 3 chunks of 48 probes
    reference = analyze(tiny_llama.model, req, chunk_tokens=chunk_tokens)

    base = locate(tiny_llama.model).base
    real_forward = base.forward
    raised = []

    def forward_with_oom(*args, **kwargs):
        big_chunk = kwargs.get("past_key_values") is not None and kwargs["input_ids"].shape[1] > chunk_tokens // 2
        if big_chunk and not raised:
            raised.append(kwargs["input_ids"].shape[1])
            if when == "after-forward":
                real_forward(*args, **kwargs)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(base, "forward", forward_with_oom)
    result = analyze(tiny_llama.model, req, chunk_tokens=chunk_tokens)
    assert raised, "the simulated OOM never fired"
    assert result.timings["chunk_probes"] < reference.timings["chunk_probes"]
    np.testing.assert_array_equal(result.cuts, reference.cuts)
    # identical up to float32 rounding (other chunk shapes sum in another order: ~1e-6 seen)
    same = dict(rtol=0, atol=1e-5)
    for name in ("answer_nll", "answer_token_nll", "p_first", "entropy", "lens_nll", "hidden"):
        np.testing.assert_allclose(getattr(result, name), getattr(reference, name), err_msg=name, **same)
    for layer in reference.proxy_preact:
        np.testing.assert_allclose(result.proxy_preact[layer], reference.proxy_preact[layer], **same)
        np.testing.assert_allclose(result.proxy_input[layer], reference.proxy_input[layer], **same)


def test_errors_other_than_oom_are_not_retried(tiny_llama, monkeypatch):
    req = _probe_request(tiny_llama)
    base = locate(tiny_llama.model).base
    real_forward = base.forward
    calls = []

    def broken(*args, **kwargs):
        if kwargs.get("past_key_values") is not None:
            calls.append(1)
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(base, "forward", broken)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        analyze(tiny_llama.model, req, chunk_tokens=256)
    assert len(calls) == 1


# ----------------------------------------------------------------------------- disk full, unwritable
def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_during_write_is_a_clear_error_and_loses_nothing(damaged_copy, tiny_llama, monkeypatch, capsys):
    store, keys = damaged_copy
    before = cache_state(store.root)
    import safetensors.numpy

    monkeypatch.setattr(safetensors.numpy, "save_file", _disk_full)
    new = RunRequest(question="A new question?", answer="6", trajectory=SAMPLE_TRAJECTORY, cuts=CUTS)
    with pytest.raises(CacheError, match="disk full") as full:
        run_question(new, store, loaded=tiny_llama)
    assert "\n" not in str(full.value) and str(store.root) in str(full.value)
    again = RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, cuts=CUTS)
    with pytest.raises(CacheError, match="disk full"):  # recomputing an existing run ...
        run_question(again, store, loaded=tiny_llama, force=True)
    assert cache_state(store.root) == before  # ... keeps it; no temp files left behind
    for key in keys.values():
        store.open(key)
    monkeypatch.undo()
    assert not run_question(new, store, loaded=tiny_llama).cached  # space is back: it works


def test_disk_full_midway_through_the_files_cleans_up(damaged_copy, tiny_llama, monkeypatch):
    import pandas as pd

    store, keys = damaged_copy
    before = cache_state(store.root)
    real_to_parquet = pd.DataFrame.to_parquet
    written = []

    def fill_up_on_second(self, path, *args, **kwargs):
        written.append(path)
        if len(written) == 2:
            _disk_full()
        return real_to_parquet(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", fill_up_on_second)
    with pytest.raises(CacheError, match="disk full"):
        run_question(
            RunRequest(question="Q2?", answer="6", trajectory=SAMPLE_TRAJECTORY, cuts=CUTS), store, loaded=tiny_llama
        )
    assert len(written) == 2 and cache_state(store.root) == before


def test_index_full_after_the_rename_keeps_the_run(damaged_copy, tiny_llama, monkeypatch):
    store, keys = damaged_copy

    def index_full(_meta):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "_index_row", index_full)
    req = RunRequest(question="Q3?", answer="6", trajectory=SAMPLE_TRAJECTORY, cuts=CUTS)
    with pytest.raises(CacheError, match="database or disk is full"):
        run_question(req, store, loaded=tiny_llama)
    monkeypatch.undo()
    (new_key,) = cache_state(store.root)["runs"] - set(keys.values())
    store.open(new_key)  # the run itself was stored completely
    assert new_key in RunStore(store.root).list_runs()["key"].tolist()  # reconcile() indexes it


def test_unwritable_cache_is_a_clear_error(damaged_copy, tiny_llama, monkeypatch, capsys):
    import tempfile

    store, keys = damaged_copy

    def read_only(*_args, **_kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(CacheError, match="not writable"):
        run_question(
            RunRequest(question="Q4?", answer="6", trajectory=SAMPLE_TRAJECTORY, cuts=CUTS), store, loaded=tiny_llama
        )
    monkeypatch.undo()
    for key in keys.values():
        store.open(key)


def test_cache_path_that_is_a_file(tmp_path, capsys):
    blocker = tmp_path / "cache"
    blocker.write_text("I am a file")
    with pytest.raises(CacheError, match="Not a directory"):
        RunStore(blocker)
    for argv in (
        ["ls"],
        ["show", "0" * 32],
        ["run", "--question", "q", "--answer", "1", "--trajectory-file", str(blocker)],
    ):
        assert cli.main(["--cache-dir", str(blocker), *argv]) == cli.EXIT_INPUT
        assert "is not writable" in one_error_line(capsys.readouterr().err)
    assert blocker.read_text() == "I am a file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions (covered by the EROFS test)")
def test_read_only_directory_without_root(tmp_path, tiny_llama, pristine_cache):
    root, keys = pristine_cache
    copy = tmp_path / "cache"
    shutil.copytree(root, copy)
    os.chmod(copy / "tmp", 0o555)
    try:
        with pytest.raises(CacheError, match="not writable"):
            run_question(
                RunRequest(question="Q5?", answer="6", trajectory=SAMPLE_TRAJECTORY, cuts=CUTS),
                RunStore(copy),
                loaded=tiny_llama,
            )
    finally:
        os.chmod(copy / "tmp", 0o755)
    for key in keys.values():
        RunStore(copy).open(key)


def test_oom_even_at_one_probe_is_a_clear_error(tiny_llama, monkeypatch):
    """When nothing fits, the engine stops halving at one probe and names what to change."""
    from backend.errors import OutOfMemoryError, RamlError

    req = _probe_request(tiny_llama)
    base = locate(tiny_llama.model).base
    real_forward = base.forward
    sizes = []

    def always_oom(*args, **kwargs):
        if kwargs.get("past_key_values") is not None:
            sizes.append(kwargs["input_ids"].shape[1])
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(base, "forward", always_oom)
    with pytest.raises(OutOfMemoryError, match="even with one probe per forward.*--cuts stride:K") as info:
        analyze(tiny_llama.model, req, chunk_tokens=64)
    assert isinstance(info.value, RamlError)  # the CLI prints it as one line, exit 2
    m = len(req.template_ids) + len(req.answer_ids)
    assert sizes[-1] == m and sizes == sorted(sizes, reverse=True)  # halved down to one probe
