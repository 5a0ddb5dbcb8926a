"""The one derived-data cache (backend.store.derived): one key recipe, names only in the schema,
and one failure policy — a derived write that fails (read-only folder, EROFS, disk full) is one
logged warning line, the computed result is still returned (equal to the normal one), no temp
file is left and what was cached before stays intact.

Each analysis that caches derived data is run three times on a private copy of a tiny run:
once normally (something cached before), once under the fault, once normally again for the
reference result of the same call.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE_QUESTION, SAMPLE_TRAJECTORY, build_wide_tiny

from backend.store import atomic, derived, hashing, schema
from backend.store.runs import RunStore

BACKEND = Path(__file__).resolve().parents[2] / "backend"
FAULTS = ("read-only", "disk-full")  # EROFS from os.replace: test_save_derived_...


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def wide_tiny(smol_tokenizer):
    """A tiny Llama wide enough (H = 128) for the exact update's constraints (P + m ≤ H)."""
    from backend.engine.models import LoadedModel

    model = build_wide_tiny(smol_tokenizer)
    return LoadedModel.from_objects("tiny-wide-derived", model, smol_tokenizer)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, wide_tiny):
    """A cache holding one run of the wide tiny model and no derived data: (root, key)."""
    from backend.pipeline.run import RunRequest, run_question

    store = RunStore(tmp_path_factory.mktemp("derived_pristine"))
    req = RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, model=wide_tiny.name)
    key = run_question(req, store, loaded=wide_tiny).key
    for folder in [store.root / schema.DERIVED_DIR, store.path(key) / schema.DERIVED_DIR]:
        shutil.rmtree(folder, ignore_errors=True)
    return store.root, key


@pytest.fixture()
def cache(tmp_path, pristine):
    """A private copy of the pristine cache with both derived folders present: (store, run)."""
    from backend.analysis.spaces import proxy

    root, key = pristine
    shutil.copytree(root, tmp_path / "cache")
    store = RunStore(tmp_path / "cache")
    run = store.open(key)
    for folder in _derived_folders(store, run):
        folder.mkdir(parents=True, exist_ok=True)
    proxy.clear_memo()
    yield store, run
    for folder in _derived_folders(store, run):
        if folder.exists():
            os.chmod(folder, 0o755)
    proxy.clear_memo()


def _derived_folders(store, run) -> list[Path]:
    return [
        Path(run.path) / schema.DERIVED_DIR,
        Path(store.root) / schema.DERIVED_DIR,
        Path(store.root) / schema.AGGREGATES_DIR,
    ]


def _state(store, run) -> dict[str, bytes]:
    """Every file under the derived folders, with its bytes."""
    out = {}
    for folder in _derived_folders(store, run):
        for path in folder.rglob("*") if folder.exists() else []:
            if path.is_file():
                out[str(path.relative_to(store.root))] = path.read_bytes()
    return out


