"""Shared fixtures: tiny random models (fast, seeded) with SmolLM2's real tokenizer, the real
SmolLM2 (integration), and throwaway caches holding real runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before anything loads torch (libgomp reads its settings once, when it loads): OpenMP threads
# that wait sleep instead of spinning, and each pytest worker (pytest-xdist, `make test` runs two)
# takes its share of the cores, subprocesses (CLI, Streamlit, Ray workers) included, so that two
# workers never spin in each other's barriers (docs/threads.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
if _WORKERS > 1:
    _share = str(max(1, len(os.sched_getaffinity(0)) // _WORKERS))
    os.environ.setdefault("RAML_TORCH_THREADS", _share)
    os.environ.setdefault("OMP_NUM_THREADS", os.environ["RAML_TORCH_THREADS"])

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One converted-model cache for the whole session, subprocesses (CLI, Streamlit, Ray workers)
# included: SmolLM2's GGUF is de-quantized once (backend/engine/converted.py), not once per
# process. It is the app's own default place (``$RAML_CACHE_DIR/models``), so a second
# `make test` or `make run` converts nothing; tests of the converted cache set their own.
os.environ.setdefault(
    "RAML_MODEL_CACHE", str((Path(os.environ.get("RAML_CACHE_DIR") or ROOT / "cache")).resolve() / "models")
)

# Tests live in one folder per domain; each test gets its folder's marker (declared in pytest.ini),
# so `pytest -m unit` (or `make test-unit`) runs one domain. Files still at the tests/ root get none.
DOMAINS = ("unit", "integration", "browser", "reliability")


# Tests that must share one process under pytest-xdist (`--dist loadgroup`), one group each:
# the browser tests (one app server and one Chromium per session), the Ray tests (one local Ray
# instance at a time), and the tests of a module that shares a module-scoped fixture (built once).
BROWSER_FIXTURES = frozenset({"browser", "explore_app", "long_app"})


def xdist_group_of(item, domain: str | None) -> str | None:
    """The one xdist group of a test (None: scheduled on its own)."""
    names = set(getattr(item, "fixturenames", ()))
    if domain == "browser" or names & BROWSER_FIXTURES:
        return "browser"
    if item.get_closest_marker("ray") is not None:
        return "ray"
    info = getattr(item, "_fixtureinfo", None)
    for defs in info.name2fixturedefs.values() if info is not None else ():
        if any(d.scope in ("module", "class", "package") for d in defs):
            return item.module.__name__ if item.module is not None else None
    return None


def scope_of(nodeid: str) -> str:
    """The unit of work xdist's scheduler hands one worker (``SuiteScheduling``): every browser test
    (one app server and one Chromium per session), else the test's module, so that Ray's instance
    and a module's shared fixtures are built once. pytest 9 derives node ids itself, so xdist's own
    ``xdist_group`` marks (which rename node ids) no longer group anything; the marks are still set
    for readers and for ``--dist loadgroup`` where that works."""
    path = nodeid.split("::", 1)[0]
    return "tests/browser" if path.startswith("tests/browser/") else path


# What each unit of work costs, in seconds (CPU seconds of the worker and its subprocesses as
# ``RAML_TEST_CPU_LOG`` measures them and ``python -m tests.suite_costs DIR --write`` stores them;
# the first table is the round-4 fresh clone's slowest tests, wall seconds): the scheduler hands
# out the costliest first, so that the workers end together (longest processing time first).
SUITE_COSTS = Path(__file__).resolve().parent / "suite_costs.json"
UNKNOWN_TEST_COST_S = 2.0  # a unit that is not in the table yet: this much per test


def unit_costs(path: Path = SUITE_COSTS) -> dict[str, float]:
    import json

    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def order_units(units: dict[str, list], costs: dict[str, float]) -> list[str]:
    """The units (``scope_of`` name -> its node ids) costliest first; a unit missing from
    ``costs`` is estimated by its number of tests; ties keep collection order."""

    def cost(item):
        scope, nodeids = item
        return costs.get(scope, UNKNOWN_TEST_COST_S * len(nodeids))

    return [scope for scope, _ in sorted(units.items(), key=lambda item: -cost(item))]


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup`` or ``loadscope`` (``make test``): schedule by ``scope_of``, costliest
    unit first (``order_units``)."""
    if config.getvalue("dist") not in ("loadgroup", "loadscope"):
        return None
    from collections import OrderedDict

    from xdist.scheduler import LoadScopeScheduling

    class SuiteScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

        def _assign_work_unit(self, node) -> None:
            # xdist orders its queue by test count; reorder it once, by cost, before the first unit
            # goes out. A worker asks for its next unit when it has two tests left (xdist), so the
            # free worker always takes the costliest unit left: greedy LPT.
            if not getattr(self, "_ordered", False):
                units = {scope: list(ids) for scope, ids in self.workqueue.items()}
                self.workqueue = OrderedDict((s, self.workqueue[s]) for s in order_units(units, unit_costs()))
                self._ordered = True
            super()._assign_work_unit(node)

        def _reschedule(self, node) -> None:
            # xdist tops a worker up while it still has two tests to go; one is enough (a worker
            # needs its next test to know what to tear down), so the last units go to whichever
            # worker is really free, not to one that still has two long tests ahead of it.
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
                return
            if self._pending_of(self.assigned_work[node]) <= 1:
                self._assign_work_unit(node)

    return SuiteScheduling(config, log)


