"""The suite's own scheduling rules (tests/conftest.py): which tests pytest-xdist must keep in one
worker, and the environment every worker starts with."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from tests.conftest import xdist_group_of


def _item(fixtures=(), marks=(), scopes=None, module="tests.integration.test_x"):
    defs = {name: [SimpleNamespace(scope=scope)] for name, scope in (scopes or {}).items()}
    return SimpleNamespace(
        fixturenames=list(fixtures) + list(defs),
        get_closest_marker=lambda name: object() if name in marks else None,
        _fixtureinfo=SimpleNamespace(name2fixturedefs=defs),
        module=SimpleNamespace(__name__=module),
    )


def test_browser_tests_and_users_of_the_app_fixtures_share_one_worker():
    assert xdist_group_of(_item(), "browser") == "browser"
    assert xdist_group_of(_item(fixtures=["explore_app"]), "integration") == "browser"
    assert xdist_group_of(_item(fixtures=["browser", "tmp_path"]), "reliability") == "browser"


def test_ray_tests_share_one_local_ray_instance():
    assert xdist_group_of(_item(marks=("ray",), scopes={"local_ray": "module"}), "integration") == "ray"


def test_a_module_fixture_keeps_its_module_together_and_the_rest_is_free():
    assert xdist_group_of(
        _item(scopes={"smol_run": "module"}, module="tests.integration.test_proxy"), "integration"
    ) == ("tests.integration.test_proxy")
    assert xdist_group_of(_item(scopes={"tiny_run": "session", "tmp_path": "function"}), "unit") is None
    assert xdist_group_of(_item(fixtures=["tmp_path"]), None) is None


@pytest.mark.skipif(not os.environ.get("PYTEST_XDIST_WORKER"), reason="only under pytest-xdist")
def test_each_worker_started_torch_with_its_share_of_the_cores():
    """conftest sets the thread count before torch loads: the worker's torch really uses it."""
    import torch

    assert os.environ.get("OMP_WAIT_POLICY")
    assert torch.get_num_threads() == int(os.environ["OMP_NUM_THREADS"])


def test_the_scheduler_keeps_browser_tests_and_modules_together():
    from tests.conftest import scope_of

    assert scope_of("tests/browser/test_downloads.py::test_csv[1440]") == "tests/browser"
    assert scope_of("tests/browser/test_html_export.py::test_export_file_is_self_contained") == "tests/browser"
    assert scope_of("tests/integration/test_batch_ray.py::test_ray_batch_6x2") == "tests/integration/test_batch_ray.py"
    assert scope_of("tests/unit/test_threads.py::test_x[a::b]") == "tests/unit/test_threads.py"


def test_the_costliest_units_are_handed_out_first():
    """Longest processing time first: measured units by their cost, others by their test count."""
    from tests.conftest import UNKNOWN_TEST_COST_S, order_units

    units = {"tests/unit/a.py": ["x"], "tests/unit/b.py": ["x", "y"], "tests/browser": ["x"], "tests/unit/c.py": ["x"]}
    costs = {"tests/unit/a.py": 2.5 * UNKNOWN_TEST_COST_S, "tests/browser": 400.0}
    assert order_units(units, costs) == ["tests/browser", "tests/unit/a.py", "tests/unit/b.py", "tests/unit/c.py"]


def test_the_cost_table_is_readable():
    from tests.conftest import SUITE_COSTS, unit_costs

    costs = unit_costs()
    assert SUITE_COSTS.is_file() and all(v >= 0 for v in costs.values())
    assert unit_costs(SUITE_COSTS.with_name("no-such-file.json")) == {}