def _inject(fault: str, store, run, monkeypatch) -> None:
    """Make every derived write fail as ``fault`` would."""
    root = str(store.root)
    if fault == "read-only":  # chmod for a normal user; root ignores it, so creating a file is refused too
        for folder in _derived_folders(store, run):
            os.chmod(folder, 0o555)
        real_open = os.open

        def refusing_open(path, flags, *args, **kwargs):
            if str(path).startswith(root) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing_open)
    elif fault == "erofs":

        def read_only_replace(src, dst, *args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system", str(dst))

        monkeypatch.setattr(os, "replace", read_only_replace)
    elif fault == "disk-full":

        def full_disk(_fd):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", full_disk)
    else:
        raise ValueError(fault)


def _faulty_call(fault, store, run, monkeypatch, caplog, call):
    """``call()`` under ``fault``: its result, the warning lines it logged and collected; checks
    that nothing under the derived folders changed (no new file, no temp file, no lost file)."""
    before = _state(store, run)
    caplog.clear()
    with monkeypatch.context() as patch:
        _inject(fault, store, run, patch)
        with caplog.at_level(logging.WARNING, logger="backend.store.derived"), derived.collect_warnings() as collected:
            result = call()
    for folder in _derived_folders(store, run):
        os.chmod(folder, 0o755)
    assert _state(store, run) == before  # nothing written, nothing half-written, nothing lost
    lines = [r.getMessage() for r in caplog.records if r.name == "backend.store.derived"]
    assert lines and lines == collected
    reason = {"read-only": "not writable", "erofs": "not writable", "disk-full": "disk full"}[fault]
    for line in lines:
        assert "\n" not in line and line.startswith(derived.NOT_CACHED) and reason in line, line
    return result, lines


def _written(store, run, kind, params) -> Path:
    """The one file of ``kind`` + ``params``: in the run's derived folder, named by the one key."""
    path = Path(run.path) / schema.DERIVED_DIR / kind.file_name(derived.derived_key(kind, params, run))
    assert path.is_file(), sorted(p.name for p in path.parent.iterdir())
    return path


# ---------------------------------------------------------------------------- one failure policy, per analysis
@pytest.mark.parametrize("fault", FAULTS)
def test_importance_write_failure_warns_and_returns_the_result(cache, wide_tiny, fault, monkeypatch, caplog):
    from backend.analysis.importance.run import IMPORTANCE_PARAMS, compute_run_importance, load_importance

    store, run = cache
    earlier = compute_run_importance(run, wide_tiny, store=store)  # cached before: ablation only
    cached = _written(store, run, schema.IMPORTANCE, IMPORTANCE_PARAMS).read_bytes()
    got, lines = _faulty_call(
        fault,
        store,
        run,
        monkeypatch,
        caplog,
        lambda: compute_run_importance(run, wide_tiny, store=store, attention=True),
    )
    assert len(lines) == 1 and got["attention"] is not None
    assert load_importance(run, store) == earlier  # the file cached before is intact and still read
    assert _written(store, run, schema.IMPORTANCE, IMPORTANCE_PARAMS).read_bytes() == cached
    normal = compute_run_importance(run, wide_tiny, store=store, attention=True)
    volatile = {"created", "timings"}
    assert {k: v for k, v in got.items() if k not in volatile} == {k: v for k, v in normal.items() if k not in volatile}
    assert load_importance(run, store) == normal


@pytest.mark.parametrize("fault", FAULTS)
def test_exact_update_write_failure_warns_and_returns_the_result(cache, wide_tiny, fault, monkeypatch, caplog):
    from backend.analysis.exact import data as exact_data
    from backend.analysis.exact import run as exact_run
    from backend.analysis.spaces import proxy

    store, run = cache
    proxy.project([run], run.meta["proxy_layers"][0], "proxy", "pca", store=store)  # cached before
    got, lines = _faulty_call(
        fault, store, run, monkeypatch, caplog, lambda: exact_run.ensure(run, loaded=wide_tiny, store=store)
    )
    assert len(lines) == 1 and exact_data.load(run, store) is None
    normal = exact_run.ensure(run, loaded=wide_tiny, store=store)
    _written(store, run, schema.EXACT, exact_data.EXACT_PARAMS)
    for name in ("left", "right", "condition", "rank", "target_loss", "construction_loss", "boundary_cuts"):
        np.testing.assert_array_equal(getattr(got.update, name), getattr(normal.update, name))
    np.testing.assert_array_equal(got.layer_grams, normal.layer_grams)
    np.testing.assert_array_equal(got.edited_loss, normal.edited_loss)
    assert {k: v for k, v in got.meta.items() if k != "timings"} == {
        k: v for k, v in normal.meta.items() if k != "timings"
    }
    reread = exact_data.load(run, store)
    np.testing.assert_array_equal(reread.update.left, normal.update.left)


@pytest.mark.parametrize("fault", FAULTS)
def test_proxy_surface_write_failure_warns_and_returns_the_result(cache, wide_tiny, fault, monkeypatch, caplog):
    from backend.analysis.landscapes import surfaces

    store, run = cache
    layer = run.meta["proxy_layers"][0]
    surfaces.loss_surface(run, layer, loaded=wide_tiny, grid=3, span=1.0, store=store)  # cached before
    got, lines = _faulty_call(
        fault,
        store,
        run,
        monkeypatch,
        caplog,
        lambda: surfaces.loss_surface(run, layer, loaded=wide_tiny, grid=4, span=1.0, store=store),
    )
    assert len(lines) == 1 and not got.cached
    assert surfaces.load_surface(run, layer, 4, 1.0, store) is None
    normal = surfaces.loss_surface(run, layer, loaded=wide_tiny, grid=4, span=1.0, store=store)
    _written(store, run, schema.SURFACE, surfaces.surface_params(run, layer, 4, 1.0))
    for name in ("alphas", "betas", "loss", "path_coords", "path_loss_plane", "path_loss_full", "directions"):
        np.testing.assert_array_equal(getattr(got, name), getattr(normal, name))
    assert got.base_loss == normal.base_loss
    assert surfaces.load_surface(run, layer, 3, 1.0, store).cached  # the earlier grid is still read


@pytest.mark.parametrize("fault", FAULTS)
def test_random_landscape_write_failure_warns_and_returns_the_result(cache, wide_tiny, fault, monkeypatch, caplog):
    from backend.analysis.landscapes import surfaces

    store, run = cache
    surfaces.random_landscape(run, loaded=wide_tiny, grid=3, seed=0, store=store)  # cached before
    got, lines = _faulty_call(
        fault,
        store,
        run,
        monkeypatch,
        caplog,
        lambda: surfaces.random_landscape(run, loaded=wide_tiny, grid=3, seed=1, store=store),
    )
    assert len(lines) == 1 and surfaces.load_random_landscape(run, 3, 1.0, 1, store) is None
    normal = surfaces.random_landscape(run, loaded=wide_tiny, grid=3, seed=1, store=store)
    _written(store, run, schema.LANDSCAPE, surfaces.landscape_params(run, 3, 1.0, 1))
    np.testing.assert_array_equal(got.loss, normal.loss)
    assert (got.base_loss, got.n_params) == (normal.base_loss, normal.n_params)
    assert surfaces.load_random_landscape(run, 3, 1.0, 0, store).cached


@pytest.mark.parametrize("fault", FAULTS)
def test_dataset_claims_write_failure_warns_and_returns_the_result(cache, fault, monkeypatch, caplog):
    from backend.analysis.dataset.claims import ClaimsSettings, dataset_claims

    store, run = cache
    dataset_claims(store, [run.key], ClaimsSettings(grid_points=11, window=4, bins=3))  # cached before
    settings = ClaimsSettings(grid_points=21, window=4, bins=3)
    got, lines = _faulty_call(
        fault, store, run, monkeypatch, caplog, lambda: dataset_claims(store, [run.key], settings)
    )
    assert len(lines) == 2 and not got.from_cache  # the run's digest and the set's report
    normal = dataset_claims(store, [run.key], settings)
    assert not normal.from_cache and dataset_claims(store, [run.key], settings).from_cache
    _written(store, run, schema.CLAIMS_DIGEST, settings.digest_params())
    for name in ("descent", "descent_summary", "reflection_words", "inner_loop"):
        pd.testing.assert_frame_equal(getattr(got, name), getattr(normal, name))
    np.testing.assert_array_equal(got.curves, normal.curves)


# ---------------------------------------------------------------------------- the cache itself
def test_save_derived_falls_back_to_the_cache_folder_then_warns_once(cache, monkeypatch, caplog):
    store, run = cache
    params = {"grid": 3}
    own, fallback = derived.derived_paths(store, run, schema.SURFACE, params)
    real_open = os.open

    def refuse_run_folder(path, flags, *args, **kwargs):
        if str(path).startswith(str(run.path)) and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse_run_folder)
    assert derived.save_derived(store, run, schema.SURFACE, params, {"x": np.arange(3)}) is None
    assert not own.exists() and fallback.is_file()  # a read-only run folder: the cache's derived/
    assert derived.load_derived(store, run, schema.SURFACE, params)["x"].tolist() == [0, 1, 2]
    assert derived.derived_path(store, run, schema.SURFACE, params) == fallback
    before = _state(store, run)
    for fault, reason in (("erofs", "Read-only file system"), ("disk-full", "disk full")):
        caplog.clear()
        with monkeypatch.context() as patch:
            _inject(fault, store, run, patch)
            with caplog.at_level(logging.WARNING, logger="backend.store.derived"):
                message = derived.save_derived(store, run, schema.SURFACE, {"grid": 4}, {"x": np.arange(3)})
                assert derived.save_derived(store, run, schema.SURFACE, params, {"x": np.zeros(3)}) is not None
        assert message is not None and message.startswith(derived.NOT_CACHED) and reason in message
        assert str(own.parent) in message and "Permission denied" in message  # both files, both reasons
        assert len([r for r in caplog.records if r.name == "backend.store.derived"]) == 2  # one line per save
        assert _state(store, run) == before  # the fallback copy is intact, no temp file left