# ----------------------------------------------------------------------------- CPU per test
# RAML_TEST_CPU_LOG=DIR: every process (each xdist worker) appends one JSON line per test to
# DIR/<worker>.jsonl: CPU seconds of the process itself and of its finished subprocesses (CLI,
# Streamlit, Chromium once closed) per phase, and wall seconds. CPU is what a shared machine
# does not blur; ``python -m tests.suite_costs DIR`` sums it per unit into suite_costs.json.
_CPU_LOG = os.environ.get("RAML_TEST_CPU_LOG")


def _cpu_sample() -> tuple[float, float, float]:
    import resource
    import time

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime, time.monotonic()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if not _CPU_LOG:
        yield
        return
    import json
    import time

    item._raml_cpu = {}
    start = _cpu_sample()
    yield
    end = _cpu_sample()
    record = {
        "nodeid": item.nodeid,
        "unit": scope_of(item.nodeid),
        "cpu_self": round(end[0] - start[0], 3),
        "cpu_children": round(end[1] - start[1], 3),
        "wall": round(end[2] - start[2], 3),
        "ended": round(time.time(), 1),
        "phases": item._raml_cpu,
    }
    folder = Path(_CPU_LOG)
    folder.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(folder / f"{worker}.jsonl", "a") as log:
        log.write(json.dumps(record) + "\n")


def pytest_sessionfinish(session):
    """With RAML_TEST_CPU_LOG: the whole process's CPU (start-up and collection included)."""
    if _CPU_LOG:
        import json

        own, kids, _ = _cpu_sample()
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        Path(_CPU_LOG).mkdir(parents=True, exist_ok=True)
        (Path(_CPU_LOG) / f"{worker}.session.json").write_text(json.dumps({"cpu_self": own, "cpu_children": kids}))


