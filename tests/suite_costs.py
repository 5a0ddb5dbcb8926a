"""Sum a ``RAML_TEST_CPU_LOG`` folder (tests/conftest.py) per unit of work and per test.

    RAML_TEST_CPU_LOG=/tmp/cpu make test
    python -m tests.suite_costs /tmp/cpu            # print the costliest units and tests
    python -m tests.suite_costs /tmp/cpu --write    # and store the units' costs in suite_costs.json

A unit's cost is the CPU seconds of its tests (worker and finished subprocesses); the scheduler
(``order_units``) hands out the costliest first.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

COSTS = Path(__file__).resolve().parent / "suite_costs.json"


def read_log(folder: Path) -> list[dict]:
    """Every test's record, with the worker (the file's name) it ran on."""
    return [
        json.loads(line) | {"worker": path.stem}
        for path in sorted(folder.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--write", action="store_true", help=f"store the units' CPU seconds in {COSTS.name}")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    records = read_log(args.folder)
    units: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for r in records:
        cpu = r["cpu_self"] + r["cpu_children"]
        unit = units[r["unit"]]
        unit[0] += cpu
        unit[1] += r["wall"]
        unit[2] += 1
    total_cpu = sum(u[0] for u in units.values())
    total_wall = sum(u[1] for u in units.values())
    print(f"{len(records)} tests, {total_cpu / 60:.1f} min CPU, {total_wall / 60:.1f} min of test wall time")
    print(f"\n{'cpu s':>8} {'wall s':>8} {'tests':>5}  unit")
    for name, (cpu, wall, n) in sorted(units.items(), key=lambda kv: -kv[1][0])[: args.top]:
        print(f"{cpu:8.1f} {wall:8.1f} {n:5d}  {name}")
    print(f"\n{'cpu s':>8} {'self':>7} {'child':>7} {'wall s':>8}  test")
    for r in sorted(records, key=lambda r: -(r["cpu_self"] + r["cpu_children"]))[: args.top]:
        cpu = r["cpu_self"] + r["cpu_children"]
        print(f"{cpu:8.1f} {r['cpu_self']:7.1f} {r['cpu_children']:7.1f} {r['wall']:8.1f}  {r['nodeid']}")
    by_worker: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_worker[r.get("worker", "?")].append(r)
    if len(by_worker) > 1 and all("ended" in r for r in records):
        first = min(r["ended"] - r["wall"] for r in records)
        print("\nworker   tests   cpu min   busy min   last test ended at (min from the first start)")
        for worker, rs in sorted(by_worker.items()):
            cpu = sum(r["cpu_self"] + r["cpu_children"] for r in rs) / 60
            busy = sum(r["wall"] for r in rs) / 60
            print(f"{worker:8} {len(rs):5d} {cpu:9.1f} {busy:10.1f}   {(max(r['ended'] for r in rs) - first) / 60:.1f}")
    if args.write:
        COSTS.write_text(json.dumps({k: round(v[0], 1) for k, v in sorted(units.items())}, indent=1) + "\n")
        print(f"\nwrote {COSTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