def test_files_of_the_old_naming_are_ignored_not_fatal(cache):
    from backend.analysis.exact import data as exact_data
    from backend.analysis.importance.run import load_importance

    store, run = cache
    folder = Path(run.path) / schema.DERIVED_DIR
    (folder / f"importance.{run.key}.json").write_text(json.dumps({"version": 1, "ablation": [1.0]}))
    (folder / "exact-0123456789abcdef.npz").write_bytes(b"not an npz")
    assert load_importance(run, store) is None and exact_data.load(run, store) is None
    assert exact_data.load_meta(run, store) is None
    damaged = derived.derived_path(store, run, schema.IMPORTANCE, {})
    damaged.write_text("{not json")
    assert load_importance(run, store) is None  # damaged: recomputed on request


def test_atomic_write_fsyncs_the_file_and_its_folder(tmp_path, monkeypatch):
    import stat

    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic.write_text(tmp_path / "a.txt", "x")
    assert synced == ["file", "dir"]


# ---------------------------------------------------------------------------- one key, names in the schema
def test_every_derived_key_is_the_content_hash_of_kind_version_run_and_params(cache):
    store, run = cache
    params = {"b": [1, 2.5, "ü"], "a": {"y": 1, "x": None}}
    for kind in schema.DERIVED_KINDS:
        owner = run if kind.scope == "run" else None
        key = derived.derived_key(kind, params, owner)
        payload = {
            "kind": kind.name,
            "version": kind.version,
            "run": None if owner is None else run.key,
            "params": params,
        }
        assert key == hashing.content_hash(payload, hashing.DERIVED_KEY_LENGTH)
        assert key == derived.derived_key(kind, dict(reversed(params.items())), owner)  # sorted JSON
        (path, *_) = derived.derived_paths(store, owner, kind, params)
        assert path.name == f"{kind.name}-{key}{kind.suffix}"
        assert path.parent.name == (schema.DERIVED_DIR if kind.scope == "run" else schema.AGGREGATES_DIR)
    names = [k.name for k in schema.DERIVED_KINDS]
    assert len(set(names)) == len(names)
    assert {k.suffix for k in schema.DERIVED_KINDS} <= {".npz", ".json"}


