"""Torch threads from the cores this process may really use (issue 15 item 2).

torch starts as many intra-op threads as the machine has cores, whatever the process's CPU
affinity or its cgroup quota says. Two such processes on a small machine (the app's job worker
and a CLI batch, or Ray workers) oversubscribe the cores and spin in each other's barriers.
``configure_torch_threads`` sets the count from, in order:

1. ``RAML_TORCH_THREADS`` (an integer >= 1), when set;
2. otherwise the usable cores: the CPU affinity mask (``sched_getaffinity``), capped by the
   cgroup v2 quota (``cpu.max``: quota / period, rounded up) or v1 (``cpu.cfs_quota_us``),
   divided by ``share`` (the number of workers that split this machine).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from backend.errors import InputError

log = logging.getLogger(__name__)

ENV_THREADS = "RAML_TORCH_THREADS"
_CGROUP_ROOT = Path("/sys/fs/cgroup")


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


def available_cores(cgroup_root: Path = _CGROUP_ROOT) -> int:
    """Cores this process may use: affinity mask capped by the cgroup quota (at least 1)."""
    cores = _affinity_cores()
    quota = _cgroup_quota_cores(cgroup_root)
    if quota is not None and quota > 0:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def threads_for(share: int = 1, at_most: int | None = None, cgroup_root: Path = _CGROUP_ROOT) -> int:
    """Intra-op threads for one of ``share`` workers on this machine, at most ``at_most`` (e.g. the
    CPUs a Ray actor reserved); the env override comes first."""
    override = os.environ.get(ENV_THREADS, "").strip()
    if override:
        if not override.isdigit() or int(override) < 1:
            raise InputError(f"{ENV_THREADS}={override!r} is not a whole number >= 1 (unset it to use the cores)")
        return int(override)
    n = available_cores(cgroup_root) // max(1, share)
    return max(1, min(n, at_most) if at_most else n)


def configure_torch_threads(share: int = 1, at_most: int | None = None) -> int:
    """Set torch's intra-op threads (and inter-op threads, while still allowed); returns the count."""
    import torch

    n = threads_for(share, at_most)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(max(1, min(n, 2)))
    except RuntimeError:  # only settable before the first parallel work of the process
        pass
    log.info("torch threads: %d (share %d)", n, share)
    return n
