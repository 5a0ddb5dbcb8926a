"""The Ray engine of ``batch`` (docs/architecture.md §2): one Ray task per (question, sample), run by a
pool of actors that each load the model once and write into the same content-addressed cache
(a shared file system on a cluster).

- Resumable: items whose run is already cached are answered on the driver, without a task.
- Resources: one GPU per actor when the cluster has GPUs, else one CPU per actor
  (``RAML_RAY_CPUS_PER_WORKER`` to change); as many actors as fit, at most one per item.
- Failures come back per item (a bad line, a crashed worker) and never stop the others.
- ``--address`` joins a running cluster; without it a local instance is started with the
  CPUs this process may use (``RAML_RAY_CPUS`` to change) and no dashboard.
"""

from __future__ import annotations

import logging
import os
from collections import deque

from backend.errors import RamlError
from backend.pipeline.run import RunRequest, link_condition_pair
from backend.scale.items import BatchItem, ItemResult, describe_failure, run_request

log = logging.getLogger(__name__)

MAX_ACTOR_RESTARTS = 2  # a worker killed (e.g. out of memory) comes back for the next items


class RunWorker:
    """A Ray actor: one process holding one model (loaded on first use), running requests."""

    def __init__(self, cache_dir: str, cpus: float = 0):
        from backend.engine.threads import configure_torch_threads
        from backend.store.runs import RunStore

        self.store = RunStore(cache_dir, indexing=False)  # only the driver writes the index
        self.threads = configure_torch_threads(at_most=max(1, int(cpus)) if cpus else None)  # its share of cores

    def run(self, request) -> tuple[str | None, bool, str | None]:
        """(key, cached, error) of one RunRequest."""
        return run_request(request, self.store)


def worker_env() -> dict[str, str]:
    """Environment of every Ray worker process, set before it starts (so before torch loads):
    the OpenMP wait policy and, when the driver has one, the thread override (docs/threads.md).
    A cluster's workers do not inherit the driver's environment; a local instance's would."""
    from backend.engine.threads import ENV_THREADS, ENV_WAIT_POLICY, WAIT_POLICY

    env = {ENV_WAIT_POLICY: os.environ.get(ENV_WAIT_POLICY, "").strip() or WAIT_POLICY}
    if os.environ.get(ENV_THREADS, "").strip():
        env[ENV_THREADS] = os.environ[ENV_THREADS].strip()
    return env


def cached_key(request, store, fingerprints: dict[str, str]) -> str | None:
    """The run key if this request was already computed (checked without loading the model)."""
    return store.run_for_request(_request_key(request, fingerprints))


def _request_key(request, fingerprints: dict[str, str]) -> str:
    from backend.engine.models import resolve
    from backend.pipeline.run import request_key

    if request.model not in fingerprints:
        fingerprints[request.model] = resolve(request.model).fingerprint()
    return request_key(request, fingerprints[request.model])


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


STARTUP_TRIES = 3  # Ray gives its own processes 30 s to register; a busy machine can need more


def start_local(num_cpus: int, **kwargs) -> None:
    """``ray.init`` of a new local instance (never another user's cluster found on this machine),
    tried again when Ray's fixed start-up wait ran out on a busy machine."""
    import ray

    for attempt in range(1, STARTUP_TRIES + 1):
        try:
            ray.init(address="local", num_cpus=num_cpus, **kwargs)
            return
        except Exception as exc:
            if "timed out during startup" not in str(exc) or attempt == STARTUP_TRIES:
                raise
            log.warning("ray: local instance did not start in time (try %d of %d)", attempt, STARTUP_TRIES)
            ray.shutdown()


def connect(address: str | None) -> bool:
    """Join ``address`` or start a local Ray instance; True if this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            start_local(int(os.environ.get("RAML_RAY_CPUS", usable_cpus())), **kwargs)
    except Exception as exc:  # Ray raises plain Exceptions too (a start-up that timed out)
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise RamlError(f"cannot start or reach {where}: {str(exc).splitlines()[0][:200]}") from None
    return True


def worker_options(n_items: int) -> tuple[int, dict]:
    """(number of actors, resource options per actor) for the connected cluster."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus_per_worker = float(os.environ.get("RAML_RAY_CPUS_PER_WORKER", 1))
    if gpus >= 1:
        n, options = gpus, {"num_gpus": 1, "num_cpus": min(cpus_per_worker, resources.get("CPU", 1) / gpus)}
    else:
        n, options = int(resources.get("CPU", 1) // cpus_per_worker), {"num_cpus": cpus_per_worker}
    return max(1, min(n, n_items)), options


def run_items_ray(
    items: list[BatchItem],
    requests: list[RunRequest],
    store,
    *,
    address: str | None = None,
    show_progress: bool = True,
) -> list[ItemResult]:
    """Run ``items`` on Ray (``requests[i]`` is the request of ``items[i]``); results in the
    order of ``items``."""
    from tqdm import tqdm

    results: list[ItemResult | None] = [None] * len(items)
    pending: deque = deque()
    fingerprints: dict[str, str] = {}
    for i, (item, request) in enumerate(zip(items, requests)):
        try:
            request.validate()
            hit = cached_key(request, store, fingerprints)
        except Exception as exc:
            results[i] = ItemResult(item, None, False, describe_failure(exc))
            continue
        if hit:
            results[i] = ItemResult(item, hit, True, None)
            link_condition_pair(store, request, fingerprints[request.model], hit)
        else:
            pending.append((i, request))

    with tqdm(
        total=len(items),
        initial=len(items) - len(pending),
        desc="batch (ray)",
        unit="run",
        disable=not show_progress,
    ) as bar:
        if pending:
            for i, (key, cached, error) in _run_on_ray(address, pending, store, bar):
                results[i] = ItemResult(items[i], key, cached, error)
                if key is not None:  # workers write runs only; the driver indexes them
                    store.index_runs([key])
                    store.remember_request(_request_key(requests[i], fingerprints), key)
                    link_condition_pair(store, requests[i], fingerprints[requests[i].model], key)
    return results  # type: ignore[return-value]


def _run_on_ray(address: str | None, pending: deque, store, bar):
    """Yield (item index, (key, cached, error)) as tasks finish; keeps every actor busy."""
    import ray
    from ray.exceptions import RayError

    started = connect(address)
    actors = []
    try:
        n_workers, options = worker_options(len(pending))
        worker_class = ray.remote(RunWorker).options(
            max_restarts=MAX_ACTOR_RESTARTS, runtime_env={"env_vars": worker_env()}, **options
        )
        cache_dir = str(store.root.resolve())
        actors = [worker_class.remote(cache_dir, options.get("num_cpus", 0)) for _ in range(n_workers)]
        log.info("ray: %d workers with %s", n_workers, options)
        in_flight: dict = {}

        def submit(actor) -> None:
            i, request = pending.popleft()
            in_flight[actor.run.remote(request)] = (actor, i)

        for actor in actors:
            if pending:
                submit(actor)
        while in_flight:
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            actor, i = in_flight.pop(ref)
            try:
                outcome = ray.get(ref)
            except RayError as exc:  # the worker process died, or Ray itself failed
                outcome = (None, False, f"Ray worker failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            bar.update(1)
            yield i, outcome
            if pending:
                submit(actor)
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