def test_analyses_name_their_files_through_the_cache(cache, wide_tiny):
    """The keys the analyses use are the cache's keys (same recipe as the files they write)."""
    from backend.analysis.landscapes import surfaces
    from backend.analysis.spaces import proxy

    store, run = cache
    layer = run.meta["proxy_layers"][0]
    assert proxy.projection_cache_key([run], layer, "proxy", "pca") == derived.derived_key(
        schema.PROJECTION, proxy.projection_params([run], layer, "proxy", "pca"), run
    )
    assert surfaces.surface_cache_key(run, layer, 5, 1.0) == derived.derived_key(
        schema.SURFACE, surfaces.surface_params(run, layer, 5, 1.0), run
    )
    assert surfaces.landscape_cache_key(run, 5, 1.0, 0) == derived.derived_key(
        schema.LANDSCAPE, surfaces.landscape_params(run, 5, 1.0, 0), run
    )
    proxy.project([run], layer, "proxy", "pca", store=store)
    surfaces.random_landscape(run, loaded=wide_tiny, grid=2, store=store)
    pattern = re.compile(
        r"^(%s)-[0-9a-f]{%d}\.(npz|json)\Z"
        % ("|".join(re.escape(k.name) for k in schema.DERIVED_KINDS), hashing.DERIVED_KEY_LENGTH)
    )
    written = sorted(p.name for p in (Path(run.path) / schema.DERIVED_DIR).iterdir())
    assert len(written) == 2 and all(pattern.match(n) for n in written), written


def _sources():
    for path in sorted(BACKEND.rglob("*.py")):
        yield path.relative_to(BACKEND).as_posix(), path.read_text(encoding="utf-8")


