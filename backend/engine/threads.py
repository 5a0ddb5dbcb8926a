"""How a process of this project shares the CPU cores (issues 15 and 29; docs/threads.md).

Two settings, both chosen here:

1. **The OpenMP wait policy**, set before torch loads. torch's OpenMP threads (libgomp) spin for
   about 300,000 iterations at every barrier by default; two such processes on one small machine
   (the app's job worker and a CLI batch, a Ray worker beside the app) spin in each other's
   barriers and each runs about 4x slower where the fair share is 2x. ``set_wait_policy`` makes
   waiting threads sleep (``OMP_WAIT_POLICY=PASSIVE``) unless the environment already says
   otherwise. libgomp reads it once, when torch loads, so ``backend/__init__.py`` calls it before
   anything else of the project runs; ``wait_policy()`` says what is really in force (also when
   torch was imported before ``backend``).
2. **The intra-op thread count**, chosen at each job's start by ``choose_threads``, a pure
   function of the usable cores (CPU affinity), the cgroup quota and the queue's jobs running at
   once (which split the cores). The machine's current load (cores kept busy by other processes,
   measured over a short window) is recorded beside it but does not lower it (measured: see
   ``choose_threads``). ``RAML_TORCH_THREADS`` (an integer >= 1) overrides it.

``compute_settings()`` is what a run records in its meta (``compute``): threads, policy, and the
inputs of the choice.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path

from backend.errors import InputError

log = logging.getLogger(__name__)

ENV_THREADS = "RAML_TORCH_THREADS"
ENV_WAIT_POLICY = "OMP_WAIT_POLICY"
WAIT_POLICY = "PASSIVE"
LOAD_WINDOW_S = 0.2
_CGROUP_ROOT = Path("/sys/fs/cgroup")

# What set_wait_policy found: the policy libgomp reads (or read, if torch came first).
_policy_in_force: str | None = None
_last_choice: dict = {}
_warned: list[str] = []


# ----------------------------------------------------------------------------- wait policy
def set_wait_policy(environ=None, modules=None) -> str:
    """Make OpenMP threads sleep when they wait (``OMP_WAIT_POLICY=PASSIVE``) unless the
    environment names a policy; returns the policy in force. Call before torch loads: where torch
    is already loaded, its libgomp keeps the policy it read (``default`` if none was set), and
    only subprocesses get the new value."""
    global _policy_in_force
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    given = environ.get(ENV_WAIT_POLICY, "").strip()
    if given:
        policy = given.upper()
    elif "torch" in modules:
        policy = "default (torch was imported before backend)"
    else:
        policy = WAIT_POLICY
    if not given:  # unset or empty (libgomp reads an empty value as its spinning default)
        environ[ENV_WAIT_POLICY] = WAIT_POLICY  # subprocesses (Ray, CLI, servers) inherit it
    if environ is os.environ:
        _policy_in_force = policy
    return policy


def wait_policy() -> str:
    """The OpenMP wait policy of this process's torch: ``PASSIVE``, ``ACTIVE``, or ``default ...``."""
    if _policy_in_force is not None:
        return _policy_in_force
    return os.environ.get(ENV_WAIT_POLICY, "").strip().upper() or "default"


# ----------------------------------------------------------------------------- cores
def _affinity_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _cgroup_quota_cores(root: Path = _CGROUP_ROOT) -> float | None:
    """Cores allowed by the cgroup CPU quota, or None when there is none (or it cannot be read)."""
    try:
        v2 = root / "cpu.max"
        if v2.is_file():
            quota, _, period = v2.read_text().strip().partition(" ")
            if quota == "max":
                return None
            return int(quota) / int(period or 100000)
        v1_quota, v1_period = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
        if v1_quota.is_file() and v1_period.is_file():
            quota_us = int(v1_quota.read_text().strip())
            return None if quota_us <= 0 else quota_us / int(v1_period.read_text().strip())
    except (OSError, ValueError, ZeroDivisionError):
        return None
    return None


def usable_cores(cores: int, quota: float | None) -> int:
    """Affinity cores capped by the quota (rounded up), at least 1."""
    if quota is not None and quota > 0:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def available_cores(cgroup_root: Path = _CGROUP_ROOT) -> int:
    """Cores this process may use: affinity mask capped by the cgroup quota (at least 1)."""
    return usable_cores(_affinity_cores(), _cgroup_quota_cores(cgroup_root))


def _override(value: str | None) -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise InputError(f"{ENV_THREADS}={value!r} is not a whole number >= 1 (unset it to use the cores)")
    return int(value)