def _phase(item, name: str):
    if not _CPU_LOG:
        yield
        return
    start = _cpu_sample()
    yield
    end = _cpu_sample()
    if hasattr(item, "_raml_cpu"):
        item._raml_cpu[name] = [round(end[i] - start[i], 3) for i in range(3)]  # self, children, wall


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield from _phase(item, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield from _phase(item, "call")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield from _phase(item, "teardown")


def _domain(item) -> str | None:
    try:
        return Path(str(item.fspath)).resolve().relative_to(Path(__file__).resolve().parent).parts[0]
    except ValueError:
        return None


def pytest_itemcollected(item):
    """Each test's domain marker and xdist group, as it is collected (before any
    ``pytest_collection_modifyitems``, where xdist's worker turns the group into the node id)."""
    domain = _domain(item)
    if domain in DOMAINS:
        item.add_marker(getattr(pytest.mark, domain))
    group = xdist_group_of(item, domain)
    if group is not None and item.get_closest_marker("xdist_group") is None:
        item.add_marker(pytest.mark.xdist_group(group))


# A trajectory with several sentences, a line break and reflection words (imported, not generated).
SAMPLE_TRAJECTORY = (
    "Maya starts with 5 apples. Two bags of 4 apples each add 8 more, so she has 13. "
    "Wait, let me check that: 5 + 8 = 13, yes.\n"
    "She gives 6 to her friend, leaving 7. Then she eats 1, so 7 - 1 = 6. "
    "However, I should verify the bags: 2 * 4 = 8. Hmm, that is right. So she has 6 apples."
)
SAMPLE_QUESTION = (
    "Maya has 5 apples. She buys 2 bags with 4 apples each, gives 6 apples to her friend, "
    "and then eats 1. How many apples does she have now?"
)


@pytest.fixture(scope="session")
def smol_tokenizer():
    """SmolLM2's real tokenizer: from the converted copy when there is one (1 s), else the
    tokenizer alone (``load_tokenizer``: read from the GGUF in seconds and kept beside the converted
    models), never the whole model's conversion: a worker that runs only tiny-model tests does not
    wait for another worker's de-quantization."""
    from transformers import AutoTokenizer

    from backend.engine import converted
    from backend.engine.models import load_tokenizer, resolve

    spec = resolve("smollm2-135m")
    copy = converted.converted_dir(spec.fingerprint(), "float32")
    if converted.is_complete(copy):
        return AutoTokenizer.from_pretrained(str(copy))
    # A fresh clone: the first worker converts the GGUF's vocabulary (tens of seconds) and keeps it
    # beside the converted models; the other waits for it and reads the copy, instead of converting
    # it a second time at once (load_tokenizer looks for the copy first).
    alone = converted.converted_dir(spec.fingerprint(), converted.TOKENIZER_SUFFIX)
    with converted.conversion_lock(alone):
        return load_tokenizer(spec)


def build_tiny_model(
    kind: str,
    vocab_size: int,
    *,
    seed: int = 0,
    n_layers: int = 4,
    hidden: int = 64,
    ff: int = 128,
    heads: int = 4,
    kv_heads: int = 2,
    max_positions: int = 2048,
):
    """The one builder of tiny randomly initialised causal LMs (float32, CPU, seeded, tied
    embeddings): a raw ``LlamaForCausalLM`` or ``Qwen2ForCausalLM`` of the given shape."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    classes = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
    if kind not in classes:
        raise ValueError(f"tiny model kind {kind!r}: one of {sorted(classes)}")
    config_class, model_class = classes[kind]
    torch.manual_seed(seed)
    config = config_class(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=ff,
        num_hidden_layers=n_layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
    )
    return model_class(config).eval()


def build_wide_tiny(tokenizer):
    """A tiny Llama wide enough (H = 128) for the exact update's constraints (P + m ≤ H): the raw
    model (float32, CPU, seed 3), for tests to wrap, register or save under a name of their own."""
    return build_tiny_model("llama", len(tokenizer), seed=3, n_layers=2, hidden=128, ff=128)


def build_tiny(kind: str, tokenizer, seed: int = 0, n_layers: int = 4, name: str | None = None, **shape):
    """A tiny model (``build_tiny_model``) wrapped as a LoadedModel named ``tiny-<kind>-seed<seed>``."""
    from backend.engine.models import LoadedModel

    model = build_tiny_model(kind, len(tokenizer), seed=seed, n_layers=n_layers, **shape)
    return LoadedModel.from_objects(name or f"tiny-{kind}-seed{seed}", model, tokenizer)


@pytest.fixture(scope="session")
def tiny_llama(smol_tokenizer):
    return build_tiny("llama", smol_tokenizer)


@pytest.fixture(scope="session")
def tiny_qwen2(smol_tokenizer):
    return build_tiny("qwen2", smol_tokenizer, seed=1)


@pytest.fixture(scope="session")
def smollm2():
    from backend.engine.models import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_llama) -> str:
    """The tiny Llama saved as a model folder (safetensors + tokenizer): usable as ``--model``
    by subprocesses and Ray workers, which cannot receive in-memory models."""
    path = tmp_path_factory.mktemp("tiny_model")
    tiny_llama.model.save_pretrained(path, safe_serialization=True)
    tiny_llama.tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture()
def store(tmp_path):
    from backend.store.runs import RunStore

    return RunStore(tmp_path / "cache")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_llama):
    """A real run of the tiny Llama on SAMPLE_TRAJECTORY in its own cache: (store, key)."""
    import shutil

    from backend.pipeline.run import RunRequest, run_question
    from backend.store.runs import RunStore

    store = RunStore(tmp_path_factory.mktemp("tiny_cache"))
    req = RunRequest(question=SAMPLE_QUESTION, answer="6", trajectory=SAMPLE_TRAJECTORY, model=tiny_llama.name)
    outcome = run_question(req, store, loaded=tiny_llama)
    # Tests add runs and derived data to this cache as they go; servers start from this copy of it
    # as it was made, so what a page shows never depends on which tests ran before (``tiny_pristine``).
    _TINY_PRISTINE[0] = tmp_path_factory.mktemp("tiny_pristine") / "cache"
    shutil.copytree(store.root, _TINY_PRISTINE[0], ignore=shutil.ignore_patterns("locks", "tmp"))
    return store, outcome.key


_TINY_PRISTINE: list = [None]


@pytest.fixture(scope="session")
def tiny_pristine(tiny_run) -> Path:
    """The tiny run's cache as ``tiny_run`` made it (the one run, no derived data, no jobs): copy
    it for a server of a test's own."""
    return _TINY_PRISTINE[0]


@pytest.fixture()
def provided(tiny_llama):
    """The tiny Llama served by name by the one model provider for the test's duration (jobs and
    CLI commands run in this process find it there)."""
    from backend.engine import provider

    provider.register(tiny_llama)
    yield tiny_llama
    provider.unregister(tiny_llama.name)


@pytest.fixture()
def learn_every_stage(monkeypatch):
    """Jobs learn from every stage however short: a tiny model's stage on a quiet machine can take
    less than ``MIN_STAGE_S`` (the clock-noise floor below which nothing is learned), and the tests
    that check what a job teaches the estimates must not depend on the machine's speed."""
    from backend.jobs import estimates

    monkeypatch.setattr(estimates, "MIN_STAGE_S", 0.0)


@pytest.fixture()
def run_copy(tiny_run, tmp_path):
    """A cache of its own holding a copy of the tiny run (its derived data left out): (store, key)."""
    import shutil

    from backend.store.runs import RunStore

    src, key = tiny_run
    store = RunStore(tmp_path / "cache")
    shutil.copytree(src.root / "runs" / key, store.root / "runs" / key, ignore=shutil.ignore_patterns("derived"))
    store.reconcile()
    return store, key


# ----------------------------------------------------------------------------- browser (tests/browser)
@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session (a page per test)."""
    from tests.app_server import CHROMIUM, launch_chromium

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch_chromium(pw)
        yield _PatientBrowser(b)
        b.close()


class _PatientBrowser:
    """The browser, whose pages wait up to 2 minutes by default (playwright's is 30 s) for every
    action (click, fill, read): a deadline, not a sleep. A rerun that computes (kaleido PNGs, a
    resize) can take that long on a busy 2-core machine; explicit timeouts still apply."""

    DEFAULT_MS = 120_000

    def __init__(self, browser):
        self._browser = browser
        self.pages = []  # the pages opened for the current test (screenshotted if it fails)

    def new_page(self, **kwargs):
        page = self._browser.new_page(**kwargs)
        page.set_default_timeout(self.DEFAULT_MS)
        self.pages.append(page)
        return page

    def close_pages(self, evidence: str | None = None) -> None:
        """Close the pages this test left open, so that none keeps a session (reruns, polls,
        reconnects to a stopped server) going into the next test; with ``evidence`` (a failed
        test's name) first keep their screenshots and HTML in tests/artifacts/failed/."""
        folder = ROOT / "tests" / "artifacts" / "failed"
        for i, page in enumerate(self.pages):
            try:
                if page.is_closed():
                    continue
                if evidence:
                    folder.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(folder / f"{evidence}-{i}.png"), full_page=True, timeout=10_000)
                    (folder / f"{evidence}-{i}.html").write_text(page.content())
                page.close()
            except Exception:  # evidence only: the test's own outcome is what counts
                pass
        self.pages.clear()

    def __getattr__(self, name):
        return getattr(self._browser, name)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """After a browser test, its pages are closed; a failed one's first leave what they showed in
    tests/artifacts/failed/."""
    outcome = yield
    report = outcome.get_result()
    patient = getattr(item, "funcargs", {}).get("browser")
    if isinstance(patient, _PatientBrowser) and report.when == "call":
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in item.name)[:80]
        if report.failed and patient.pages:
            folder = ROOT / "tests" / "artifacts" / "failed"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{safe}.txt").write_text(report.longreprtext)
        patient.close_pages(evidence=safe if report.failed else None)


@pytest.fixture(scope="session")
def explore_app(tiny_run, tiny_pristine, tmp_path_factory):
    """One ``streamlit run`` over a private copy of the tiny-model cache for the session:
    (base url, run key, run). The copy is of the cache as ``tiny_run`` made it, whatever other
    tests wrote into it since. The app's cold first page is paid once; tests that change what
    the app serves (kill it, set its environment, write runs) start their own server."""
    import shutil

    from tests.app_server import streamlit_app

    store, key = tiny_run
    root = tmp_path_factory.mktemp("browser") / "cache"
    shutil.copytree(tiny_pristine, root)
    with streamlit_app(root) as url:
        yield url, key, store.open(key)


# ----------------------------------------------------------------------------- long runs (issue 23)
LONG_RUN_SHAPE = dict(n_tokens=30_000, n_steps=1_500, n_layers=30, d_model=64, d_ff=128)


@pytest.fixture(scope="session")
def long_run(tmp_path_factory):
    """The synthetic research-length run (``tests/long_run.py``: 30,000 tokens, 1,500 steps, 30
    layers; d kept small, the page's cost does not depend on it), written once per session through
    the run store into a cache of its own: (store, key)."""
    from backend.store.runs import RunStore
    from tests.long_run import write_long_run

    store = RunStore(tmp_path_factory.mktemp("long_cache"))
    return store, write_long_run(store, **LONG_RUN_SHAPE)


@pytest.fixture(scope="session")
def long_app(long_run):
    """One ``streamlit run`` over the long run's cache for the session: (base url, key, run)."""
    from tests.app_server import streamlit_app

    store, key = long_run
    with streamlit_app(store.root) as url:
        yield url, key, store.open(key)