# engine/ may not import the store (import-linter contract); its model fingerprints are not cache keys
# engine and io sit below the store (import-linter layers), so they may not import its hashing module
HASHLIB_ALLOWED = {"store/hashing.py", "engine/models.py", "engine/tuned_lens.py", "io/thought_anchors.py"}


def test_hashlib_only_in_the_hashing_module():
    offenders = [name for name, text in _sources() if "hashlib." in text and name not in HASHLIB_ALLOWED]
    assert offenders == []


def test_derived_file_names_are_spelled_only_in_the_schema():
    names = "|".join(re.escape(k.name) for k in schema.DERIVED_KINDS)
    literal = re.compile(r"""["'](?:%s)[-.]|["'](?:derived|aggregates|exports)["']""" % names)
    offenders = [
        f"{name}: {m.group(0)}"
        for name, text in _sources()
        if name != "store/schema.py"
        for m in literal.finditer(text)
    ]
    assert offenders == []


def test_a_job_whose_cache_write_fails_finishes_and_says_why(cache, wide_tiny, monkeypatch):
    """The queue's failure policy: a landscape job on a full disk is finished (the result was
    computed), and the job's messages carry the one-line "not cached" warning."""
    from backend.engine import provider
    from backend.jobs import open_queue, run_here, submit

    store, run = cache
    provider.register(wide_tiny)
    try:
        job_id = submit(store, "landscape", {"key": run.key, "grid": 3, "seed": 2})
        with monkeypatch.context() as patch:
            _inject("disk-full", store, run, patch)
            job = run_here(store, job_id)
    finally:
        provider.unregister(wide_tiny.name)
    assert job.state == "finished", job.error
    assert [m for m in job.messages if m.startswith(derived.NOT_CACHED) and "disk full" in m], job.messages
    final = open_queue(store).get(job_id)
    assert final is not None and final.messages == job.messages


# ----------------------------------------------------------------------------- issue 27 (low items)
def test_derived_files_and_folders_are_shared_readable_whatever_the_umask(tiny_run, tmp_path):
    """``importance-*.json`` was found 0600: files are 0644 and new derived folders 0755 even
    under ``umask 077``."""
    import os
    import shutil
    import stat

    from backend.store import schema
    from backend.store.derived import derived_paths, save_derived
    from backend.store.runs import RunStore

    store, key = tiny_run
    root = tmp_path / "cache"
    shutil.copytree(store.root, root, ignore=shutil.ignore_patterns("locks", "tmp"))
    copy = RunStore(root)
    run = copy.open(key)
    shutil.rmtree(run.path / schema.DERIVED_DIR, ignore_errors=True)
    old = os.umask(0o077)
    try:
        assert save_derived(copy, run, schema.IMPORTANCE, {"probe": 1}, {"steps": [1, 2]}) is None
    finally:
        os.umask(old)
    path = derived_paths(copy, run, schema.IMPORTANCE, {"probe": 1})[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755


def test_derived_data_is_not_written_through_a_symlinked_run_folder(tiny_run, tmp_path):
    """``show`` wrote ``derived/`` through a run folder that is a symlink (into its target,
    outside the cache): derived data then goes to the cache's own ``derived/``."""
    import shutil

    from backend.store import schema
    from backend.store.derived import save_derived
    from backend.store.runs import RunStore

    store, key = tiny_run
    root = tmp_path / "cache"
    shutil.copytree(store.root, root, ignore=shutil.ignore_patterns("locks", "tmp"))
    elsewhere = tmp_path / "elsewhere" / key
    elsewhere.parent.mkdir()
    shutil.move(str(root / "runs" / key), str(elsewhere))
    shutil.rmtree(elsewhere / schema.DERIVED_DIR, ignore_errors=True)
    (root / "runs" / key).symlink_to(elsewhere, target_is_directory=True)
    copy = RunStore(root)
    run = copy.open(key)
    assert save_derived(copy, run, schema.IMPORTANCE, {"probe": 2}, {"steps": [3]}) is None
    assert not (elsewhere / schema.DERIVED_DIR).exists(), "nothing written into the link's target"
    assert list((root / schema.DERIVED_DIR).glob("importance-*.json"))