def choose_threads(
    cores: int,
    quota: float | None = None,
    load: float = 0.0,
    running_jobs: int = 1,
    override: str | None = None,
    at_most: int | None = None,
) -> int:
    """Intra-op threads for one job: a pure function of what the machine offers.

    ``cores``: CPUs in this process's affinity mask; ``quota``: cores the cgroup allows (None: no
    quota); ``load``: cores kept busy by *other* processes right now; ``running_jobs``: jobs of
    this project's queue computing at once on this machine, this one included (they split the
    usable cores); ``override``: ``RAML_TORCH_THREADS`` (wins when set; checked); ``at_most``:
    a cap such as the CPUs a Ray actor reserved. A job always gets at least one thread.

    The load does not lower the count (measured, docs/threads.md): the kernel shares the cores per
    thread, so with sleeping waits a job that gives threads up beside a busy process only gets a
    smaller slice. On 2 cores beside a second job of the project or a foreign torch, one thread ran
    1.26x and 1.32x slower than two; beside a pure-Python loop, the same. It is still measured at a
    job's start and recorded in the run's meta, to explain a slow run.
    """
    forced = _override(override)
    if forced is not None:
        return forced
    usable = usable_cores(cores, quota)
    n = max(1, usable // max(1, running_jobs))
    del load  # measured and recorded, but it no longer takes threads away: see below
    return max(1, min(n, at_most)) if at_most else n


def threads_for(share: int = 1, at_most: int | None = None, cgroup_root: Path = _CGROUP_ROOT) -> int:
    """Intra-op threads for one of ``share`` workers on this machine, ignoring its load."""
    return choose_threads(
        _affinity_cores(), _cgroup_quota_cores(cgroup_root), 0.0, share, os.environ.get(ENV_THREADS), at_most
    )


# ----------------------------------------------------------------------------- load
def _cpu_ticks(cpus: set[int] | None, stat: Path = Path("/proc/stat")) -> tuple[int, int] | None:
    """(busy, total) clock ticks of the given CPUs since boot, from /proc/stat (None: unreadable)."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        fields = [int(x) for x in rest.split()]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        counted = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
        busy += counted - idle
        total += counted
    return (busy, total) if total else None


def machine_load(window_s: float = LOAD_WINDOW_S) -> float:
    """Cores of this process's CPUs kept busy by other processes, over ``window_s`` seconds
    (this process's own CPU time subtracted); 0.0 where it cannot be measured."""
    try:
        cpus: set[int] | None = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = None
    first = _cpu_ticks(cpus)
    if first is None:
        return 0.0
    own0, t0 = os.times(), time.monotonic()
    time.sleep(window_s)
    second = _cpu_ticks(cpus)
    own1, elapsed = os.times(), time.monotonic() - t0
    if second is None or second[1] <= first[1] or elapsed <= 0:
        return 0.0
    n_cpus = len(cpus) if cpus else (os.cpu_count() or 1)
    busy_cores = (second[0] - first[0]) / (second[1] - first[1]) * n_cpus
    own_cores = ((own1.user - own0.user) + (own1.system - own0.system)) / elapsed
    return round(max(0.0, busy_cores - own_cores), 2)


# ----------------------------------------------------------------------------- torch
def configure_torch_threads(
    share: int = 1, at_most: int | None = None, *, measure_load: bool = False, running_jobs: int | None = None
) -> int:
    """Choose the thread count (``choose_threads``), set torch's intra-op threads (and inter-op
    threads, while still allowed) and remember the choice for the run's meta; returns the count.
    ``measure_load``: sample the machine's load first (a job's start; ``LOAD_WINDOW_S``)."""
    import torch

    override = os.environ.get(ENV_THREADS)
    cores, quota = _affinity_cores(), _cgroup_quota_cores()
    load = machine_load() if measure_load and not (override or "").strip() else 0.0
    running = max(1, running_jobs if running_jobs is not None else share)
    n = choose_threads(cores, quota, load, running, override, at_most)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(max(1, min(n, 2)))
    except RuntimeError:  # only settable before the first parallel work of the process
        pass
    policy = wait_policy()
    if policy.startswith("default") and not _warned:
        _warned.append(policy)
        log.warning(
            "torch's OpenMP threads spin while they wait (%s): start Python with %s=%s",
            policy,
            ENV_WAIT_POLICY,
            WAIT_POLICY,
        )
    _last_choice.clear()
    _last_choice.update(
        cores=cores, quota=quota, load=load, running_jobs=running, override=(override or "").strip() or None
    )
    if at_most:
        _last_choice["at_most"] = at_most
    log.info("torch threads: %d (%s), OpenMP wait policy %s", n, _last_choice, policy)
    return n


def compute_settings() -> dict:
    """What a run records in its meta: torch's threads now, the wait policy in force and the
    inputs of the last thread choice (empty when none was made in this process)."""
    import torch

    return {
        "torch_threads": int(torch.get_num_threads()),
        "omp_wait_policy": wait_policy(),
        "chosen_from": dict(_last_choice),
    }
